/* The dashboard's live panel (operations/admin/dashboard.py): one request a poll, whose answer is
   the panel rendered by the server, chart included; every second while something runs, every few
   seconds otherwise, never while the page is hidden (and at once when it is shown again). */
(function () {
  "use strict";

  function follow(root) {
    var url = root.getAttribute("data-live-url");
    var fast = parseInt(root.getAttribute("data-poll-ms"), 10) || 1000;
    var idle = parseInt(root.getAttribute("data-idle-poll-ms"), 10) || 5000;
    var timer = null;
    var inFlight = false;

    function schedule(ms) {
      window.clearTimeout(timer);
      timer = null;
      if (document.visibilityState === "hidden") return;
      timer = window.setTimeout(poll, ms);
    }

    function poll() {
      if (inFlight) return;
      inFlight = true;
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("dashboard: HTTP " + response.status);
          return response.json();
        })
        .then(function (body) {
          root.innerHTML = body.html;
          root.setAttribute("data-polled", String(Date.now()));
          inFlight = false;
          schedule(body.active ? fast : idle);
        })
        .catch(function () {
          inFlight = false;
          schedule(idle); // the server restarting, say: try again later
        });
    }

    document.addEventListener("visibilitychange", function () { schedule(0); });
    schedule(fast);
  }

  function start() {
    var root = document.getElementById("lt-dashboard");
    if (root && root.getAttribute("data-live-url")) follow(root);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
