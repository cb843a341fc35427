// dodvpn console: the little script the pages use. Served from /console/assets/, never
// inline (the Content-Security-Policy allows no inline script). Everything works
// without it except live updates; it adds local times, confirmations and the SSE feed.
"use strict";

(function () {
  var lang = document.documentElement.lang || "en";

  // Times arrive in UTC; show them in the viewer's own time zone.
  function localTimes(root) {
    var fmt = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium" });
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) { t.textContent = fmt.format(d); t.title = t.getAttribute("datetime"); }
    });
  }

  // Forms that change something important ask first.
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  });

  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }

  // Live sessions over server-sent events; rows are built with textContent only.
  function liveSessions() {
    var table = document.getElementById("sessions");
    if (!table || !window.EventSource) { return; }
    var status = document.getElementById("live-status");
    var es = new EventSource(table.getAttribute("data-stream"));
    es.addEventListener("sessions", function (ev) {
      var rows = JSON.parse(ev.data);
      var body = table.querySelector("tbody");
      while (body.firstChild) { body.removeChild(body.firstChild); }
      var fmt = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium" });
      rows.forEach(function (r) {
        var tr = document.createElement("tr");
        tr.setAttribute("data-id", r.id);
        cell(tr, r.id);
        cell(tr, r.device_a);
        cell(tr, r.device_b);
        cell(tr, fmt.format(new Date(r.first_ms)));
        cell(tr, r.a_in + " / " + r.a_out);
        cell(tr, r.b_in + " / " + r.b_out);
        body.appendChild(tr);
      });
      table.setAttribute("data-updated", String(Date.now()));
      if (status) { status.textContent = status.getAttribute("data-live"); }
    });
    es.onerror = function () { if (status) { status.textContent = status.getAttribute("data-lost"); } };
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    liveSessions();
  });
})();
