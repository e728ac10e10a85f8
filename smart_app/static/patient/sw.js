/* hw-fhir patient service worker, served from /my/sw.js (scope: every patient page).

   - Patient pages (GET, in scope): network first; a good answer is kept in the cache
     (keyed without the query string), so the to-do list and the open activities can be
     opened with no connection. The page (pwa.js) asks for the open activities and the
     shell's files to be cached ahead: message {type: "cache", urls: [...]}.
   - The drafts' key (/my/offline/key), the worker itself and every non-GET request are
     never cached nor answered from the cache.
   - Signing out empties every cache (pwa.js on the signed-out page); so does any patient
     page answering 401 (the session expired). A kept page is served for 12 hours at most.
   - A push shows a notification: the practice, "You have an activity waiting", and a
     tap opens the to-do list. Nothing clinical is ever in a push.
   - Words: the server's push carries its title and text in the patient's language; the
     offline page and a push without text use the words of the patient's last page, which
     pwa.js hands over with the pages to cache ({type: "cache", urls, text}); they are kept
     in their own cache (emptied with the others) once the page itself was kept, so not
     from a page answering 401. Until then, the words of the language the pages registered
     the worker with (/my/sw.js?lang=es: the server puts them before this script as
     HW_WORDS), so even the first offline page is in the patient's language; English when
     there are none.
*/
"use strict";

var PAGES = "hw-pages-v1";
var WORDS = "hw-text-v1";
var SCOPE = self.registration.scope;
var NEVER = ["offline/key", "sw.js", "push/", "signout"];

function pathOf(url) { return new URL(url, SCOPE); }

/* -- words: the patient's language (a page's, else the registration's), else English --------- */
var ENGLISH = {
  lang: "en",
  offlineTitle: "Offline",
  offlineHeading: "You are offline",
  offlineNotKept: "This page was not kept on this device. Your list is:",
  toDo: "To do",
  pushTitle: "Home practice",
  pushBody: "You have an activity waiting"
};
var WORDS_KEY = new URL("hw-text.json", SCOPE).href;  /* never fetched: only a cache key */
/* the registration's language (smart_app/patient/pwa.py service_worker) */
var BUILT_IN = typeof HW_WORDS === "object" && HW_WORDS ? HW_WORDS : {};

function keepWords(given) {
  var words = {};
  Object.keys(ENGLISH).forEach(function (k) {
    if (typeof given[k] === "string" && given[k] && given[k].length < 500) { words[k] = given[k]; }
  });
  var body = new Response(JSON.stringify(words), { headers: { "Content-Type": "application/json" } });
  return caches.open(WORDS).then(function (cache) { return cache.put(WORDS_KEY, body); });
}

function words() {
  return caches.open(WORDS).then(function (cache) { return cache.match(WORDS_KEY); })
    .then(function (hit) { return hit ? hit.json() : {}; })
    .catch(function () { return {}; })
    .then(function (kept) {
      var out = {};
      Object.keys(ENGLISH).forEach(function (k) { out[k] = kept[k] || BUILT_IN[k] || ENGLISH[k]; });
      return out;
    });
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, function (c) {
    return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }[c];
  });
}

function cacheable(url) {
  var u = pathOf(url);
  if (u.origin !== self.location.origin) { return false; }
  var inScope = u.href.indexOf(SCOPE) === 0;
  var isStatic = u.pathname.indexOf("/static/") !== -1;
  if (!inScope && !isStatic) { return false; }
  return !NEVER.some(function (part) { return u.pathname.indexOf(part) !== -1; });
}

function cacheKey(url) {
  var u = pathOf(url);
  return u.origin + u.pathname;
}

/* A kept page is served offline for at most a browser session's lifetime (12 hours). */
var MAX_AGE_MS = 12 * 3600 * 1000;

function keep(url, response) {  /* resolves true when kept */
  if (!response || !response.ok || response.redirected || response.type !== "basic") {
    return Promise.resolve(false);
  }
  var headers = new Headers(response.headers);
  headers.set("X-HW-Kept-At", String(Date.now()));
  return response.blob().then(function (body) {
    var stamped = new Response(body, { status: response.status, statusText: response.statusText,
                                       headers: headers });
    return caches.open(PAGES).then(function (cache) { return cache.put(cacheKey(url), stamped); })
      .then(function () { return true; });
  });
}

function fresh(hit) {
  var at = hit && Number(hit.headers.get("X-HW-Kept-At"));
  return !!hit && !!at && Date.now() - at < MAX_AGE_MS;
}

function forget() {
  return caches.keys().then(function (keys) {
    return Promise.all(keys.map(function (k) { return caches.delete(k); }));
  });
}

self.addEventListener("install", function () { self.skipWaiting(); });

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.filter(function (k) { return k !== PAGES && k !== WORDS; })
      .map(function (k) { return caches.delete(k); }));
  }).then(function () { return self.clients.claim(); }));
});

function offlinePage() {
  return words().then(function (w) {
    var html = "<!doctype html><html lang=\"" + escapeHtml(w.lang) + "\"><head><meta charset=\"utf-8\">" +
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">" +
      "<title>" + escapeHtml(w.offlineTitle) + "</title></head><body><main>" +
      "<h1 id=\"offline\">" + escapeHtml(w.offlineHeading) + "</h1>" +
      "<p>" + escapeHtml(w.offlineNotKept) + " <a href=\"" + escapeHtml(SCOPE) + "\">" +
      escapeHtml(w.toDo) + "</a>.</p></main></body></html>";
    return new Response(html, { status: 503, headers: { "Content-Type": "text/html; charset=utf-8" } });
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET" || !cacheable(request.url)) { return; }
  event.respondWith(fetch(request).then(function (response) {
    if (response.status === 401 && request.mode === "navigate") {
      event.waitUntil(forget());  /* the session is over: nothing of it stays on the device */
    } else if (response.ok && !response.redirected) {
      var copy = response.clone();
      event.waitUntil(keep(request.url, copy));
    }
    return response;
  }).catch(function () {
    return caches.open(PAGES).then(function (cache) {
      return cache.match(cacheKey(request.url));
    }).then(function (hit) {
      if (fresh(hit)) { return hit; }
      if (request.mode === "navigate") { return offlinePage(); }
      return Response.error();
    });
  }));
});

self.addEventListener("message", function (event) {
  var data = event.data || {};
  if (data.type === "cache" && Array.isArray(data.urls)) {
    var page = data.urls[0];
    event.waitUntil(Promise.all(data.urls.filter(cacheable).map(function (url) {
      return fetch(url, { credentials: "same-origin" })
        .then(function (response) { return keep(url, response).then(function (kept) { return kept && url; }); })
        .catch(function () { return null; });
    })).then(function (kept) {
      /* the page's words, once the page itself was kept: a live session (after it, nothing stays) */
      if (data.text && typeof data.text === "object" && kept.indexOf(page) !== -1) {
        return keepWords(data.text);
      }
    }).then(function () {
      if (event.source) { event.source.postMessage({ type: "cached", urls: data.urls }); }
    }));
  } else if (data.type === "clear") {
    event.waitUntil(forget());
  }
});

self.addEventListener("push", function (event) {
  var data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
  var target = data.url && pathOf(data.url).origin === self.location.origin ? data.url : SCOPE;
  event.waitUntil(words().then(function (w) {
    return self.registration.showNotification(data.title || w.pushTitle, {
      body: data.body || w.pushBody,
      tag: data.tag || "hw-reminder",
      icon: new URL("../static/patient/icons/icon-192.png", self.location).href,
      data: { url: target }
    });
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var target = (event.notification.data || {}).url || SCOPE;
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true })
    .then(function (windows) {
      for (var i = 0; i < windows.length; i++) {
        if (windows[i].url.indexOf(SCOPE) === 0 && "focus" in windows[i]) {
          return windows[i].navigate(target).then(function (c) { return c && c.focus(); });
        }
      }
      return self.clients.openWindow(target);
    }));
});
