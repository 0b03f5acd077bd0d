"use strict";
// The order page: place an order, show it optimistically as pending, read
// it back with the write's consistency token (bounded retries), then follow
// it live over the WebSocket until it is confirmed or cancelled.
//
// An order is never shown as current when the page cannot know it is: one
// the live hub will not follow (it caps the subscriptions of a connection)
// says so and is re-read instead; one whose snapshot failed says it may be
// out of date until a read succeeds; and on every (re)connection each
// unsettled order is read again with its token, so that one the server no
// longer knows (a restart of an in-memory server) shows as unknown rather
// than "processing…" for ever.
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var c = converge;
  // The seed's read-your-write loop: up to 20 reads, 200 ms apart.
  var readAttempts = 20, readInterval = 200;
  // How long the server may wait for the read model on each read, ms.
  var readWait = 1000;
  // recheck's reads back off from recheckMin to recheckMax, ms.
  var recheckMin = 500, recheckMax = 10000;
  // How long after a (re)connection an order the server answers 404 for,
  // its read model behind the order's token, is taken as unknown to it, ms.
  var unknownAfter = 4000;

  // order id → {view, li, note, token, live, stale, verify, verifySince,
  // unknown, recheckGen}:
  // live is the order's subscription on the current connection ("",
  // "asked", "subscribed", "refused", "leaving"); stale says why the view
  // may be out of date ("" when it is not); verify is set from a
  // (re)connection until a read answers; unknown once the server, asked
  // with the order's token, did not have it.
  var orders = {};
  var ws = null, wsAttempt = 0;
  // The orders placed in this tab survive a reload: their ids and tokens
  // are kept in sessionStorage, and the live snapshot brings them current.
  var storageKey = "converge.orders", maxKept = 50;

  function save() {
    try {
      var kept = Object.keys(orders).slice(-maxKept).map(function (id) {
        return { id: id, token: orders[id].token, view: orders[id].view };
      });
      sessionStorage.setItem(storageKey, JSON.stringify(kept));
    } catch (e) { /* storage full or disabled: reload forgets, nothing breaks */ }
  }

  function restore() {
    var kept = [];
    try { kept = JSON.parse(sessionStorage.getItem(storageKey) || "[]"); } catch (e) { kept = []; }
    kept.forEach(function (k) {
      if (!k || typeof k.id !== "string" || !k.view) { return; }
      addOrder(k.id, k.view, k.token);
      if (k.view.status === "pending") { readBack(k.id, k.token); }
    });
  }

  // settled reports whether a view's status is final: confirmed and
  // cancelled orders change no more, so they need no following.
  function settled(v) { return v.status === "confirmed" || v.status === "cancelled"; }

  function render(id) {
    var o = orders[id], v = o.view, li = o.li;
    var status = o.unknown ? "unknown" : v.status;
    li.dataset.status = status;
    li.querySelector("[data-role=status]").textContent = status;
    li.querySelector("[data-role=summary]").textContent = v.customer_id + " · " + v.qty + " × " + v.sku + (v.amount_cents ? " · " + c.euros(v.amount_cents) : "");
    li.querySelector("[data-role=reason]").textContent = v.reason ? "Reason: " + v.reason : "";
    var note = o.note;
    if (o.unknown) {
      note = "unknown to the server: it did not have this order after the page reconnected (it may have restarted and lost it); last seen " + v.status;
    } else if (settled(v)) {
      note = "";
    } else if (o.stale) {
      note = o.stale;
    } else if (!note) {
      note = v.position ? "processing…" : "waiting for the read model…";
    }
    if (o.live === "refused" && !settled(v)) { note += " · not followed live: the server follows no more orders for this page; re-reading it instead"; }
    li.querySelector("[data-role=note]").textContent = note;
  }

  // apply takes a view from a read or a push, unless it is older than the
  // one shown: reads and pushes race, positions order them. It reports
  // whether it took v.
  function apply(v) {
    var o = orders[v.order_id];
    if (!o) { return false; }
    if (o.view.position && c.compareTokens(v.position, o.view.position) < 0) { return false; }
    o.view = v;
    o.note = "";
    o.unknown = false;
    render(v.order_id);
    save();
    if (settled(v)) { unfollow(v.order_id); }
    return true;
  }

  function addOrder(id, view, token) {
    var li = c.el("li", { "class": "order", "id": "order-" + id });
    li.dataset.orderId = id;
    li.appendChild(c.el("span", { "class": "badge", "data-role": "status" }));
    li.appendChild(c.el("span", { "class": "order-id" }, id));
    li.appendChild(c.el("span", { "data-role": "summary" }));
    li.appendChild(c.el("span", { "class": "reason", "data-role": "reason" }));
    li.appendChild(c.el("span", { "class": "muted", "data-role": "note" }));
    $("orders").prepend(li);
    orders[id] = { view: view, li: li, note: "", token: token, live: "", stale: "", verify: false, verifySince: 0, unknown: false, recheckGen: 0 };
    render(id);
    save();
  }

  // readBack reads the order with the write's token until the read model
  // has it. A read that could not reach the token is never a 2xx, so ok
  // is enough to know the answer reflects the write.
  async function readBack(id, token) {
    for (var i = 0; i < readAttempts; i++) {
      var o = orders[id];
      if (o.view.position && c.compareTokens(o.view.position, token) >= 0) { return; } // a push got there first
      try {
        var res = await fetch("/orders/" + encodeURIComponent(id), {
          headers: { "X-Consistency-Position": token, "X-Consistency-Timeout": String(readWait), "Accept": "application/json" }
        });
        if (res.ok) { apply(await res.json()); return; }
      } catch (e) { /* network trouble: retry */ }
      await c.sleep(readInterval);
    }
    var o2 = orders[id];
    if (!o2.view.position) {
      o2.note = "not visible yet: the read model is behind; live updates will follow";
      render(id);
    }
  }

  function send(action, id) {
    if (!ws || ws.readyState !== WebSocket.OPEN) { return false; }
    ws.send(JSON.stringify({ action: action, entity: id }));
    return true;
  }

  // follow subscribes to an unsettled order; the hub's snapshot then
  // brings it up to date.
  function follow(id) {
    var o = orders[id];
    if (settled(o.view) || o.live === "asked" || o.live === "subscribed") { return; }
    if (send("subscribe", id)) { o.live = "asked"; }
  }

  // unfollow gives up the subscription of a settled order: the hub caps
  // how many orders one page follows, and a settled one changes no more.
  function unfollow(id) {
    var o = orders[id];
    if (o.live === "asked" || o.live === "subscribed") {
      if (send("unsubscribe", id)) { o.live = "leaving"; } else { o.live = ""; }
    } else if (o.live === "refused") {
      o.live = "";
    }
  }

  // followRefused asks again for an order the hub refused to follow, now
  // that a subscription has been given up.
  function followRefused() {
    var id = Object.keys(orders).find(function (k) { return orders[k].live === "refused" && !settled(orders[k].view); });
    if (id) { follow(id); }
  }

  // needsRecheck reports whether the page must keep re-reading order o
  // itself: it may be out of date, is not followed live, or the server
  // has not answered for it since the page (re)connected.
  function needsRecheck(o) {
    return !settled(o.view) && (!!o.stale || o.verify || o.unknown || o.live === "refused");
  }

  // recheck re-reads order id with its token, backing off, for as long as
  // needsRecheck says; a later call takes over from an earlier one. A 404
  // while verifying after a (re)connection makes the order unknown to the
  // server, once unknownAfter has run out (at once when the read model is
  // past the token), and it is read on, more slowly, in case it turns up.
  async function recheck(id) {
    var o = orders[id], gen = ++o.recheckGen, delay = recheckMin;
    var current = function () { return orders[id] === o && o.recheckGen === gen; };
    while (current() && needsRecheck(o)) {
      var res = null;
      try {
        var headers = { "X-Consistency-Timeout": String(readWait), "Accept": "application/json" };
        if (o.token) { headers["X-Consistency-Position"] = o.token; }
        res = await fetch("/orders/" + encodeURIComponent(id), { headers: headers });
      } catch (e) { res = null; /* network trouble: retry */ }
      var v = null;
      if (res && res.ok) {
        try { v = await res.json(); } catch (e) { v = null; }
      }
      if (!current()) { return; }
      if (v) {
        // The read came after the subscription (if any) was in place: with
        // the pushes that follow it, the order is current.
        o.stale = "";
        o.verify = false;
        o.unknown = false;
        if (!apply(v)) { render(id); }
      } else if (res && res.status === 404) {
        var behind = res.headers.get("X-Consistency-Stale") === "true";
        if (o.verify && (!behind || Date.now() - o.verifySince >= unknownAfter)) {
          o.verify = false;
          o.unknown = true;
          render(id);
        }
      } else if (!o.stale) {
        o.stale = "may be out of date: reading it failed (" + (res ? res.status + " " + res.statusText : "the server is unreachable") + "); retrying…";
        render(id);
      }
      await c.sleep(delay);
      delay = Math.min(recheckMax, delay * 2);
    }
  }

  // handle takes one message of the hub about an order of the page.
  function handle(m) {
    var o = orders[m.entity];
    if (!o) { return; }
    switch (m.type) {
      case "subscribed":
        if (o.live === "asked") { o.live = "subscribed"; }
        break;
      case "unsubscribed":
        o.live = "";
        followRefused();
        break;
      case "updated":
        if (m.data && apply(m.data)) {
          // A push (or the snapshot) on a live subscription: current.
          o.stale = "";
          render(m.entity);
        }
        break;
      case "error":
        if (o.live === "subscribed") {
          // After the acknowledgement: the snapshot could not be read, so
          // what the page shows may predate changes it will not be sent.
          o.stale = "may be out of date: the server could not read its current state; re-reading…";
        } else {
          // Before it: the subscription itself was refused (the hub's cap).
          o.live = "refused";
        }
        render(m.entity);
        recheck(m.entity);
        break;
    }
  }

  function connect() {
    var u = new URL("/live/orders", location.href);
    u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(u.href);
    ws.onopen = function () {
      wsAttempt = 0;
      $("live-status").textContent = "Live updates: connected";
      Object.keys(orders).forEach(function (id) {
        var o = orders[id];
        o.live = "";
        if (settled(o.view)) { return; }
        follow(id); // the snapshot brings it up to date, if the server has it
        // A server that lost the order (restarted in memory) sends no
        // snapshot and no error: read it, with its token, to find out.
        o.verify = true;
        o.verifySince = Date.now();
        recheck(id);
      });
    };
    ws.onmessage = function (ev) {
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m && typeof m.entity === "string") { handle(m); }
    };
    ws.onclose = function () {
      Object.keys(orders).forEach(function (id) { orders[id].live = ""; });
      var delay = Math.min(10000, 500 * Math.pow(2, wsAttempt++));
      $("live-status").textContent = "Live updates: disconnected, reconnecting in " + delay / 1000 + " s";
      setTimeout(connect, delay);
    };
  }

  function clearErrors() {
    $("form-error").textContent = "";
    document.querySelectorAll("[data-field]").forEach(function (e) { e.textContent = ""; });
    document.querySelectorAll("[aria-invalid]").forEach(function (e) { e.removeAttribute("aria-invalid"); });
  }

  async function showProblem(res) {
    var p = null;
    try { p = await res.json(); } catch (e) { /* not JSON */ }
    if (!p) { $("form-error").textContent = res.status + " " + res.statusText; return; }
    (p.errors || []).forEach(function (fe) {
      var span = document.querySelector('[data-field="' + fe.field + '"]');
      if (span) {
        span.textContent = fe.message;
        var input = span.parentElement.querySelector("input, select");
        if (input) { input.setAttribute("aria-invalid", "true"); }
      }
    });
    $("form-error").textContent = (p.title || res.statusText) + (p.detail ? ": " + p.detail : "");
  }

  $("order-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    clearErrors();
    var cmd = {
      customer_id: $("customer").value.trim(),
      sku: $("sku").value,
      qty: parseInt($("qty").value, 10) || 0,
      card: $("card").value.trim()
    };
    $("place").disabled = true;
    try {
      var res = await fetch("/orders", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(cmd)
      });
      if (res.status !== 202) { await showProblem(res); return; }
      var placed = await res.json();
      var token = res.headers.get("X-Consistency-Position") || placed.position;
      // Optimistic: shown at once as pending, with what was sent.
      addOrder(placed.order_id, { order_id: placed.order_id, customer_id: cmd.customer_id, sku: cmd.sku, qty: cmd.qty, amount_cents: 0, status: "pending", position: "" }, token);
      follow(placed.order_id);
      readBack(placed.order_id, token);
    } catch (e) {
      $("form-error").textContent = "Could not reach the server: " + e.message;
    } finally {
      $("place").disabled = false;
    }
  });

  restore();
  connect();
})();
