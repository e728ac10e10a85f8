"""The patient pages as an installable, offline-capable web app, and Web Push opt-in.

* ``/my/manifest.webmanifest`` — the web app manifest (start at the to-do list,
  standalone, icons under ``static/patient/icons``), in English; ``/my/manifest.es.webmanifest``
  the same in another language. The page links the one of its own language, so the name
  a phone shows for the installed app is the patient's; the language is in the path (not a
  cookie: browsers fetch manifests without one), which keeps each cacheable, and says nothing
  else about the patient.
* ``/my/sw.js?lang=es`` — the service worker (``static/patient/sw.js``), served from ``/my/``
  so its scope covers every patient page; it caches the shell and the patient's open
  activities and shows push notifications. Pages register it with their language, and the
  server puts that language's words (the offline page, a push without text) before the
  script, so its very first offline page is already in the patient's language.
* ``GET /my/offline/key`` — this browser session's key for the drafts kept on the
  device (AES-GCM, 256 bits, base64url) and the session's CSRF token. The key lives
  in the server-side session, inside the signed-in patient's entry: signing out (or
  another patient signing in) forgets it, so drafts left on the device can no longer
  be read. Never cached (``no-store``).
* ``POST /my/push/subscription`` — keep the browser's push subscription
  (``PushSubscription.toJSON()``) and make ``webpush`` the preferred reminder channel;
  ``POST /my/push/off`` forgets this patient's subscriptions (a form; works without
  JavaScript).
* ``pwa_text()`` — the words ``pwa.js`` and the service worker show (offline notices,
  "waiting to be sent", the kept-answers panel, push opt-in, the offline page), in the
  page's language: every patient page carries them as JSON in
  ``<script type="application/json" id="hw-pwa-text">`` (data, not code: the CSP's
  ``script-src`` does not apply to it), and ``pwa.js`` falls back to English without it.

Thin views: subscriptions and VAPID keys are :mod:`hw_fhir.push`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from hw_fhir.egress import egress_policy
from hw_fhir.errors import HwFhirError, InvalidInput, NotFound
from hw_fhir.i18n import DEFAULT_LANGUAGE, LANGUAGES, N_, supported, translator
from hw_fhir.push import (
    application_server_key,
    b64url,
    parse_subscription,
    push_config,
    remove_patient_subscriptions,
    save_subscription,
    subscriptions_for,
)

from ..security import csrf_token
from . import access
from .language import current_language
from .preferences import read_preferences, with_preferences

__all__ = ["bp", "DRAFT_KEY", "ICON_SIZES", "THEME_COLOR", "PWA_WORDS", "MANIFEST_WORDS",
           "FAILURE_WORDS", "pwa_text",
           "worker_words"]

bp = Blueprint("patient_pwa", __name__)

#: Where the drafts' key is kept, inside the signed-in patient's session entry.
DRAFT_KEY = "draft_key"
ICON_SIZES = (72, 96, 128, 144, 152, 192, 384, 512)
THEME_COLOR = "#2f6f6a"


@bp.app_template_global()
def web_push_state() -> dict[str, Any]:
    """For the preferences page: the applicationServerKey and how many devices are subscribed."""
    services = access.services()
    patient_ref = access.current_patient()
    if patient_ref is None or not push_config(services.settings).enabled:
        return {"key": "", "devices": 0}
    return {"key": application_server_key(services.settings),
            "devices": len(subscriptions_for(services.store, patient_ref.split("/", 1)[1]))}


#: The words of ``pwa.js`` and the service worker, by key (translated by :func:`pwa_text`).
PWA_WORDS: dict[str, str] = {
    "offlineKept": N_("You are offline. Your answers are kept on this device and will be sent "
                      "when you are back online."),
    "offlineUnsafe": N_("You are offline, and this device cannot keep your answers safely. "
                        "Try again when you are back online."),
    "outboxWaiting": N_("Waiting to be sent when you are back online (kept locked on this "
                        "device):"),
    "outboxNotSent": N_("Not sent:"),
    "anActivity": N_("An activity"),
    "outboxConflict": N_(": changed on another device, have a look"),
    "outboxInvalid": N_(": some answers need a look"),
    "keptLabel": N_("Answers from this device"),
    "keptConflict": N_("Your answers from this device were not sent, because these answers "
                       "were changed on another device. Nothing was overwritten."),
    "keptInvalid": N_("Your answers from this device were not sent: some of them need a look."),
    "useKept": N_("Use my answers from this device"),
    "discardKept": N_("Keep what is shown and forget mine"),
    "pushBlocked": N_("Notifications are blocked for this site in your browser's settings."),
    "pushUnsupported": N_("This browser cannot show notifications here."),
    "pushNotOn": N_("Not turned on."),
    "pushOn": N_("Notifications are on."),
    "pushFailed": N_("Notifications could not be turned on."),
    # the service worker's (it keeps them for the offline page and a push without words)
    "offlineTitle": N_("Offline"),
    "offlineHeading": N_("You are offline"),
    "offlineNotKept": N_("This page was not kept on this device. Your list is:"),
    "toDo": N_("To do"),
    "pushTitle": N_("Home practice"),
    "pushBody": N_("You have an activity waiting"),
}


@lru_cache(maxsize=8)
def _pwa_words(language: str) -> dict[str, str]:
    translate = translator(language)
    return {key: translate(text) for key, text in PWA_WORDS.items()}


@bp.app_template_global()
def pwa_text() -> dict[str, str]:
    """Return the words of ``pwa.js`` and the service worker in the page's language, by key."""
    return dict(_pwa_words(current_language()))


def _unauthorized() -> Any:
    return jsonify({"ok": False, "message": _("Open your link again to carry on.")}), 401


#: What a patient reads when one of these routes fails (never the errors' own diagnostics).
FAILURE_WORDS: dict[str, str] = {
    "expired": N_("This page has expired. Reload it and try again."),
    "changed": N_("Something changed meanwhile. Reload the page and try again."),
    "push": N_("This browser's notifications cannot be used here. You can choose email or "
               "text messages above instead."),
    "other": N_("That could not be done. Reload the page and try again."),
}


def _failure_words(exc: HwFhirError) -> str:
    """What a patient reads when one of these routes fails: their words, not the diagnostics."""
    if exc.status == 403:  # the form's CSRF token: the page was open too long, or signed out
        return _(FAILURE_WORDS["expired"])
    if exc.status in (409, 412):
        return _(FAILURE_WORDS["changed"])
    if request.endpoint == "patient_pwa.push_subscribe" and exc.status < 500:
        return _(FAILURE_WORDS["push"])
    return _(FAILURE_WORDS["other"])


@bp.errorhandler(HwFhirError)
def _failed(exc: HwFhirError) -> Any:
    """Answer pwa.js (JSON: what it shows is ``message``; the issues, in English, are for a
    developer) or the patient's browser (a page) in the patient's language."""
    words = _failure_words(exc)
    headers = getattr(exc, "headers", None) or {}
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"ok": False, "message": words, "issue": exc.outcome["issue"]}), exc.status, headers
    page = render_template("patient/message.html", title=_("That could not be done"), text=words,
                           show_home=True)
    return page, exc.status, headers


#: The installed app's name and description, translated into the manifest's language.
MANIFEST_WORDS: dict[str, str] = {
    "name": N_("Home practice"),
    "short_name": N_("Practice"),
    "description": N_("Your between-session activities, reminders and progress."),
}


@bp.get("/my/manifest.<lang>.webmanifest")
@bp.get("/my/manifest.webmanifest", defaults={"lang": DEFAULT_LANGUAGE})
def manifest(lang: str) -> Any:
    """The web app manifest of the patient pages, in the language its path names."""
    if lang not in LANGUAGES:
        raise NotFound("There is no manifest in that language.")
    translate = translator(lang)
    icons = [{"src": url_for("static", filename=f"patient/icons/icon-{size}.png"),
              "sizes": f"{size}x{size}", "type": "image/png", "purpose": "any"}
             for size in ICON_SIZES]
    icons.append({"src": url_for("static", filename="patient/icons/maskable-512.png"),
                  "sizes": "512x512", "type": "image/png", "purpose": "maskable"})
    body = {
        **{key: translate(words) for key, words in MANIFEST_WORDS.items()},
        "lang": lang,
        "dir": "ltr",
        "id": url_for("patient.home"),  # one app in every language (an installed app keeps it)
        "start_url": url_for("patient.home"),
        "scope": url_for("patient.home"),
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": THEME_COLOR,
        "icons": icons,
    }
    response = jsonify(body)
    response.mimetype = "application/manifest+json"
    response.cache_control.public = True  # the same for everyone who asks in this language
    response.cache_control.max_age = 3600
    response.add_etag()
    return response.make_conditional(request)


#: Put before the worker's script: its words in the language it was registered with.
_WORKER_WORDS = ("offlineTitle", "offlineHeading", "offlineNotKept", "toDo", "pushTitle",
                 "pushBody")


def worker_words(language: str) -> dict[str, str]:
    """Return the service worker's own words (the offline page, a push without text) in a language."""
    words = _pwa_words(supported(language))
    return {"lang": supported(language), **{key: words[key] for key in _WORKER_WORDS}}


@lru_cache(maxsize=16)
def _worker_script(static_folder: str, language: str) -> str:
    """The worker's script with its words in ``language`` first: read and built once per
    language and process, not per request (browsers re-check it on every page load)."""
    script = Path(static_folder, "patient", "sw.js").read_text("utf-8")
    words = json.dumps(worker_words(language), ensure_ascii=True)
    return f'"use strict";\nvar HW_WORDS = {words};\n{script}'


@bp.get("/my/sw.js")
def service_worker() -> Any:
    """The service worker script, from /my/ so that its scope is every patient page.

    ``?lang=es``: the words of that language come first (``HW_WORDS``), English otherwise.
    """
    body = _worker_script(current_app.static_folder or "static",
                          supported(request.args.get("lang", "")))
    response = Response(body, mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Service-Worker-Allowed"] = url_for("patient.home")
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/my/offline/key")
def offline_key() -> Any:
    """This session's key for drafts kept on the device, and the CSRF token to send them with."""
    if access.current_patient() is None:
        return _unauthorized()
    entry = dict(session[access.SESSION_KEY])
    if not entry.get(DRAFT_KEY):
        entry[DRAFT_KEY] = b64url(secrets.token_bytes(32))
        session[access.SESSION_KEY] = entry
    response = jsonify({"key": entry[DRAFT_KEY], "csrf": csrf_token(),
                        "patient": access.current_patient()})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/my/push/subscription")
def push_subscribe() -> Any:
    """Keep this browser's push subscription; push becomes the preferred reminder channel."""
    patient_ref = access.current_patient()
    if patient_ref is None:
        return _unauthorized()
    data = request.get_json(silent=True)
    if data is None:
        raise InvalidInput("Send the subscription as JSON.")
    subscription = parse_subscription(data, egress=egress_policy(access.services().settings))
    store = access.services().store
    new = save_subscription(store, patient_ref.split("/", 1)[1], subscription)
    patient = store.read("Patient", patient_ref.split("/", 1)[1]).resource
    prefs = read_preferences(patient)
    chosen = replace(prefs, channel="webpush",
                     extra_opt_out=tuple(c for c in prefs.extra_opt_out if c != "webpush"))
    if chosen != prefs or chosen.extra_opt_out != prefs.extra_opt_out:  # extra_opt_out: compare=False
        store.update(with_preferences(patient, chosen), if_match=patient["meta"]["versionId"])
    return jsonify({"ok": True, "message": _("Notifications are on for this device.")}), 201 if new else 200


@bp.post("/my/push/off")
def push_off() -> Any:
    """Forget every push subscription of this patient (notifications off on all devices)."""
    patient_ref = access.current_patient()
    if patient_ref is None:
        return _unauthorized()
    removed = remove_patient_subscriptions(access.services().store, patient_ref.split("/", 1)[1])
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"ok": True, "removed": removed})
    return redirect(url_for("patient.preferences", saved=1))
