// Switchyard search: the header's box (dashboard/_search.html) as an ARIA combobox.
// "/" focuses it from anywhere but another field; results come from /search/?format=json
// as you type (debounced; a newer keystroke aborts the request in flight and a late
// answer to an older query is never drawn); ArrowDown/ArrowUp move through the options,
// Enter opens the one chosen (or, with none chosen, submits the form to the results
// page), Escape closes the list (and, closed, clears the box).
// Without this script the box is a plain GET form to the same URL.
(function () {
  "use strict";
  var form = document.querySelector("form.search");
  if (!form) return;
  var input = form.querySelector(".search-input");
  var popup = form.querySelector(".search-popup");
  var list = form.querySelector(".search-results");
  var message = form.querySelector(".search-message");
  var status = document.getElementById("search-status");
  var url = input.getAttribute("data-search-url");
  var DEBOUNCE_MS = 120;
  var LIMIT = 10;
  var stats = (window.switchyardSearch = { requests: 0, aborted: 0, rendered: 0, stale: 0 });
  var timer = 0;
  var controller = null;
  var seq = 0; // bumped by every change of the query; an answer draws only if still current
  var results = [];
  var shownFor = null; // the query whose results are in the list
  var active = -1;

  form.setAttribute("data-enhanced", "");
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-expanded", "false");
  input.setAttribute("aria-controls", list.id);

  function announce(text) {
    if (status.textContent !== text) status.textContent = text;
  }

  function setActive(index) {
    var options = list.children;
    if (active >= 0 && options[active]) options[active].setAttribute("aria-selected", "false");
    active = index;
    if (index >= 0 && options[index]) {
      options[index].setAttribute("aria-selected", "true");
      input.setAttribute("aria-activedescendant", options[index].id);
      options[index].scrollIntoView({ block: "nearest", inline: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function open() {
    if (shownFor === null) return;
    popup.hidden = false;
    input.setAttribute("aria-expanded", results.length ? "true" : "false");
  }

  function close() {
    setActive(-1);
    popup.hidden = true;
    input.setAttribute("aria-expanded", "false");
  }

  function clear() {
    seq += 1;
    if (controller) controller.abort();
    controller = null;
    results = [];
    shownFor = null;
    list.replaceChildren();
    close();
    announce("");
  }

  // The label with the first case-insensitive occurrence of the query in bold.
  function label(text, q) {
    var span = document.createElement("span");
    span.className = "search-label";
    var at = text.toLowerCase().indexOf(q.toLowerCase());
    if (at < 0 || !q) {
      span.textContent = text;
      return span;
    }
    var mark = document.createElement("mark");
    mark.textContent = text.slice(at, at + q.length);
    span.append(text.slice(0, at), mark, text.slice(at + q.length));
    return span;
  }

  function option(result, index, q) {
    var li = document.createElement("li");
    li.id = "search-option-" + index;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    li.setAttribute("data-url", result.url);
    li.setAttribute("data-kind", result.kind);
    var meta = document.createElement("span");
    meta.className = "search-meta";
    var kind = document.createElement("span");
    kind.className = "search-kind";
    kind.textContent = result.kind;
    meta.append(kind);
    if (result.state) {
      var state = document.createElement("span");
      state.className = "search-state";
      state.setAttribute("data-state", result.state);
      state.textContent = result.state_label || result.state;
      meta.append(" ", state);
    }
    li.append(label(result.label, q), " ", meta);
    return li;
  }

  function render(data) {
    results = data.results;
    shownFor = data.q;
    setActive(-1);
    list.replaceChildren.apply(
      list,
      results.map(function (r, i) { return option(r, i, data.q); })
    );
    list.hidden = results.length === 0;
    var count = results.length + " result" + (results.length === 1 ? "" : "s");
    if (!results.length) {
      message.textContent = "No circuit or service name contains \u201c" + data.q + "\u201d.";
      announce("No results");
    } else if (data.more) {
      message.textContent = "First " + results.length + " shown; Enter for more.";
      announce(count + " shown, more on the results page");
    } else {
      message.textContent = count + "; \u2191\u2193 to choose, Enter to open.";
      announce(count);
    }
    stats.rendered += 1;
    if (document.activeElement === input) open();
  }

  function failed(text) {
    results = [];
    shownFor = input.value.trim();
    list.replaceChildren();
    list.hidden = true;
    message.textContent = text;
    announce(text);
    if (document.activeElement === input) open();
  }

  function fetchResults(q, mine) {
    controller = new AbortController();
    stats.requests += 1;
    var params = new URLSearchParams({ q: q, format: "json", limit: String(LIMIT) });
    fetch(url + "?" + params.toString(), {
      signal: controller.signal,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    })
      .then(function (response) {
        if (response.status === 401) throw new Error("Your session has ended; reload the page to log in.");
        if (!response.ok) throw new Error("Search failed (" + response.status + "); Enter opens the results page.");
        return response.json();
      })
      .then(function (data) {
        if (mine !== seq) {
          stats.stale += 1; // a newer query was typed meanwhile: drop this answer
          return;
        }
        controller = null;
        render(data);
      })
      .catch(function (error) {
        if (error.name === "AbortError") {
          stats.aborted += 1;
          return;
        }
        if (mine === seq) failed(error.message);
      });
  }

  function changed() {
    var q = input.value.trim();
    window.clearTimeout(timer);
    if (!q) {
      clear();
      return;
    }
    seq += 1; // anything in flight is now stale
    if (controller) controller.abort();
    controller = null;
    var mine = seq;
    timer = window.setTimeout(function () { fetchResults(q, mine); }, DEBOUNCE_MS);
  }

  function go(index) {
    var target = results[index];
    if (!target) return;
    close();
    window.location.assign(target.url);
  }

  input.addEventListener("input", changed);

  input.addEventListener("keydown", function (event) {
    if (event.isComposing) return; // an input method is still composing the text
    var n = results.length;
    switch (event.key) {
      case "ArrowDown":
      case "ArrowUp":
        if (!n) return;
        event.preventDefault();
        if (popup.hidden) open();
        if (event.key === "ArrowDown") setActive(active + 1 < n ? active + 1 : 0);
        else setActive(active > 0 ? active - 1 : n - 1);
        break;
      case "Enter":
        if (!popup.hidden && active >= 0) {
          event.preventDefault();
          go(active);
        }
        break; // with no option chosen the form goes to the results page
      case "Escape":
        if (!popup.hidden) {
          event.preventDefault();
          close();
        } else if (input.value) {
          event.preventDefault();
          input.value = "";
          clear();
        }
        break;
      default:
    }
  });

  input.addEventListener("focus", function () {
    if (shownFor !== null && shownFor === input.value.trim()) open();
  });
  input.addEventListener("blur", close);

  // A click chooses an option; keep the focus in the box meanwhile.
  popup.addEventListener("mousedown", function (event) { event.preventDefault(); });
  list.addEventListener("click", function (event) {
    var li = event.target.closest('[role="option"]');
    if (li) go(Array.prototype.indexOf.call(list.children, li));
  });

  function typing(target) {
    if (!target || target === document.body) return false;
    if (target.isContentEditable || /^(TEXTAREA|SELECT)$/.test(target.tagName)) return true;
    return target.tagName === "INPUT" && !/^(checkbox|radio|button|submit|reset|range|color|file)$/.test(target.type);
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.defaultPrevented || typing(event.target)) return;
    event.preventDefault();
    input.focus();
    input.select();
  });

  // Back to a page from the history cache: no list left open over it.
  window.addEventListener("pageshow", close);
})();
