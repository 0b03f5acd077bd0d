"use strict";
// The operator's dashboard: projection lag against SLA (a chart per
// projection, sampled by the server), sagas by status, stuck and failed
// instances with their timelines and retry/cancel, and dead letters.
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var c = converge, el = c.el;
  var svgNS = "http://www.w3.org/2000/svg";
  var refreshMs = 1000;
  var last = {};      // section → JSON last rendered, so unchanged sections keep focus and open details
  var details = {};   // saga id → {updated_at, detail}

  function svg(tag, attrs) {
    var e = document.createElementNS(svgNS, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  function seconds(ms) { return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + " s"; }

  function changed(key, value) {
    var s = JSON.stringify(value);
    if (last[key] === s) { return false; }
    last[key] = s;
    return true;
  }

  async function getJSON(path) {
    var res = await fetch(path, { headers: { "Accept": "application/json" } });
    if (!res.ok) { throw new Error(path + ": " + await c.problemText(res)); }
    return res.json();
  }

  // since says when a sample was taken: its time of day, with the date
  // when it is not today's.
  function since(ms, now) {
    var d = new Date(ms);
    return new Date(now).toDateString() === d.toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
  }

  // chart draws one projection's lag over the window as an SVG line, with
  // the SLA as a dashed line. A projection whose latest sample is older
  // than its stale_after_ms (the lag monitor's passes fail or hang) shows
  // when it was last measured, never that old sample's verdict.
  function chart(p, now, windowMs) {
    var W = 600, H = 160, padL = 8, padR = 8, padT = 10, padB = 18;
    var maxLag = p.points.reduce(function (m, q) { return Math.max(m, q.lag_ms); }, 0);
    var top = Math.max(p.sla_ms * 1.5, maxLag * 1.1, 1);
    var x = function (t) { return padL + (W - padL - padR) * (1 - (now - t) / windowMs); };
    var y = function (v) { return padT + (H - padT - padB) * (1 - Math.min(v, top) / top); };
    var stale = !p.sampled_at || now - p.sampled_at > p.stale_after_ms;
    var verdict = p.breached ? "SLA breached" + (p.reason ? " (" + p.reason.replace("_", " ") + ")" : "") : "within SLA";
    var lagText = seconds(p.lag_ms) + " behind (" + p.behind + " events)";
    if (stale) {
      verdict = p.sampled_at ? "no measurement since " + since(p.sampled_at, now) : "not measured yet";
      lagText = "lag unknown";
    }
    var summary = p.name + ": " + lagText + "; SLA " + seconds(p.sla_ms) + "; " + verdict;
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": summary });
    s.appendChild(svg("line", { x1: padL, x2: W - padR, y1: y(0), y2: y(0), stroke: "#d0d7de" }));
    s.appendChild(svg("line", { x1: padL, x2: W - padR, y1: y(p.sla_ms), y2: y(p.sla_ms), stroke: "#cf222e", "stroke-dasharray": "6 4", "data-role": "sla" }));
    var slaLabel = svg("text", { x: W - padR, y: y(p.sla_ms) - 3, "text-anchor": "end", "font-size": 11, fill: "#cf222e" });
    slaLabel.textContent = "SLA " + seconds(p.sla_ms);
    s.appendChild(slaLabel);
    var pts = p.points.map(function (q) { return x(q.t).toFixed(1) + "," + y(q.lag_ms).toFixed(1); }).join(" ");
    s.appendChild(svg("polyline", { points: pts, fill: "none", stroke: stale ? "#57606a" : (p.breached ? "#cf222e" : "#0969da"), "stroke-width": 2, "data-role": "lag" }));
    var l = svg("text", { x: padL, y: H - 4, "font-size": 11, fill: "#57606a" });
    l.textContent = "−" + Math.round(windowMs / 60000) + " min";
    s.appendChild(l);
    var r = svg("text", { x: W - padR, y: H - 4, "font-size": 11, fill: "#57606a", "text-anchor": "end" });
    r.textContent = "now";
    s.appendChild(r);

    var fig = el("figure", { "class": "lag", "data-projection": p.name, "data-breached": stale ? "unknown" : String(p.breached), "data-stale": String(stale) });
    var cap = el("figcaption");
    cap.appendChild(el("strong", {}, p.name));
    cap.appendChild(document.createTextNode(" · " + lagText + ", SLA " + seconds(p.sla_ms) + " · "));
    cap.appendChild(el("span", { "class": "verdict" }, verdict));
    fig.appendChild(cap);
    fig.appendChild(s);
    return fig;
  }

  async function refreshLag() {
    var h = await getJSON("/api/lag");
    var box = $("lag-charts");
    box.replaceChildren();
    if (!h.projections.length) { box.appendChild(el("p", { "class": "muted" }, "No projection measured yet.")); }
    h.projections.forEach(function (p) { box.appendChild(chart(p, h.now, h.window_ms)); });
  }

  function counts(cs) {
    var dl = $("saga-counts");
    dl.replaceChildren();
    var keys = Object.keys(cs).sort();
    if (!keys.length) { dl.appendChild(el("p", { "class": "muted" }, "No saga instances.")); return; }
    keys.forEach(function (k) {
      var d = el("div", { "data-status": k });
      d.appendChild(el("dt", {}, k));
      d.appendChild(el("dd", {}, cs[k]));
      dl.appendChild(d);
    });
  }

  async function act(id, action, button) {
    button.disabled = true;
    try {
      var res = await fetch("/api/sagas/" + encodeURIComponent(id) + "/" + action, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: "{}"
      });
      $("action-status").textContent = res.ok ? action + " of " + id + " accepted" : action + " of " + id + " failed: " + await c.problemText(res);
    } catch (e) {
      $("action-status").textContent = action + " of " + id + " failed: " + e.message;
    } finally {
      button.disabled = false;
    }
  }

  // sagaCard renders an instance, with its timeline (detail), or err when
  // the timeline could not be read.
  function sagaCard(s, detail, err) {
    var a = el("article", { "class": "saga", "data-saga-id": s.id, "data-status": s.status });
    a.appendChild(el("h3", {}, s.type + " " + s.id));
    a.appendChild(el("p", {}, "Status " + s.status + (s.stuck ? " (stuck)" : "") + (s.step ? " at step " + s.step : "") +
      "; updated " + new Date(s.updated_at).toLocaleTimeString()));
    if (s.error) { a.appendChild(el("p", { "class": "error" }, s.error)); }
    var actions = el("div", { "class": "actions" });
    [["retry", "Retry"], ["cancel", "Cancel"]].forEach(function (pair) {
      var b = el("button", { type: "button", "class": pair[0] === "cancel" ? "secondary" : "", "data-action": pair[0], "aria-label": pair[1] + " saga " + s.id }, pair[1]);
      b.addEventListener("click", function () { act(s.id, pair[0], b); });
      actions.appendChild(b);
    });
    a.appendChild(actions);
    var d = el("details", { "class": "timeline" });
    d.appendChild(el("summary", {}, "Timeline"));
    var ol = el("ol");
    if (err) {
      // Not an empty timeline: one the dashboard could not read.
      ol.appendChild(el("li", { "class": "error", "data-role": "timeline-error" }, "timeline could not be loaded: " + err));
    } else {
      ((detail && detail.timeline) || []).forEach(function (t) {
        ol.appendChild(el("li", {}, new Date(t.at).toLocaleTimeString() + " · " + t.kind + (t.step ? " · " + t.step : "") + (t.detail ? " · " + t.detail : "")));
      });
      if (!ol.children.length) { ol.appendChild(el("li", { "class": "muted" }, "No timeline recorded.")); }
    }
    d.appendChild(ol);
    a.appendChild(d);
    return a;
  }

  // withDetails reads the timelines of sagas, those it has not read since
  // they last changed; a read that failed (kept as err, and not cached)
  // is tried again on the next refresh.
  async function withDetails(sagas) {
    return Promise.all(sagas.map(async function (s) {
      var cached = details[s.id];
      if (!cached || cached.updated_at !== s.updated_at) {
        try {
          cached = { updated_at: s.updated_at, detail: await getJSON("/api/sagas/" + encodeURIComponent(s.id)), err: "" };
          details[s.id] = cached;
        } catch (e) {
          cached = { updated_at: "", detail: null, err: e.message };
          delete details[s.id];
        }
      }
      return { s: s, d: cached.detail, err: cached.err };
    }));
  }

  // refreshSagaList renders a list of instances with their timelines. A
  // timeline that could not be read is shown as such, and fails the
  // refresh: the list is not up to date.
  async function refreshSagaList(key, query, box, empty) {
    var r = await getJSON("/api/sagas?" + query);
    if (key === "stuck") { if (changed("counts", r.counts)) { counts(r.counts); } }
    var items = await withDetails(r.sagas);
    var failed = items.filter(function (it) { return it.err; });
    if (changed(key, items)) {
      box.replaceChildren();
      if (!items.length) { box.appendChild(el("p", { "class": "muted" }, empty)); }
      items.forEach(function (it) { box.appendChild(sagaCard(it.s, it.d, it.err)); });
    }
    if (failed.length) {
      throw new Error("the timeline of " + failed[0].s.id + " could not be loaded: " + failed[0].err +
        (failed.length > 1 ? " (and " + (failed.length - 1) + " more)" : ""));
    }
  }

  async function refreshDeadLetters() {
    var r = await getJSON("/api/dead-letters");
    if (!changed("dl", r.dead_letters)) { return; }
    var box = $("dead-letters");
    box.replaceChildren();
    if (!r.dead_letters.length) { box.appendChild(el("p", { "class": "muted" }, "No dead letters.")); return; }
    var t = el("table"), head = el("tr");
    ["Consumer", "Event", "Stream", "Reason", "Attempts", "When"].forEach(function (h) { head.appendChild(el("th", { scope: "col" }, h)); });
    t.appendChild(el("thead")).appendChild(head);
    var body = t.appendChild(el("tbody"));
    r.dead_letters.forEach(function (d) {
      var tr = el("tr", { "data-id": d.id });
      [d.consumer, d.event_type + " " + d.event_id, d.stream_id, d.reason, d.attempts, new Date(d.at).toLocaleString()].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
      body.appendChild(tr);
    });
    box.appendChild(t);
  }

  async function refresh() {
    var results = await Promise.allSettled([
      refreshLag(),
      refreshSagaList("stuck", "stuck=true", $("stuck"), "No stuck instances."),
      refreshSagaList("failed", "status=failed", $("failed"), "No failed instances."),
      refreshDeadLetters()
    ]);
    var failed = results.filter(function (r) { return r.status === "rejected"; });
    $("updated").textContent = failed.length ? "Update failed: " + failed[0].reason.message : "Updated " + new Date().toLocaleTimeString();
    setTimeout(refresh, refreshMs);
  }

  refresh();
})();
