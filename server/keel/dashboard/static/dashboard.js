// Keel dashboard: live updates. The server renders every page; this script only listens to
// the page's event stream (Server-Sent Events) and, when the store behind the page changed,
// fetches the page again and swaps in its content. EventSource reconnects by itself; the
// badge in the header says whether the stream is up. Open/closed <details> keep their state.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) {
    return;
  }
  var url = live.getAttribute("data-stream");
  var busy = false;
  var again = false;
  var source = null;
  var heard = false;

  function state(text, cls) {
    live.textContent = text;
    live.className = "live " + cls;
  }

  function detailsState() {
    var seen = {};
    document.querySelectorAll("#content details > summary").forEach(function (s) {
      seen[s.textContent.trim().replace(/\s*\(\d+\)$/, "")] = s.parentElement.open;
    });
    return seen;
  }

  function restore(seen) {
    document.querySelectorAll("#content details > summary").forEach(function (s) {
      var key = s.textContent.trim().replace(/\s*\(\d+\)$/, "");
      if (Object.prototype.hasOwnProperty.call(seen, key)) {
        s.parentElement.open = seen[key];
      }
    });
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Keel-Refresh": "1" } })
      .then(function (response) {
        if (response.redirected && new URL(response.url).pathname === "/login") {
          window.location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (text) {
        if (!text) {
          return;
        }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("content");
        var current = document.getElementById("content");
        if (fresh && current) {
          var seen = detailsState();
          current.replaceWith(document.importNode(fresh, true));
          restore(seen);
          document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || "0") + 1));
          document.dispatchEvent(new CustomEvent("keel:updated"));
        }
      })
      .catch(function () {
        state("reconnecting…", "off");
      })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  function connect() {
    source = new EventSource(url);
    source.addEventListener("ready", function () {
      state("live", "on");
      if (heard) {
        refresh(); // back after a break: what changed meanwhile was never announced
      }
      heard = true;
    });
    source.addEventListener("change", function () {
      state("live", "on");
      refresh();
    });
    source.addEventListener("error", function () {
      state("reconnecting…", "off");
      if (source.readyState === EventSource.CLOSED) {
        // the server answered with an error (restarting, signed out): try again shortly
        window.setTimeout(connect, 2000);
      }
    });
  }

  connect();
})();
