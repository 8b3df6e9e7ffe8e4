// Keeps the dashboard's figures current without a reload: polls the figures endpoint with the
// shown data version as its ETag and, when the version changed, fetches this page again and
// swaps in its <main>. Works without this script too (the page is complete as served).
(function () {
  "use strict";
  var main = document.getElementById("main");
  var status = document.getElementById("live-status");
  if (!main || !status || !main.hasAttribute("data-version")) { return; }
  var busy = false;
  var timer = null;

  function stop(message) {
    if (timer !== null) { clearInterval(timer); timer = null; }
    if (message) { status.textContent = message; }
  }

  function swap(html) {
    if (!html) { return; }
    var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
    if (!fresh) { return; }
    main.innerHTML = fresh.innerHTML;
    main.setAttribute("data-version", fresh.getAttribute("data-version") || "");
    status.textContent = fresh.getAttribute("data-updated-text") || "";
  }

  function tick() {
    if (busy) { return; }
    busy = true;
    var shown = main.getAttribute("data-version");
    fetch("/dashboard/api/figures", {
      headers: { "If-None-Match": "\"" + shown + "\"", "Accept": "application/json" },
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      if (response.status === 401) { stop(main.getAttribute("data-session-over")); return null; }
      if (response.status !== 200) { return null; }
      return response.json();
    }).then(function (figures) {
      if (!figures || figures.version === shown) { return null; }
      return fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.ok ? response.text() : null; });
    }).then(swap).catch(function () { /* offline for a moment: try again next tick */ })
      .then(function () { busy = false; });
  }

  timer = setInterval(tick, 3000);
})();
