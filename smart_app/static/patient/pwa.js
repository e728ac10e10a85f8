/* hw-fhir patient pages as an app: service worker, offline answers, push opt-in.

   Offline answers: when the phone has no connection, "I'm done: send it" or "Save and
   finish later" keeps the answers on this device, in IndexedDB, encrypted with
   AES-GCM under the key of this browser session (GET /my/offline/key; the key lives in
   the server-side session and in this tab's sessionStorage, never longer: signing out
   forgets it and this page then deletes what was kept). When the connection returns
   they are sent to the same address as the form, with the version of the answers the
   page was opened at (_version): the server validates and scores them as any answer,
   and refuses to overwrite answers changed on another device meanwhile (409), which
   are then shown, with a choice to use this device's answers instead.
   "Waiting to be sent" is shown on every page (#outbox).

   Words: in the page's language, from the JSON the server puts in every patient page
   (<script type="application/json" id="hw-pwa-text">, smart_app/patient/pwa.py pwa_text());
   English (the same texts) when it is missing. The service worker is registered with the
   page's language (meta hw-sw: /my/sw.js?lang=es, which carries that language's words), and
   is handed its own words (the offline page, a push without text) with the pages to cache,
   and keeps them. */
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="hw-sw"]');
  if (!meta || !window.crypto || !window.crypto.subtle || !window.indexedDB) { return; }
  var SW_URL = meta.content, SCOPE = meta.dataset.scope, KEY_URL = meta.dataset.key;
  var DB_NAME = "hw-offline", STORE = "outbox", KEY_ITEM = "hw-draft-key";
  var sw = "serviceWorker" in navigator ? navigator.serviceWorker : null;
  var form = document.getElementById("hw-form");

  /* -- words ------------------------------------------------------------------------------- */
  var TEXT = {
    offlineKept: "You are offline. Your answers are kept on this device and will be sent when you are back online.",
    offlineUnsafe: "You are offline, and this device cannot keep your answers safely. Try again when you are back online.",
    outboxWaiting: "Waiting to be sent when you are back online (kept locked on this device):",
    outboxNotSent: "Not sent:",
    anActivity: "An activity",
    outboxConflict: ": changed on another device, have a look",
    outboxInvalid: ": some answers need a look",
    keptLabel: "Answers from this device",
    keptConflict: "Your answers from this device were not sent, because these answers were changed on another device. Nothing was overwritten.",
    keptInvalid: "Your answers from this device were not sent: some of them need a look.",
    useKept: "Use my answers from this device",
    discardKept: "Keep what is shown and forget mine",
    pushBlocked: "Notifications are blocked for this site in your browser's settings.",
    pushUnsupported: "This browser cannot show notifications here.",
    pushNotOn: "Not turned on.",
    pushOn: "Notifications are on.",
    pushFailed: "Notifications could not be turned on.",
    offlineTitle: "Offline",
    offlineHeading: "You are offline",
    offlineNotKept: "This page was not kept on this device. Your list is:",
    toDo: "To do",
    pushTitle: "Home practice",
    pushBody: "You have an activity waiting"
  };
  var SW_WORDS = ["offlineTitle", "offlineHeading", "offlineNotKept", "toDo", "pushTitle", "pushBody"];
  (function () {
    var data = document.getElementById("hw-pwa-text"), given = null;
    try { given = data ? JSON.parse(data.textContent) : null; } catch (e) { given = null; }
    if (!given || typeof given !== "object") { return; }
    Object.keys(TEXT).forEach(function (k) {
      if (typeof given[k] === "string" && given[k]) { TEXT[k] = given[k]; }
    });
  })();

  /* -- signed out: forget everything kept on this device ------------------------------- */
  if (document.body.dataset.signedOut) {
    sessionStorage.removeItem(KEY_ITEM);
    indexedDB.deleteDatabase(DB_NAME);
    if (window.caches) {
      caches.keys().then(function (keys) { keys.forEach(function (k) { caches.delete(k); }); });
    }
    return;
  }

  /* -- service worker ---------------------------------------------------------------------- */
  var ready = Promise.resolve(null);
  if (sw) {
    ready = sw.register(SW_URL, { scope: SCOPE }).then(function () { return sw.ready; })
      .catch(function () { return null; });
  }
  function workerWords() {  /* for the worker's offline page and a push without text */
    var words = { lang: document.documentElement.lang || "en" };
    SW_WORDS.forEach(function (k) { words[k] = TEXT[k]; });
    return words;
  }
  function cacheAhead() {
    var urls = [location.pathname];
    document.querySelectorAll('a[href*="/tasks/"]').forEach(function (a) {
      urls.push(a.getAttribute("href"));
    });
    document.querySelectorAll('link[rel="stylesheet"], link[rel="icon"], link[rel="manifest"]')
      .forEach(function (l) { urls.push(l.getAttribute("href")); });
    document.querySelectorAll("script[src]").forEach(function (s) { urls.push(s.getAttribute("src")); });
    ready.then(function (reg) {
      if (reg && reg.active) { reg.active.postMessage({ type: "cache", urls: urls, text: workerWords() }); }
    });
  }
  if (navigator.onLine) { cacheAhead(); }
  document.addEventListener("hw:saved", function () {
    ready.then(function (reg) {
      if (reg && reg.active) { reg.active.postMessage({ type: "cache", urls: [location.pathname] }); }
    });
  });

  /* -- the key of this session ------------------------------------------------------------- */
  function b64urlDecode(text) {
    var s = text.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var raw = atob(s), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }
  function sessionKey() {
    return fetch(KEY_URL, { credentials: "same-origin", cache: "no-store",
                            headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { sessionStorage.removeItem(KEY_ITEM); throw new Error("signed out"); }
        if (!r.ok) { throw new Error("no key"); }
        return r.json();
      })
      .then(function (info) { sessionStorage.setItem(KEY_ITEM, JSON.stringify(info)); return info; },
        function (err) {
          var kept = sessionStorage.getItem(KEY_ITEM);
          if (err.message === "signed out" || !kept) { throw err; }
          return JSON.parse(kept);
        });
  }
  function aesKey(info) {
    return crypto.subtle.importKey("raw", b64urlDecode(info.key), { name: "AES-GCM" }, false,
                                   ["encrypt", "decrypt"]);
  }
  function seal(info, value) {
    var iv = crypto.getRandomValues(new Uint8Array(12));
    return aesKey(info).then(function (key) {
      return crypto.subtle.encrypt({ name: "AES-GCM", iv: iv }, key,
                                   new TextEncoder().encode(JSON.stringify(value)));
    }).then(function (data) { return { iv: iv, data: data }; });
  }
  function unseal(info, record) {
    return aesKey(info).then(function (key) {
      return crypto.subtle.decrypt({ name: "AES-GCM", iv: record.iv }, key, record.data);
    }).then(function (plain) { return JSON.parse(new TextDecoder().decode(plain)); });
  }

  /* -- the outbox (IndexedDB) ---------------------------------------------------------------- */
  function db() {
    return new Promise(function (resolve, reject) {
      var req = indexedDB.open(DB_NAME, 1);
      req.onupgradeneeded = function () { req.result.createObjectStore(STORE, { keyPath: "task" }); };
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { reject(req.error); };
    });
  }
  function tx(mode, work) {
    return db().then(function (d) {
      return new Promise(function (resolve, reject) {
        var t = d.transaction(STORE, mode), result;
        var req = work(t.objectStore(STORE));
        if (req) { req.onsuccess = function () { result = req.result; }; }
        t.oncomplete = function () { d.close(); resolve(result); };
        t.onerror = function () { d.close(); reject(t.error); };
      });
    });
  }
  function all() { return tx("readonly", function (s) { return s.getAll(); }).then(function (r) { return r || []; }); }
  function put(record) { return tx("readwrite", function (s) { return s.put(record); }); }
  function drop(task) { return tx("readwrite", function (s) { return s.delete(task); }); }

  /* -- what is waiting --------------------------------------------------------------------- */
  var box = document.getElementById("outbox");
  function show() {
    if (!box) { return Promise.resolve(); }
    return all().then(function (records) {
      if (!records.length) { box.hidden = true; box.textContent = ""; return; }
      return sessionKey().catch(function () { return null; }).then(function (info) {
        return Promise.all(records.map(function (r) {
          var opened = info ? unseal(info, r).catch(function () { return null; }) : Promise.resolve(null);
          return opened.then(function (v) { return { record: r, title: v ? v.title : TEXT.anActivity }; });
        }));
      }).then(function (items) {
        box.hidden = false;
        box.textContent = "";
        var waiting = items.filter(function (i) { return i.record.state === "waiting"; });
        var stuck = items.filter(function (i) { return i.record.state !== "waiting"; });
        var heading = document.createElement("p");
        heading.id = "outbox-title";
        heading.textContent = waiting.length ? TEXT.outboxWaiting : TEXT.outboxNotSent;
        box.appendChild(heading);
        var list = document.createElement("ul");
        waiting.concat(stuck).forEach(function (i) {
          var li = document.createElement("li");
          li.className = "outbox-" + i.record.state;
          var a = document.createElement("a");
          a.href = i.record.page;
          a.textContent = i.title;
          li.appendChild(a);
          li.appendChild(document.createTextNode(i.record.state === "waiting" ? "" :
            i.record.state === "conflict" ? TEXT.outboxConflict : TEXT.outboxInvalid));
          list.appendChild(li);
        });
        box.appendChild(list);
      });
    });
  }

  /* -- keep answers when offline --------------------------------------------------------- */
  function say(text) {
    var status = form && form.querySelector("[data-hw-status]");
    if (status) { status.textContent = text; }
  }
  if (form) {
    form.addEventListener("submit", function (event) {
      if (navigator.onLine) { return; }
      event.preventDefault();
      event.stopImmediatePropagation();
      document.dispatchEvent(new CustomEvent("hw:kept"));  /* form.js: no autosave notice after ours */
      var action = event.submitter && event.submitter.name === "_action" ? event.submitter.value : "save";
      var fields = [];
      new FormData(form).forEach(function (value, name) {
        if (name !== "_action" && name !== "csrf_token" && typeof value === "string") { fields.push([name, value]); }
      });
      fields.push(["_action", action]);
      var title = (document.querySelector("h1") || {}).textContent || TEXT.anActivity;
      sessionKey().then(function (info) {
        return seal(info, { fields: fields, title: title.trim() });
      }).then(function (sealed) {
        return put({ task: form.dataset.task, action: form.action, page: location.pathname,
                     iv: sealed.iv, data: sealed.data, state: "waiting", kept: Date.now() });
      }).then(function () {
        say(TEXT.offlineKept + " " +
            (document.body.getAttribute("data-crisis-line") || "If you are in crisis, call your local emergency number."));
        return show();
      }, function () {
        say(TEXT.offlineUnsafe);
      });
    }, true);
  }

  /* -- send when back online ---------------------------------------------------------------- */
  function send(info, record) {
    return unseal(info, record).then(function (value) {
      var body = new URLSearchParams();
      value.fields.forEach(function (f) { body.append(f[0], f[1]); });
      body.append("csrf_token", info.csrf);
      return fetch(record.action, { method: "POST", body: body, credentials: "same-origin",
                                    headers: { "X-CSRF-Token": info.csrf } });
    }).then(function (response) {
      if (response.ok) {
        return drop(record.task).then(function () { return response.url; });
      }
      if (response.status === 409 || response.status === 410 || response.status === 422) {
        record.state = response.status === 422 ? "invalid" : "conflict";
        return put(record).then(function () { return null; });
      }
      return null;  /* signed out, server trouble: keep it waiting */
    }, function () { return null; });
  }
  var flushing = false;
  function flush() {
    if (!navigator.onLine || flushing) { return Promise.resolve(); }
    flushing = true;
    var run = function () {
      return all().then(function (records) {
        var waiting = records.filter(function (r) { return r.state === "waiting"; });
        if (!waiting.length) { return; }
        return sessionKey().then(function (info) {
          return waiting.reduce(function (chain, record) {
            return chain.then(function () {
              return send(info, record).then(function (landed) {
                if (form && form.dataset.task === record.task) {
                  if (landed) { location.assign(landed); } else { location.reload(); }
                }
              });
            });
          }, Promise.resolve());
        });
      });
    };
    var locked = navigator.locks ? navigator.locks.request("hw-outbox", run) : run();
    return locked.catch(function () { return null; })
      .then(function () { flushing = false; return show(); });
  }
  if (form && navigator.onLine) { sessionKey().catch(function () { return null; }); }  /* ready for offline */
  window.addEventListener("online", function () { flush(); cacheAhead(); });
  document.documentElement.setAttribute("data-hw-offline", "ready");
  flush();

  /* -- answers from this device that could not be sent: show them, offer to use them ----- */
  function fill(fields) {
    var seen = {};
    fields.forEach(function (f) {
      var name = f[0], value = f[1];
      if (name === "_action" || name === "_version") { return; }
      var els = form.querySelectorAll('[name="' + CSS.escape(name) + '"]');
      if (!els.length) { return; }
      if (els[0].type === "radio" || els[0].type === "checkbox") {
        els.forEach(function (el) { if (el.value === value) { el.checked = true; } });
      } else {
        var index = seen[name] || 0;
        seen[name] = index + 1;
        if (els[index]) { els[index].value = value; }
      }
    });
    form.dispatchEvent(new Event("change", { bubbles: true }));
  }
  if (form) {
    all().then(function (records) {
      var mine = records.filter(function (r) { return r.task === form.dataset.task && r.state !== "waiting"; })[0];
      if (!mine) { return; }
      return sessionKey().then(function (info) { return unseal(info, mine); }).then(function (value) {
        var panel = document.createElement("div");
        panel.className = "notice";
        panel.id = "kept-answers";
        panel.setAttribute("role", "region");
        panel.setAttribute("aria-label", TEXT.keptLabel);
        var p = document.createElement("p");
        p.textContent = mine.state === "conflict" ? TEXT.keptConflict : TEXT.keptInvalid;
        var use = document.createElement("button");
        use.type = "button"; use.className = "button secondary"; use.id = "use-kept";
        use.textContent = TEXT.useKept;
        var discard = document.createElement("button");
        discard.type = "button"; discard.className = "link-button"; discard.id = "discard-kept";
        discard.textContent = TEXT.discardKept;
        use.addEventListener("click", function () {
          fill(value.fields);
          drop(mine.task).then(function () { panel.remove(); show(); });
        });
        discard.addEventListener("click", function () {
          drop(mine.task).then(function () { panel.remove(); show(); });
        });
        panel.appendChild(p); panel.appendChild(use); panel.appendChild(discard);
        form.parentNode.insertBefore(panel, form);
      });
    }).catch(function () { return null; });
  }

  /* -- Web Push opt-in ------------------------------------------------------------------------ */
  var push = document.getElementById("push");
  if (push) {
    var on = document.getElementById("push-on"), message = document.getElementById("push-message");
    if (!sw || !("PushManager" in window) || !push.dataset.key) {
      document.getElementById("push-unsupported").hidden = false;
    } else {
      on.hidden = false;
      on.addEventListener("click", function () {
        on.disabled = true;
        var csrf = (document.querySelector("input[name=csrf_token]") || {}).value || "";
        var said = function (text) { var e = new Error(text); e.said = true; return e; };
        Notification.requestPermission().then(function (permission) {
          if (permission !== "granted") { throw said(TEXT.pushBlocked); }
          return ready;
        }).then(function (reg) {
          if (!reg) { throw said(TEXT.pushUnsupported); }
          return reg.pushManager.subscribe({ userVisibleOnly: true,
                                             applicationServerKey: b64urlDecode(push.dataset.key) });
        }).then(function (subscription) {
          return fetch(push.dataset.url, {
            method: "POST", credentials: "same-origin", body: JSON.stringify(subscription.toJSON()),
            headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf }
          });
        }).then(function (r) {
          return r.json().catch(function () { return {}; }).then(function (body) {
            /* no message of ours (a framework's or an unexpected error: an OperationOutcome whose
               diagnostics are English, for developers): the page's own words */
            if (!r.ok) { throw said(body.message || TEXT.pushFailed); }
            message.textContent = body.message || TEXT.pushOn;
          });
        }).catch(function (err) {  /* ours, or the server's; never the browser's own (English) */
          message.textContent = err && err.said && err.message ? err.message : TEXT.pushFailed;
        }).then(function () { on.disabled = false; });
      });
    }
  }
})();
