// The page's live part: one EventSource per page; each update replaces #live, keeping what the user typed.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  if (!live || !live.dataset.stream || !window.EventSource) { return; }
  var source = null;
  function connect() {
    source = new EventSource(live.dataset.stream);
    source.addEventListener("open", function () { conn.textContent = "live"; conn.className = "conn on"; });
    source.addEventListener("error", function () { conn.textContent = "reconnecting…"; conn.className = "conn"; });
    source.addEventListener("update", update);
  }
  // A page left (or kept in the back-forward cache) must not hold its stream: browsers allow 6 per host.
  window.addEventListener("pagehide", function () { if (source) { source.close(); source = null; } });
  window.addEventListener("pageshow", function () { if (!source) { connect(); } });
  function update(event) {
    var typed = {};
    var focused = document.activeElement && document.activeElement.id;
    live.querySelectorAll("textarea[id], input[id]").forEach(function (el) { typed[el.id] = el.value; });
    var open = {};
    live.querySelectorAll("details").forEach(function (el, i) { open[i] = el.open; });
    live.innerHTML = event.data;
    Object.keys(typed).forEach(function (id) {
      var el = document.getElementById(id);
      if (el && typed[id]) { el.value = typed[id]; }
    });
    live.querySelectorAll("details").forEach(function (el, i) { if (i in open) { el.open = open[i]; } });
    if (focused) { var f = document.getElementById(focused); if (f) { f.focus(); } }
    document.body.dataset.updates = String(Number(document.body.dataset.updates || "0") + 1);
  }
})();
