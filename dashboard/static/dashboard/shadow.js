// The circuit page's shadow evaluation charts (docs/dashboard.md, "Shadow evaluation"):
// the live breaker and the candidate beside it, side by side per step, from
// GET /api/v1/circuits/{id}/shadow/ over the range the traffic section shows: rejected
// calls per second (what the instances rejected, what the candidate would have) and
// entries into open (stored transitions, would-be ones). Drawn with uPlot like the
// traffic charts, in the stylesheet's colours; refreshed every 10 seconds.
(function () {
  "use strict";
  var root = document.querySelector("[data-shadow]");
  if (!root || typeof window.uPlot === "undefined") return;
  var uPlot = window.uPlot;
  var url = root.getAttribute("data-shadow-url");
  var status = root.querySelector("[data-field=shadow-status]");
  var REFRESH_MS = 10000;
  var HEIGHT = 150;
  var stats = (window.switchyardShadow = { fetches: 0, failures: 0, points: 0, body: null });

  function cssVar(name, fallback) {
    return window.getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }
  function fmtRate(v) { return v == null ? "-" : v.toFixed(v !== 0 && Math.abs(v) < 0.1 ? 2 : 1) + "/s"; }
  function fmtCount(v) { return v == null ? "-" : String(v); }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(ts) { var d = new Date(ts * 1000); return pad(d.getHours()) + ":" + pad(d.getMinutes()); }

  // The range of the traffic section's pressed button (seconds and step), else an hour.
  function range() {
    var pressed = document.querySelector('#traffic button[data-range][aria-pressed="true"]');
    var seconds = pressed ? Number(pressed.getAttribute("data-seconds")) : 3600;
    var step = pressed ? Number(pressed.getAttribute("data-step")) : 60;
    return { seconds: seconds || 3600, step: step || 60 };
  }

  var CHARTS = [
    { key: "rejected", unit: "rejected/s", fmt: fmtRate,
      series: [{ field: "live_rejected", label: "live", colour: cssVar("--forced_open", "#6a1b9a") },
               { field: "candidate_rejected", label: "candidate (would have)", colour: cssVar("--half_open", "#8a5a00"), dash: [6, 3] }] },
    { key: "opened", unit: "openings", fmt: fmtCount,
      series: [{ field: "live_opened", label: "live", colour: cssVar("--open", "#c62828") },
               { field: "candidate_opened", label: "candidate (would have)", colour: cssVar("--half_open", "#8a5a00"), dash: [6, 3] }] },
  ];
  var plots = [];
  var body = null;

  function width() {
    var box = root.clientWidth || 800;
    return Math.max(200, Math.min(box, 1100) - 14);
  }
  function data(c) {
    var times = body ? body.series.times : [];
    return [times].concat(c.series.map(function (s) { return body ? body.series[s.field] : []; }));
  }
  function build() {
    var text = cssVar("--text", "#1f2328");
    var grid = cssVar("--chart-grid", "rgba(31, 35, 40, 0.12)");
    CHARTS.forEach(function (c) {
      var target = root.querySelector('[data-shadow-chart="' + c.key + '"] .plot');
      var opts = {
        width: width(), height: HEIGHT,
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        scales: { x: { time: true }, y: { range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.1 : 1]; } } },
        axes: [
          { values: function (u, splits) { return splits.map(clock); }, stroke: text, grid: { stroke: grid, width: 1 } },
          { label: c.unit, size: 74, stroke: text, grid: { stroke: grid, width: 1 } },
        ],
        series: [{ label: "time", value: function (u, v) { return v == null ? "-" : clock(v); } }].concat(c.series.map(function (s) {
          return { label: s.label, stroke: s.colour, width: 1.5, dash: s.dash, spanGaps: false,
                   points: { show: true, size: 4 }, value: function (u, v) { return c.fmt(v); } };
        })),
      };
      plots.push({ chart: c, plot: new uPlot(opts, data(c), target) });
    });
  }

  function load() {
    var r = range();
    var to = Math.floor(Date.now() / 1000);
    var query = new URL(url, window.location.href);
    query.searchParams.set("from", new Date((to - r.seconds) * 1000).toISOString());
    query.searchParams.set("step", String(r.step));
    stats.fetches++;
    return fetch(query.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) { if (!res.ok) throw new Error("shadow " + res.status); return res.json(); })
      .then(function (answer) {
        if (!answer.series) { status.textContent = "The evaluation has ended; reload the page."; return; }
        body = answer;
        stats.body = answer;
        stats.points = answer.series.times.length;
        if (!plots.length) build();
        plots.forEach(function (p) { p.plot.setData(data(p.chart)); });
        status.textContent = "Live (solid) and candidate (dashed) over the traffic section's range, in " +
          answer.series.step + " s steps.";
      })
      .catch(function () {
        stats.failures++;
        status.textContent = "Could not load the shadow evaluation's series; retrying.";
      });
  }

  load();
  window.setInterval(load, REFRESH_MS);
  window.addEventListener("resize", function () {
    plots.forEach(function (p) { p.plot.setSize({ width: width(), height: HEIGHT }); });
  });
})();
