"use strict";
// Helpers shared by the order page and the dashboard.
var converge = (function () {
  // tokenBytes decodes a consistency token ("v1." + base64url of 16
  // bytes: major and minor position, big-endian) so tokens can be ordered.
  function tokenBytes(t) {
    var i = t.indexOf(".");
    var b = t.slice(i + 1).replace(/-/g, "+").replace(/_/g, "/");
    while (b.length % 4) { b += "="; }
    var s = atob(b), out = [];
    for (var k = 0; k < s.length; k++) { out.push(s.charCodeAt(k)); }
    return out;
  }

  // compareTokens orders two tokens; a missing token is before any other.
  function compareTokens(a, b) {
    if (!a || !b) { return (a ? 1 : 0) - (b ? 1 : 0); }
    var x = tokenBytes(a), y = tokenBytes(b);
    for (var k = 0; k < Math.max(x.length, y.length); k++) {
      var d = (x[k] || 0) - (y[k] || 0);
      if (d) { return d < 0 ? -1 : 1; }
    }
    return 0;
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  // el builds an element with text content only: nothing received from
  // the server is ever parsed as HTML.
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  // problemText turns an application/problem+json answer into a sentence.
  async function problemText(res) {
    try {
      var p = await res.json();
      return (p.title || res.statusText) + (p.detail ? ": " + p.detail : "");
    } catch (e) {
      return res.status + " " + res.statusText;
    }
  }

  function euros(cents) { return (cents / 100).toFixed(2) + " EUR"; }

  return { compareTokens: compareTokens, sleep: sleep, el: el, problemText: problemText, euros: euros };
})();
