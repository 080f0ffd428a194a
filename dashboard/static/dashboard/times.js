// Times as people read them: <time data-when> shows "3 min ago" and keeps it true while
// the page stays open; its title (shown on hover) is the exact time in the viewer's own
// time zone. <time data-at> shows the exact time in the viewer's time zone.
// The server renders the same words first (dashboard/formats.py relative(), which a
// test compares with ago() below), so the page reads right before this script runs.
(function () {
  "use strict";
  var REFRESH_MS = 15000;

  // A time ahead in its two largest units, the smaller rounded to the nearest
  // (formats.py _ahead()).
  var AHEAD_UNITS = [[86400, "d", 3600, "h"], [3600, "h", 60, "min"], [60, "min", 1, "s"]];
  function ahead(s) {
    for (var i = 0; i < AHEAD_UNITS.length; i++) {
      var u = AHEAD_UNITS[i];
      var count = Math.floor(s / u[2] + 0.5);
      var perUnit = u[0] / u[2];
      if (count >= perUnit) {
        var whole = Math.floor(count / perUnit), part = count % perUnit;
        return whole + " " + u[1] + (part ? " " + part + " " + u[3] : "");
      }
    }
    return s + " s";
  }

  function ago(seconds) {
    var s = Math.round(Math.abs(seconds));
    var amount;
    if (s < 5) return "just now";
    if (seconds < 0) return "in " + ahead(s);
    if (s < 60) amount = s + " s";
    else if (s < 3600) amount = Math.floor(s / 60) + " min";
    else if (s < 86400) amount = Math.floor(s / 3600) + " h";
    else amount = Math.floor(s / 86400) + " d";
    return amount + " ago";
  }

  var exactFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    timeZoneName: "short",
  });
  function exact(date) { return exactFormat.format(date); }

  function update(root) {
    var now = Date.now();
    var nodes = (root || document).querySelectorAll("time[data-when], time[data-at]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var date = new Date(node.getAttribute("datetime"));
      if (isNaN(date.getTime())) continue;
      if (node.hasAttribute("data-when")) {
        var text = ago((now - date.getTime()) / 1000);
        if (node.textContent !== text) node.textContent = text;
        var title = exact(date);
        if (node.getAttribute("title") !== title) node.setAttribute("title", title);
      } else {
        var shown = exact(date);
        if (node.textContent !== shown) node.textContent = shown;
      }
    }
  }

  window.switchyardTimes = { ago: ago, exact: exact, update: update };
  update();
  // Rows that other scripts put in (the alerts page's refresh) get the same treatment.
  new MutationObserver(function (records) {
    for (var i = 0; i < records.length; i++) {
      var added = records[i].addedNodes;
      for (var j = 0; j < added.length; j++) {
        if (added[j].nodeType === 1) { update(); return; }  // elements, not text changes
      }
    }
  }).observe(document.body, { childList: true, subtree: true });
  setInterval(function () { if (document.visibilityState === "visible") update(); }, REFRESH_MS);
})();
