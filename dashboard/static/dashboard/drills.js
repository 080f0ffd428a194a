// The running drill's countdown on the circuit page (dashboard/_drills.html): seconds
// left until its end, then a reload that shows its outcome. No inline script: CSP.
(function () {
  "use strict";
  const counter = document.querySelector("[data-drill-countdown]");
  if (!counter) return;
  const ends = Date.parse(counter.dataset.endsAt);
  if (Number.isNaN(ends)) return;
  let reloading = false;

  function tick() {
    const left = Math.ceil((ends - Date.now()) / 1000);
    if (left > 0) {
      const m = Math.floor(left / 60);
      counter.textContent = (m ? m + " min " + (left % 60) + " s" : left + " s") + " left";
      return;
    }
    counter.textContent = "ended; its agents released the circuit";
    if (!reloading) {
      reloading = true;
      // The server records the end and its outcome within a few seconds.
      window.setTimeout(function () { window.location.reload(); }, 2000);
    }
  }

  tick();
  window.setInterval(tick, 250);
})();
