// The incident view's timeline: one lane per service on one time axis, drawn as SVG
// from the compact JSON the page embeds (#incident-data, dashboard/incidents.py
// timeline()). Each lane has three rows: transitions (a tick in the new state's colour),
// operator actions (a diamond) and alerts (a bar from firing to resolved, or to the end
// of the window). Every mark is a link to its circuit page around that moment, with an
// accessible label; marks are left out of the Tab order (the table below the timeline
// holds the same links, one Tab stop each). Colours come from dashboard.css (custom
// properties), so the dark scheme needs no redraw; a new width does.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var GUTTER = 74; // px of row names left of the time axis
  var AXIS = 22; // px of the time axis above the lanes
  var TITLE = 20; // px of a lane's title
  var ROW = 14; // px of one row of a lane
  var GAP = 8; // px between lanes
  var ROWS = ["transitions", "actions", "alerts"];

  var box = document.getElementById("incident-timeline");
  var source = document.getElementById("incident-data");
  if (!box || !source) return;
  var data = JSON.parse(source.textContent);

  var timeFormat = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
  var dayFormat = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false,
  });
  var exactFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false, timeZoneName: "short",
  });

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function iso(ms) {
    return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  // The circuit page from `margin` seconds before `from` to `margin` after `to`.
  function circuitLink(circuitId, from, to) {
    var path = data.circuit_url.replace(/\/0\/$/, "/" + circuitId + "/");
    var m = data.margin * 1000;
    return path + "?from=" + iso(from - m) + "&to=" + iso(to + m) + "#traffic";
  }

  function label(state) { return state.replace("_", " "); }

  function mark(parent, kind, at, href, text) {
    var a = el("a", { href: href, tabindex: "-1", "aria-label": text, "data-kind": kind,
                      "data-at": at }, parent);
    el("title", {}, a).textContent = text;
    return a;
  }

  // Steps of the axis: the first that leaves at least 90 px between two ticks.
  var STEPS = [1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
               86400, 172800, 604800].map(function (s) { return s * 1000; });

  function draw() {
    var width = Math.max(box.clientWidth, 280);
    var span = Math.max(data.end - data.start, 1);
    var plot = width - GUTTER - 8;
    function x(ms) {
      return GUTTER + Math.max(0, Math.min(1, (ms - data.start) / span)) * plot;
    }
    var laneHeight = TITLE + ROW * ROWS.length + GAP;
    var height = AXIS + data.lanes.length * laneHeight;
    var svg = el("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height,
                          class: "incident-svg", role: "group",
                          "aria-label": "Timeline of " + data.lanes.length + " services" });

    // The time axis: ticks in the viewer's time zone, a grid line across every lane.
    var axis = el("g", { class: "incident-axis", "aria-hidden": "true" }, svg);
    var step = STEPS[STEPS.length - 1];
    for (var s = 0; s < STEPS.length; s++) {
      if (STEPS[s] / span * plot >= 90) { step = STEPS[s]; break; }
    }
    var offset = new Date(data.start).getTimezoneOffset() * 60000;
    var first = Math.ceil((data.start - offset) / step) * step + offset;
    var fmt = span > 86400000 ? dayFormat : timeFormat;
    for (var t = first; t <= data.end; t += step) {
      el("line", { x1: x(t), x2: x(t), y1: AXIS - 4, y2: height, class: "grid" }, axis);
      if (x(t) > width - 30) continue; // no room for its words
      var tick = el("text", { x: x(t), y: AXIS - 8, "text-anchor": "middle" }, axis);
      tick.textContent = fmt.format(new Date(t));
    }

    var lanes = data.lanes.map(function (lane, i) {
      var top = AXIS + i * laneHeight;
      var g = el("g", { class: "incident-lane", "data-lane": lane.service, role: "group",
                        "aria-label": lane.service }, svg);
      var title = el("text", { x: 0, y: top + 14, class: "lane-title" }, g);
      title.textContent = lane.service + ": " + lane.transitions + " transition" +
        (lane.transitions === 1 ? "" : "s") + ", " + lane.actions + " operator action" +
        (lane.actions === 1 ? "" : "s") + ", " + lane.alerts + " alert" +
        (lane.alerts === 1 ? "" : "s");
      var rows = {};
      ROWS.forEach(function (name, r) {
        var y = top + TITLE + r * ROW;
        el("rect", { x: GUTTER, y: y, width: plot, height: ROW - 2, class: "row-bg",
                     "aria-hidden": "true" }, g);
        var name_ = el("text", { x: 0, y: y + 10, class: "lane-label", "aria-hidden": "true" }, g);
        name_.textContent = name === "actions" ? "operators" : name;
        rows[name] = { g: el("g", { "data-row": name }, g), y: y };
      });
      return rows;
    });

    data.transitions.forEach(function (t) {
      var circuit = data.circuits[t[1]];
      var row = lanes[circuit[0]].transitions;
      var text = circuit[1] + " on " + (data.instances[t[2]] || "?") + ": " + label(t[3]) +
        " to " + label(t[4]) + " (" + t[5] + ") at " + exactFormat.format(new Date(t[0]));
      var a = mark(row.g, "transition", t[0], circuitLink(t[1], t[0], t[0]), text);
      a.setAttribute("data-state", t[4]);
      el("rect", { x: x(t[0]) - 1, y: row.y, width: 2, height: ROW - 2, "data-state": t[4] }, a);
    });

    data.actions.forEach(function (act) {
      var circuit = data.circuits[act[1]];
      var row = lanes[circuit[0]].actions;
      var text = circuit[1] + ": " + act[3] + " at " + exactFormat.format(new Date(act[0]));
      var a = mark(row.g, "action", act[0], circuitLink(act[1], act[0], act[0]), text);
      a.setAttribute("data-action", act[2]);
      var cx = x(act[0]), cy = row.y + (ROW - 2) / 2, r = (ROW - 2) / 2;
      var shape = el("path", { d: "M" + cx + " " + (cy - r) + "L" + (cx + r) + " " + cy + "L" +
                                  cx + " " + (cy + r) + "L" + (cx - r) + " " + cy + "Z",
                               class: "diamond", "data-action": act[2] }, a);
      if (act[4]) shape.setAttribute("data-state", act[4]);
    });

    data.alerts.forEach(function (al) {
      var circuit = data.circuits[al[2]];
      var row = lanes[circuit[0]].alerts;
      var end = al[1] === null ? data.end : al[1];
      var text = circuit[1] + ": alert " + al[3] + " (" + al[4] + ") fired at " +
        exactFormat.format(new Date(al[0])) + (al[1] === null ? ", still firing" :
        ", resolved at " + exactFormat.format(new Date(al[1])));
      var path = data.circuit_url.replace(/\/0\/$/, "/" + al[2] + "/");
      var a = mark(row.g, "alert", al[0], path + "?" + al[5] + "#traffic", text);
      a.setAttribute("data-severity", al[4]);
      var x0 = x(al[0]), x1 = x(end);
      el("rect", { x: x0, y: row.y + 1, width: Math.max(x1 - x0, 3), height: ROW - 4,
                   class: "alert-bar", "data-severity": al[4] }, a);
    });

    box.replaceChildren(svg);
    box.setAttribute("data-drawn", String(data.transitions.length + data.actions.length +
                                          data.alerts.length));
  }

  draw();
  var width = box.clientWidth;
  var pending = false;
  window.addEventListener("resize", function () {
    if (pending || box.clientWidth === width) return;
    pending = true;
    requestAnimationFrame(function () {
      pending = false;
      width = box.clientWidth;
      draw();
    });
  });
})();
