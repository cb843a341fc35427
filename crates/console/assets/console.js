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
    var msg = (e.submitter && e.submitter.getAttribute("data-confirm")) || e.target.getAttribute("data-confirm");
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
        cell(tr, r.relay ? table.getAttribute("data-relay") + " " + r.relay : table.getAttribute("data-direct"));
        body.appendChild(tr);
      });
      table.setAttribute("data-updated", String(Date.now()));
      if (status) { status.textContent = status.getAttribute("data-live"); }
    });
    es.onerror = function () { if (status) { status.textContent = status.getAttribute("data-lost"); } };
  }

  // WebAuthn passkeys. The centre sends and takes base64url strings; the browser's
  // API wants and gives ArrayBuffers.
  function fromB64u(s) {
    var b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
    var out = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) { out[i] = b.charCodeAt(i); }
    return out.buffer;
  }
  function toB64u(buf) {
    var bytes = new Uint8Array(buf), s = "";
    for (var i = 0; i < bytes.length; i++) { s += String.fromCharCode(bytes[i]); }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function post(url, csrf, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { throw new Error(j.message || String(r.status)); }
        return j;
      });
    });
  }
  function passkeys() {
    var reg = document.getElementById("passkey-register");
    if (reg && window.PublicKeyCredential) {
      reg.addEventListener("submit", function (e) {
        e.preventDefault();
        var csrf = reg.getAttribute("data-csrf");
        var status = document.getElementById("passkey-status");
        post("/console/account/passkeys/begin", csrf, {}).then(function (start) {
          var pk = start.options.publicKey;
          pk.challenge = fromB64u(pk.challenge);
          pk.user.id = fromB64u(pk.user.id);
          (pk.excludeCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
          return navigator.credentials.create({ publicKey: pk }).then(function (cred) {
            return post("/console/account/passkeys/finish", csrf, {
              ceremony: start.ceremony,
              name: document.getElementById("passkey-name").value,
              credential: {
                id: cred.id, rawId: toB64u(cred.rawId), type: cred.type, extensions: {},
                response: {
                  attestationObject: toB64u(cred.response.attestationObject),
                  clientDataJSON: toB64u(cred.response.clientDataJSON)
                }
              }
            });
          });
        }).then(function () { window.location.reload(); }, function (err) {
          status.textContent = reg.getAttribute("data-failed") + " " + err.message;
        });
      });
    }
    var login = document.getElementById("passkey-login");
    if (login && window.PublicKeyCredential) {
      login.addEventListener("submit", function (e) {
        e.preventDefault();
        var csrf = login.getAttribute("data-csrf");
        var status = document.getElementById("passkey-login-status");
        post("/console/login/passkey/begin", csrf, {
          username: document.getElementById("passkey-username").value
        }).then(function (start) {
          var pk = start.options.publicKey;
          pk.challenge = fromB64u(pk.challenge);
          (pk.allowCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
          return navigator.credentials.get({ publicKey: pk }).then(function (cred) {
            return post("/console/login/passkey/finish", csrf, {
              ceremony: start.ceremony,
              credential: {
                id: cred.id, rawId: toB64u(cred.rawId), type: cred.type, extensions: {},
                response: {
                  authenticatorData: toB64u(cred.response.authenticatorData),
                  clientDataJSON: toB64u(cred.response.clientDataJSON),
                  signature: toB64u(cred.response.signature),
                  userHandle: cred.response.userHandle ? toB64u(cred.response.userHandle) : null
                }
              }
            });
          });
        }).then(function (done) { window.location.assign(done.redirect); }, function (err) {
          status.textContent = login.getAttribute("data-failed") + " " + err.message;
        });
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    // Times typed into forms are the viewer's local time; tell the server its offset.
    document.querySelectorAll('input[name="tz_offset"]').forEach(function (i) {
      i.value = String(new Date().getTimezoneOffset());
    });
    liveSessions();
    passkeys();
  });
})();
