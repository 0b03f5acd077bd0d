"use strict";
// Helpers shared by the order page and the dashboard.
var converge = (function () {
  // compareTokens orders two consistency tokens; a missing token is
  // before any other. Tokens of one format version have one length and an
  // alphabet in ASCII order, so their strings sort in feed order.
  function compareTokens(a, b) {
    if (!a || !b) { return (a ? 1 : 0) - (b ? 1 : 0); }
    return a < b ? -1 : (a > b ? 1 : 0);
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
