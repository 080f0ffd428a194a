// The canary rollout section of the circuit page: while a rollout runs, its groups
// table (both groups' instances, calls, failures, p99 and trips) is fetched again every
// few seconds as the server renders it (dashboard/rollouts.py rollout_groups), so the
// figures are formatted in one place. When the rollout has ended (204) the section says
// so and stops asking.
(function () {
  "use strict";
  var REFRESH_MS = 5000;

  var section = document.querySelector("[data-rollout-groups-url]");
  if (!section) return;
  var url = section.getAttribute("data-rollout-groups-url");
  var timer = null;

  function ended() {
    var note = document.createElement("p");
    note.className = "live-note";
    note.setAttribute("role", "status");
    note.textContent = "This rollout has ended; reload the page for the outcome.";
    section.appendChild(note);
  }

  function refresh() {
    if (document.hidden) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.status === 204) {
          clearInterval(timer);
          ended();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var table = section.querySelector("[data-rollout-groups]");
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.querySelector("[data-rollout-groups]");
        if (table && fresh) table.replaceWith(fresh);
        section.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next round tries again */ });
  }

  timer = setInterval(refresh, REFRESH_MS);
})();
