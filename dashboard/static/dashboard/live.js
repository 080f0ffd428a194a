// Switchyard live updates: tiles change in place from /ws/dashboard/.
// The server coalesces events into batches of fresh tiles; here every batch is merged
// into one pending map and written to the DOM at most once per animation frame.
// The overview, when it shows every circuit, adds the tiles of circuits that appear.
// A dropped socket reconnects with backoff, then refetches this page's tiles as JSON;
// the page also refetches them every few seconds (times and liveness move on their own).
// Alert messages update the navigation badge (firing count); the alerts page then
// refetches its rows (rendered by the server with the page's filters and controls),
// at most one request in flight, so a burst costs a bounded number of refreshes.
// Other scripts of the page share this one socket: every message is also dispatched on
// the document as a "switchyard:message" event (detail: the parsed message), and every
// (re)connect as "switchyard:open".
(function () {
  "use strict";
  var stats = (window.switchyardLive = {
    messages: 0, flushes: 0, updates: 0, connects: 0, resyncs: 0, connected: false,
    alertMessages: 0, alertRefreshes: 0, added: 0,
  });
  var pending = new Map();
  var scheduled = false;
  var backoff = 500;
  var BACKOFF_MAX = 15000;
  var REFRESH_MS = 10000;
  var status = document.getElementById("live-status");
  var page = document.body.getAttribute("data-live-page");

  // Every string a tile shows is formatted by the server (tile.text, by data-field):
  // this file only places them, so a live update reads exactly like the first render.
  function setText(el, field, text) {
    var node = el.querySelector('[data-field="' + field + '"]');
    if (node && node.textContent !== text) node.textContent = text;
  }

  function apply(el, t) {
    var changed = el.getAttribute("data-state") !== t.state;
    el.setAttribute("data-state", t.state);
    el.setAttribute("data-since", t.since || "");
    el.setAttribute("data-probe-at", t.probe_at || "");
    var text = t.text || {};
    Object.keys(text).forEach(function (field) { setText(el, field, text[field]); });
    var spark = el.querySelector('[data-field="spark"]');
    if (spark && t.spark !== undefined) spark.setAttribute("points", t.spark);
    if (changed && page === "circuit") {
      var note = document.querySelector(".live-note");
      if (note) note.hidden = false;
    }
  }

  // The overview showing every circuit (data-live-add) gets the tile of a circuit it
  // does not show yet: in its service's section, or in a new section headed like the
  // server's (the service's name and tile.text.team), from the page's <template>s.
  function serviceSection(t) {
    var sections = document.querySelectorAll("section.service[data-service]");
    for (var i = 0; i < sections.length; i++) {
      if (sections[i].getAttribute("data-service") === t.service) return sections[i];
    }
    var template = document.getElementById("service-template");
    if (!template) return null;
    var section = template.content.firstElementChild.cloneNode(true);
    section.setAttribute("data-service", t.service);
    section.querySelector('[data-field="service"]').textContent = t.service;
    var team = section.querySelector('[data-field="team"]');
    if (t.text && t.text.team) team.textContent = t.text.team;
    else team.remove();
    var main = document.getElementById("main");
    var empty = main.querySelector("p.empty");
    if (empty) empty.remove();
    main.insertBefore(section, main.querySelector("nav.pages"));
    return section;
  }

  function addTile(t) {
    var template = document.getElementById("tile-template");
    var section = template && serviceSection(t);
    if (!section) return null;
    var el = template.content.firstElementChild.cloneNode(true);
    el.setAttribute("href", t.url);
    el.setAttribute("data-id", String(t.id));
    el.setAttribute("data-circuit", t.key);
    el.querySelector(".name").textContent = t.name;
    section.querySelector(".tiles").appendChild(el);
    stats.added++;
    // The page shows every circuit: the count beside the filters is its tiles.
    var count = document.querySelector(".filters .count");
    var n = document.querySelectorAll("main .tile[data-id]").length;
    if (count) count.textContent = n + (n === 1 ? " circuit" : " circuits");
    return el;
  }

  function flush() {
    scheduled = false;
    stats.flushes++;
    var adds = page === "overview" && document.body.hasAttribute("data-live-add");
    pending.forEach(function (t, id) {
      var nodes = Array.prototype.slice.call(document.querySelectorAll('.tile[data-id="' + id + '"]'));
      if (!nodes.length && adds) {
        var added = addTile(t);
        if (added) nodes.push(added);
      }
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
    // A page with traffic charts asks for its circuit's "traffic" messages.
    var traffic = document.querySelector("[data-traffic][data-circuit-id]");
    var query = traffic ? "?traffic=" + encodeURIComponent(traffic.getAttribute("data-circuit-id")) : "";
    var socket = new WebSocket(scheme + window.location.host + "/ws/dashboard/" + query);
    socket.onopen = function () {
      stats.connects++;
      backoff = 500;
      setStatus(true);
      // Anything that changed while the socket was down is read again
      // (also on the first open: events between the render and the socket count too).
      resync();
      if (document.getElementById("alerts-badge")) refreshAlerts();
      document.dispatchEvent(new CustomEvent("switchyard:open"));
    };
    socket.onmessage = function (msg) {
      stats.messages++;
      var data;
      try { data = JSON.parse(msg.data); } catch (e) { return; }
      if (data.type === "tiles") enqueue(data.tiles);
      else if (data.type === "alerts") onAlerts(data);
      document.dispatchEvent(new CustomEvent("switchyard:message", { detail: data }));
    };
    socket.onclose = function () {
      setStatus(false);
      var delay = backoff * (0.5 + Math.random());
      backoff = Math.min(backoff * 2, BACKOFF_MAX);
      setTimeout(connect, delay);
    };
  }

  // Times in state, next probes and liveness move without any event (an agent that
  // stops syncing sends none): the page's tiles are read again every REFRESH_MS while
  // the socket is up and the page visible.
  setInterval(function () {
    if (stats.connected && document.visibilityState === "visible") resync();
  }, REFRESH_MS);
  connect();
})();
