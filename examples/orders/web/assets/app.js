"use strict";
// The order page: place an order, show it optimistically as pending, read
// it back with the write's consistency token (bounded retries), then follow
// it live over the WebSocket until it is confirmed or cancelled.
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var c = converge;
  // The seed's read-your-write loop: up to 20 reads, 200 ms apart.
  var readAttempts = 20, readInterval = 200;
  // How long the server may wait for the read model on each read, ms.
  var readWait = 1000;

  var orders = {};   // order id → {view, li, token}
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

  function render(id) {
    var o = orders[id], v = o.view, li = o.li;
    li.dataset.status = v.status;
    li.querySelector("[data-role=status]").textContent = v.status;
    li.querySelector("[data-role=summary]").textContent = v.customer_id + " · " + v.qty + " × " + v.sku + (v.amount_cents ? " · " + c.euros(v.amount_cents) : "");
    li.querySelector("[data-role=reason]").textContent = v.reason ? "Reason: " + v.reason : "";
    var note = o.note;
    if (v.status !== "pending") { note = ""; } else if (!note) { note = v.position ? "processing…" : "waiting for the read model…"; }
    li.querySelector("[data-role=note]").textContent = note;
  }

  // apply takes a view from a read or a push, unless it is older than the
  // one shown: reads and pushes race, positions order them.
  function apply(v) {
    var o = orders[v.order_id];
    if (!o) { return; }
    if (o.view.position && c.compareTokens(v.position, o.view.position) < 0) { return; }
    o.view = v;
    o.note = "";
    render(v.order_id);
    save();
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
    orders[id] = { view: view, li: li, note: "", token: token };
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

  function subscribe(id) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ action: "subscribe", entity: id }));
    }
  }

  function connect() {
    var u = new URL("/live/orders", location.href);
    u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(u.href);
    ws.onopen = function () {
      wsAttempt = 0;
      $("live-status").textContent = "Live updates: connected";
      Object.keys(orders).forEach(subscribe); // the snapshot brings each up to date
    };
    ws.onmessage = function (ev) {
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "updated" && m.data) { apply(m.data); }
    };
    ws.onclose = function () {
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
      subscribe(placed.order_id);
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
