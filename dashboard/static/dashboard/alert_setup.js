// The rule and channel forms: show only the fieldset of the chosen kind (without
// script every fieldset shows, and the server reads only the chosen kind's inputs).
(function () {
  "use strict";

  function showChosen(select) {
    document.querySelectorAll("[data-kind-params]").forEach(function (fieldset) {
      fieldset.hidden = fieldset.dataset.kindParams !== select.value;
    });
  }

  function init() {
    var select = document.querySelector("select[data-kind-select]");
    if (!select) return;
    showChosen(select);
    select.addEventListener("change", function () { showChosen(select); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
