"use strict";
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var maxLog = 50;
  var entity = new URLSearchParams(location.search).get("entity");
  var attempt = 0;

  function setStatus(text) { $("status").textContent = text; }

  function addLog(text) {
    var li = document.createElement("li");
    li.textContent = text;
    $("log").prepend(li);
    while ($("log").children.length > maxLog) { $("log").lastElementChild.remove(); }
  }

  function show(m) {
    $("data").textContent = JSON.stringify(m.data, null, 2);
    $("position").textContent = m.position;
    addLog(m.position + (m.snapshot ? " (snapshot) " : " ") + JSON.stringify(m.data));
  }

  function connect() {
    var u = new URL(document.body.dataset.ws, location.href);
    u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
    u.searchParams.set("entity", entity);
    setStatus("pending… connecting");
    var ws = new WebSocket(u.href);
    ws.onmessage = function (ev) {
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      switch (m.type) {
      case "subscribed":
        attempt = 0;
        setStatus("connected");
        break;
      case "updated":
        if (m.entity === entity) { show(m); }
        break;
      case "error":
        addLog("error: " + m.error);
        break;
      }
    };
    ws.onclose = function (ev) {
      var delay = Math.min(10000, 500 * Math.pow(2, attempt++));
      setStatus("pending… disconnected (" + (ev.reason || ev.code) + "), retrying in " + delay / 1000 + "s");
      setTimeout(connect, delay);
    };
  }

  if (!entity) {
    setStatus("no entity: open this page with ?entity=<id>");
    return;
  }
  $("entity").textContent = entity;
  connect();
})();
