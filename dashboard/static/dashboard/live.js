// Switchyard live updates: tiles change in place from /ws/dashboard/.
// The server coalesces events into batches of fresh tiles; here every batch is merged
// into one pending map and written to the DOM at most once per animation frame.
// A dropped socket reconnects with backoff, then refetches this page's tiles as JSON.
// Alert messages update the navigation badge (firing count); the alerts page then
// refetches its rows (rendered by the server with the page's filters and controls),
// at most one request in flight, so a burst costs a bounded number of refreshes.
(function () {
  "use strict";
  var stats = (window.switchyardLive = {
    messages: 0, flushes: 0, updates: 0, connects: 0, resyncs: 0, connected: false,
    alertMessages: 0, alertRefreshes: 0,
  });
  var pending = new Map();
  var scheduled = false;
  var backoff = 500;
  var BACKOFF_MAX = 15000;
  var status = document.getElementById("live-status");
  var page = document.body.getAttribute("data-live-page");

  function pct(v) { return v === null || v === undefined ? "-" : (v * 100).toFixed(1) + "%"; }
  function perSecond(v) { return v === null || v === undefined ? "-" : v.toFixed(1) + "/s"; }
  function duration(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function setText(el, field, text) {
    var node = el.querySelector('[data-field="' + field + '"]');
    if (node && node.textContent !== text) node.textContent = text;
  }

  function tick(el, now) {
    var since = el.getAttribute("data-since");
    setText(el, "since", since ? duration(now - Date.parse(since)) : "-");
    var probe = el.getAttribute("data-probe-at");
    setText(el, "probe", probe ? duration(Date.parse(probe) - now) : "-");
  }

  function apply(el, t) {
    var changed = el.getAttribute("data-state") !== t.state;
    el.setAttribute("data-state", t.state);
    el.setAttribute("data-since", t.since || "");
    el.setAttribute("data-probe-at", t.probe_at || "");
    setText(el, "label", t.label);
    setText(el, "summary", t.summary);
    setText(el, "failure_rate", pct(t.failure_rate));
    setText(el, "call_rate", perSecond(t.call_rate));
    var spark = el.querySelector('[data-field="spark"]');
    if (spark && t.spark !== undefined) spark.setAttribute("points", t.spark);
    tick(el, Date.now());
    if (changed && page === "circuit") {
      var note = document.querySelector(".live-note");
      if (note) note.hidden = false;
    }
  }

  function flush() {
    scheduled = false;
    stats.flushes++;
    pending.forEach(function (t, id) {
      var nodes = document.querySelectorAll('.tile[data-id="' + id + '"]');
      for (var i = 0; i < nodes.length; i++) { apply(nodes[i], t); stats.updates++; }
    });
    pending.clear();
  }

  function enqueue(tiles) {
    for (var i = 0; i < tiles.length; i++) pending.set(String(tiles[i].id), tiles[i]);
    if (!scheduled && pending.size) {
      scheduled = true;
      // rAF pauses in a hidden tab; the timeout keeps the map from waiting forever.
      var done = false;
      var run = function () { if (!done) { done = true; flush(); } };
      window.requestAnimationFrame(run);
      setTimeout(run, 250);
    }
  }

  function resync() {
    var url = new URL(window.location.href);
    var ids = [];
    document.querySelectorAll(".tile[data-id]").forEach(function (el) { ids.push(el.getAttribute("data-id")); });
    if (!ids.length) return;
    if (page === "circuit") {
      url = new URL("/", window.location.origin);
      url.searchParams.set("ids", ids.join(","));
    }
    url.searchParams.set("format", "json");
    fetch(url.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) { if (body) { stats.resyncs++; enqueue(body.tiles); } })
      .catch(function () {});
  }

  function setBadge(firing) {
    var badge = document.getElementById("alerts-badge");
    if (!badge || typeof firing !== "number") return;
    badge.setAttribute("data-count", String(firing));
    badge.textContent = firing + " firing";
  }

  var alertsInFlight = false;
  var alertsAgain = false;
  function refreshAlerts() {
    if (alertsInFlight) { alertsAgain = true; return; }
    alertsInFlight = true;
    var url = new URL(page === "alerts" ? window.location.href : "/alerts/", window.location.origin);
    url.searchParams.set("format", "json");
    if (page !== "alerts") url.searchParams.set("only", "count");
    fetch(url.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) return;
        stats.alertRefreshes++;
        setBadge(body.firing);
        var rows = document.getElementById("alert-rows");
        if (rows && typeof body.rows === "string") rows.innerHTML = body.rows;
        var count = document.getElementById("alerts-count");
        if (count && typeof body.count === "number") count.textContent = body.count + (body.count === 1 ? " alert" : " alerts");
      })
      .catch(function () {})
      .then(function () {
        alertsInFlight = false;
        if (alertsAgain) { alertsAgain = false; refreshAlerts(); }
      });
  }

  function onAlerts(data) {
    stats.alertMessages++;
    setBadge(data.firing);
    if (page === "alerts") refreshAlerts();
    if (page === "circuit") {
      var head = document.querySelector(".circuit-head .tile[data-id]");
      var id = head ? Number(head.getAttribute("data-id")) : null;
      var note = document.querySelector(".live-note");
      (data.alerts || []).forEach(function (a) { if (a.circuit_id === id && note) note.hidden = false; });
    }
  }

  function setStatus(on) {
    stats.connected = on;
    if (status) { status.setAttribute("data-live", on ? "on" : "off"); status.textContent = on ? "live" : "reconnecting"; }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/dashboard/");
    socket.onopen = function () {
      stats.connects++;
      backoff = 500;
      setStatus(true);
      // Anything that changed while the socket was down is read again
      // (also on the first open: events between the render and the socket count too).
      resync();
      if (document.getElementById("alerts-badge")) refreshAlerts();
    };
    socket.onmessage = function (msg) {
      stats.messages++;
      var data;
      try { data = JSON.parse(msg.data); } catch (e) { return; }
      if (data.type === "tiles") enqueue(data.tiles);
      else if (data.type === "alerts") onAlerts(data);
    };
    socket.onclose = function () {
      setStatus(false);
      var delay = backoff * (0.5 + Math.random());
      backoff = Math.min(backoff * 2, BACKOFF_MAX);
      setTimeout(connect, delay);
    };
  }

  function tickAll() {
    var now = Date.now();
    document.querySelectorAll(".tile[data-id]").forEach(function (el) { tick(el, now); });
  }
  tickAll();
  setInterval(tickAll, 1000);
  connect();
})();
