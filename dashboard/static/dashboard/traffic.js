// Switchyard traffic charts of one circuit (the circuit page): calls/s, failure %,
// latency p50/p90/p99 and rejected/s from GET /api/v1/circuits/{id}/series/, drawn with
// uPlot on one time axis (in the viewer's time zone) with one synchronised cursor; the
// periods the circuit was open, half open or forced (the answer's "bands") are shaded
// behind every chart. The range (?range=15m|1h|6h|24h|7d) lives in the URL, or a fixed
// window (?from=&to=, what alert links carry; without "to" it runs up to now, live). New points arrive without a
// reload: a "traffic" message of the dashboard's socket (shared with live.js through
// the "switchyard:message" event) naming this circuit fetches the steps from the last
// ones shown on (30 s back, for late reports) and merges them; while the socket is
// closed, the same happens every 10 s.
// Colours (series, bands, axes, grid) are dashboard.css's custom properties, read from
// the root's computed style; a change of the system's colour scheme (the media query
// prefers-color-scheme) redraws the charts in the new ones. The charts are as wide as
// their box, and follow the window's width.
(function () {
  "use strict";
  var root = document.querySelector("[data-traffic]");
  if (!root || typeof window.uPlot === "undefined") return;
  var uPlot = window.uPlot;

  var METRICS = ["calls", "failure_rate", "p50", "p90", "p99", "rejected"];
  var CLOSED_SOCKET_REFRESH_MS = 10000;
  var LATE_SECONDS = 30;
  var HEIGHT = 150;
  var circuitId = Number(root.getAttribute("data-circuit-id"));
  var seriesUrl = root.getAttribute("data-series-url");
  var buttons = Array.prototype.slice.call(root.querySelectorAll("button[data-range]"));
  var summary = root.querySelector(".traffic-summary");
  var empty = root.querySelector(".traffic-empty");
  var chartsBox = root.querySelector(".traffic-charts");
  var stats = (window.switchyardTraffic = {
    fetches: 0, appends: 0, failures: 0, liveMessages: 0, timerFetches: 0,
    range: null, steps: 0, lastTime: null, bands: 0, points: {}, redraws: 0,
  });

  // Colours come from the stylesheet's custom properties (dashboard.css), read again
  // when the colour scheme changes: the charts are then drawn anew in the new colours.
  var colours = null;
  function readColours() {
    var css = window.getComputedStyle(document.documentElement);
    var cssVar = function (name, fallback) { return css.getPropertyValue(name).trim() || fallback; };
    return {
      get: cssVar,
      text: cssVar("--text", "#1f2328"),
      muted: cssVar("--muted", "#57606a"),
      grid: cssVar("--chart-grid", "rgba(31, 35, 40, 0.12)"),
      border: cssVar("--border-strong", "#8c959f"),
      bands: {
        open: cssVar("--band-open", "rgba(198, 40, 40, 0.14)"),
        half_open: cssVar("--band-half_open", "rgba(138, 90, 0, 0.16)"),
        forced_open: cssVar("--band-forced_open", "rgba(106, 27, 154, 0.14)"),
        forced_closed: cssVar("--band-forced_closed", "rgba(21, 101, 192, 0.12)"),
      },
    };
  }
  colours = readColours();

  // Figures read like the server's (dashboard/formats.py): "3.2/s", "12.5%".
  function fmtRate(v) { return v == null ? "-" : v.toFixed(v !== 0 && Math.abs(v) < 0.1 ? 2 : 1) + "/s"; }
  function fmtPct(v) { return v == null ? "-" : v.toFixed(1) + "%"; }
  function fmtSeconds(v) {
    if (v == null) return "-";
    if (v >= 1) return (v >= 10 ? v.toFixed(1) : v.toFixed(2)) + " s";
    var ms = v * 1000;
    return (ms >= 10 || ms === 0 ? ms.toFixed(0) : ms.toFixed(1)) + " ms";
  }
  // Times are the viewer's own: "14:05" within a day, "12-01 14:00" across days.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function parts(ts) {
    var d = new Date(ts * 1000);
    return {
      date: d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()),
      hm: pad(d.getHours()) + ":" + pad(d.getMinutes()),
      s: pad(d.getSeconds()),
    };
  }
  function clock(ts) { var p = parts(ts); return p.hm + ":" + p.s; }
  function stamp(ts) { var p = parts(ts); return p.date + " " + p.hm + ":" + p.s; }
  var ZONE = (function () {
    try {
      var named = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(new Date());
      for (var i = 0; i < named.length; i++) if (named[i].type === "timeZoneName") return named[i].value;
    } catch (e) { /* an old browser: no zone name */ }
    return "local time";
  })();
  function timeTicks(u, splits, axis, space, incr) {
    var days = view && view.range.seconds > 86400;
    return splits.map(function (ts) {
      var p = parts(ts);
      var hm = incr < 60 ? p.hm + ":" + p.s : p.hm;
      if (incr >= 86400) return p.date.slice(5);
      return days ? p.date.slice(5) + " " + hm : hm;
    });
  }
  // Axis ticks carry as many decimals as their spacing needs ("0.005/s", "0.010/s").
  function decimals(incr) { return Math.max(0, Math.min(6, -Math.floor(Math.log10(incr) + 1e-9))); }
  function ticks(unit, scale) {
    return function (u, values, axis, space, incr) {
      var d = decimals(incr * scale);
      return values.map(function (v) { return (v * scale).toFixed(d) + unit; });
    };
  }
  function latencyTicks(u, values, axis, space, incr) {
    var top = values.length ? values[values.length - 1] : 0;
    var unit = top >= 1 ? ticks(" s", 1) : ticks(" ms", 1000);
    return unit(u, values, axis, space, incr);
  }

  var CHARTS = [
    {
      key: "calls", name: "Calls per second", unit: "calls/s", fmt: fmtRate, ticks: ticks("/s", 1),
      series: [{ metric: "calls", label: "calls/s", colour: ["--forced_closed", "#1565c0"] }],
    },
    {
      key: "failure_rate", name: "Failure rate", unit: "% failed", fmt: fmtPct, ticks: ticks("%", 1),
      series: [{ metric: "failure_rate", label: "failure %", colour: ["--open", "#c62828"] }],
    },
    {
      key: "latency", name: "Latency", unit: "latency", fmt: fmtSeconds, ticks: latencyTicks,
      series: [
        { metric: "p50", label: "p50", colour: ["--closed", "#1a7f37"] },
        { metric: "p90", label: "p90", colour: ["--half_open", "#8a5a00"] },
        { metric: "p99", label: "p99", colour: ["--open", "#c62828"] },
      ],
    },
    {
      key: "rejected", name: "Rejected calls per second", unit: "rejected/s", fmt: fmtRate, ticks: ticks("/s", 1),
      series: [{ metric: "rejected", label: "rejected/s", colour: ["--forced_open", "#6a1b9a"] }],
    },
  ];

  // What is shown: the steps of the range (times and one array per metric), the bands,
  // and the x extent [from, to] shared by every chart.
  var view = null;
  // A fixed window from the URL (server-checked): its steps never slide; without an
  // end it grows up to now and stays live.
  var fixed = root.hasAttribute("data-from") ? {
    key: "window",
    label: "this window",
    from: Date.parse(root.getAttribute("data-from")) / 1000,
    to: root.getAttribute("data-to") ? Date.parse(root.getAttribute("data-to")) / 1000 : null,
    seconds: Number(root.getAttribute("data-window-seconds")),
    step: Number(root.getAttribute("data-window-step")),
  } : null;
  function rangeWords(range) { return range.from !== undefined ? "this window" : "the last " + range.label; }
  function rangeOf(key) {
    if (key === "window") return fixed;
    for (var i = 0; i < buttons.length; i++) {
      var b = buttons[i];
      if (b.getAttribute("data-range") === key) {
        return {
          key: key,
          label: b.textContent.trim(),
          seconds: Number(b.getAttribute("data-seconds")),
          step: Number(b.getAttribute("data-step")),
        };
      }
    }
    return null;
  }
  function emptyView(range) {
    var series = {};
    METRICS.forEach(function (m) { series[m] = []; });
    var now = Date.now() / 1000;
    if (range.from !== undefined) {
      return { range: range, times: [], series: series, bands: [], from: range.from, to: range.to || now };
    }
    return { range: range, times: [], series: series, bands: [], from: now - range.seconds, to: now };
  }

  function bandsPlugin() {
    return {
      hooks: {
        drawClear: function (u) {
          if (!view || !view.bands.length) return;
          var ctx = u.ctx;
          var min = u.scales.x.min, max = u.scales.x.max;
          ctx.save();
          view.bands.forEach(function (b) {
            var from = Math.max(b.from, min), to = Math.min(b.to, max);
            if (to <= from) return;
            var x0 = u.valToPos(from, "x", true), x1 = u.valToPos(to, "x", true);
            ctx.fillStyle = colours.bands[b.state] || colours.bands.open;
            ctx.fillRect(x0, u.bbox.top, Math.max(x1 - x0, 1), u.bbox.height);
          });
          ctx.restore();
        },
      },
    };
  }

  // As wide as the charts' box (a phone's screen, a wide window up to 1100 px).
  function width() {
    var box = chartsBox.clientWidth || root.clientWidth || 800;
    return Math.max(200, Math.min(box, 1100) - 14);
  }

  var plots = [];
  function build() {
    var sync = uPlot.sync("traffic-" + circuitId);
    CHARTS.forEach(function (c, i) {
      var figure = root.querySelector('[data-chart="' + c.key + '"]');
      var target = figure.querySelector(".plot");
      var last = i === CHARTS.length - 1;
      var opts = {
        width: width(),
        height: HEIGHT + (last ? 30 : 0),
        cursor: { sync: { key: sync.key, setSeries: false }, drag: { x: false, y: false } },
        legend: { live: true },
        scales: {
          x: { time: true, range: function () { return [view.from, view.to]; } },
          y: {
            range: function (u, lo, hi) {
              var top = hi == null || !isFinite(hi) || hi <= 0 ? 1 : hi * 1.1;
              return [0, top];
            },
          },
        },
        axes: [
          { label: last ? "time (" + ZONE + ")" : null, labelSize: last ? 20 : 0, size: 30, values: timeTicks,
            stroke: colours.text, grid: { stroke: colours.grid, width: 1 }, ticks: { stroke: colours.border, width: 1 },
            space: function () { return view && view.range.seconds > 86400 ? 110 : 60; } },
          { label: c.unit, values: c.ticks, size: 74, stroke: colours.text,
            grid: { stroke: colours.grid, width: 1 }, ticks: { stroke: colours.border, width: 1 } },
        ],
        series: [{ label: ZONE, value: function (u, v) { return v == null ? "-" : stamp(v); } }].concat(c.series.map(function (s) {
          return {
            label: s.label,
            stroke: colours.get(s.colour[0], s.colour[1]),
            width: 1.5,
            spanGaps: false,
            points: { show: true, size: 4 },
            value: function (u, v) { return c.fmt(v); },
          };
        })),
        plugins: [bandsPlugin()],
      };
      var plot = new uPlot(opts, data(c), target);
      sync.sub(plot);
      plots.push({ chart: c, plot: plot, figure: figure, target: target });
    });
  }

  function data(c) {
    var times = view ? view.times : [];
    return [times].concat(c.series.map(function (s) { return view ? view.series[s.metric] : []; }));
  }

  function nonNull(values) {
    var n = 0;
    for (var i = 0; i < values.length; i++) if (values[i] != null) n++;
    return n;
  }
  function latestIndex() {
    for (var i = view.times.length - 1; i >= 0; i--) if (view.series.calls[i] != null) return i;
    return -1;
  }

  function render() {
    var calls = view.series.calls;
    var traffic = false;
    for (var i = 0; i < calls.length; i++) if (calls[i]) { traffic = true; break; }
    empty.hidden = traffic;
    chartsBox.hidden = !traffic;
    var label = root.querySelector('[data-field="range-label"]');
    if (label) label.textContent = view.range.label;
    stats.range = view.range.key;
    stats.steps = view.times.length;
    stats.lastTime = view.times.length ? view.times[view.times.length - 1] : null;
    stats.bands = view.bands.length;
    var at = latestIndex();
    var latest = at < 0 ? null : {
      calls: view.series.calls[at], failure: view.series.failure_rate[at], p99: view.series.p99[at],
    };
    summary.textContent = latest
      ? "Latest step (" + clock(view.times[at]) + " " + ZONE + ", " + view.range.step + " s): " +
        fmtRate(latest.calls).replace("/s", " calls/s") + ", " + fmtPct(latest.failure) +
        " failed, p99 " + fmtSeconds(latest.p99) + "."
      : "No traffic in " + rangeWords(view.range) + ".";
    plots.forEach(function (p) {
      var points = nonNull(view.series[p.chart.series[0].metric]);
      stats.points[p.chart.key] = points;
      p.figure.setAttribute("data-points", String(points));
      p.figure.setAttribute("data-steps", String(view.times.length));
      var value = latest ? p.chart.series.map(function (s) {
        return s.label + " " + p.chart.fmt(view.series[s.metric][at]);
      }).join(", ") : "no traffic";
      p.target.setAttribute("aria-label", p.chart.name + " over " + rangeWords(view.range) +
        ", " + view.range.step + " s steps; latest: " + value + ".");
      if (traffic && p.plot.width !== width()) p.plot.setSize({ width: width(), height: p.plot.height });
      p.plot.setData(data(p.chart));
    });
  }

  function iso(ts) { return new Date(Math.floor(ts) * 1000).toISOString().replace(".000Z", "Z"); }
  function seconds(value) { return Date.parse(value) / 1000; }

  function request(range, from, to) {
    var url = new URL(seriesUrl, window.location.origin);
    METRICS.forEach(function (m) { url.searchParams.append("metric", m); });
    url.searchParams.set("from", iso(from));
    url.searchParams.set("to", iso(to));
    url.searchParams.set("step", String(range.step));
    return fetch(url.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("series " + r.status); return r.json(); });
  }

  // Steps of an answer replace the ones shown at the same time and append the later
  // ones; steps older than the range drop off the left.
  function merge(body) {
    var index = new Map();
    view.times.forEach(function (t, i) { index.set(t, i); });
    (body.times || []).forEach(function (t, j) {
      var i = index.get(t);
      if (i === undefined) {
        view.times.push(t);
        i = view.times.length - 1;
        index.set(t, i);
      }
      METRICS.forEach(function (m) {
        var values = (body.series || {})[m];
        view.series[m][i] = values && values[j] !== undefined ? values[j] : null;
      });
    });
    var to = seconds(body.to);
    var from = seconds(body.from);
    var range = view.range;
    view.to = range.to ? range.to : Math.max(view.to, to);
    view.from = range.from !== undefined ? range.from : view.to - range.seconds;
    var drop = 0;
    while (drop < view.times.length && view.times[drop] + view.range.step <= view.from) drop++;
    if (drop) {
      view.times.splice(0, drop);
      METRICS.forEach(function (m) { view.series[m].splice(0, drop); });
    }
    // The answer's bands cover its own span: earlier bands are cut at its start.
    var kept = [];
    view.bands.forEach(function (b) {
      if (b.from < from && b.to > view.from) kept.push({ from: b.from, to: Math.min(b.to, from), state: b.state });
    });
    view.bands = kept.concat((body.bands || []).map(function (b) { return { from: b.from, to: b.to, state: b.state }; }));
  }

  var generation = 0;
  var inFlight = false;
  var again = false;
  // One request at a time; asked again meanwhile, one more follows it.
  function load() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    var gen = generation;
    var range = view.range;
    var now = Date.now() / 1000;
    var last = view.times.length ? view.times[view.times.length - 1] : null;
    // A report reaches the server up to seconds after its bucket ended (at the agent's
    // next sync), and each instance's separately: the last steps shown are read again.
    if (range.to && view.loaded) { inFlight = false; return; }  // a closed window: read once
    var start = range.from !== undefined ? range.from : now - range.seconds;
    var from = last !== null
      ? last - Math.ceil(LATE_SECONDS / range.step) * range.step
      : Math.floor(start / range.step) * range.step;
    stats.fetches++;
    if (last !== null) stats.appends++;
    request(range, from, range.to || now)
      .then(function (body) {
        if (gen !== generation) return;
        merge(body);
        view.loaded = true;
        render();
      })
      .catch(function () {
        stats.failures++;
        if (gen === generation && !view.times.length) summary.textContent = "Traffic could not be loaded; retrying.";
      })
      .then(function () {
        inFlight = false;
        if (again || gen !== generation) { again = false; load(); }
      });
  }

  function choose(key, push) {
    var range = rangeOf(key) || rangeOf(root.getAttribute("data-range"));
    buttons.forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-range") === range.key ? "true" : "false");
    });
    root.setAttribute("data-range", range.key);
    if (push) {
      var url = new URL(window.location.href);
      url.searchParams.set("range", range.key);
      url.searchParams.delete("from");  // a preset leaves the window for the latest traffic
      url.searchParams.delete("to");
      var note = root.querySelector(".traffic-window");
      if (note) note.hidden = true;
      window.history.pushState({ range: range.key }, "", url.toString());
    }
    generation++;
    view = emptyView(range);
    summary.textContent = "Loading the traffic of " + rangeWords(range) + "…";
    load();
  }

  buttons.forEach(function (b) {
    b.addEventListener("click", function (event) {
      event.preventDefault();
      if (b.getAttribute("data-range") !== view.range.key) {
        fixed = null;
        choose(b.getAttribute("data-range"), true);
      }
    });
  });
  window.addEventListener("popstate", function () {
    // Back to the window the page was opened at, or to the range in the URL.
    var params = new URL(window.location.href).searchParams;
    if (params.get("from")) { window.location.reload(); return; }
    var key = params.get("range");
    choose(rangeOf(key) ? key : root.getAttribute("data-range"), false);
  });

  document.addEventListener("switchyard:message", function (event) {
    var message = event.detail;
    if (!message || message.type !== "traffic") return;
    stats.liveMessages++;
    var ids = (message.circuits || []).map(Number);
    if (ids.indexOf(circuitId) >= 0) load();
  });
  // Steps recorded while the socket was down are read on its return.
  document.addEventListener("switchyard:open", function () { if (view) load(); });
  setInterval(function () {
    var live = window.switchyardLive;
    if (!live || !live.connected) { stats.timerFetches++; load(); }
  }, CLOSED_SOCKET_REFRESH_MS);

  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      plots.forEach(function (p) { p.plot.setSize({ width: width(), height: p.plot.height }); });
    }, 100);
  });

  // A change of the system's colour scheme redraws the charts in its colours.
  function redraw() {
    colours = readColours();
    plots.forEach(function (p) { p.plot.destroy(); });
    plots = [];
    stats.redraws++;
    build();
    if (view.times.length) render();
  }
  var scheme = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  if (scheme) {
    if (scheme.addEventListener) scheme.addEventListener("change", redraw);
    else if (scheme.addListener) scheme.addListener(redraw);
  }

  view = emptyView(fixed || rangeOf(root.getAttribute("data-range")));
  build();
  choose(view.range.key, false);
})();
