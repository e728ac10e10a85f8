"""Web Push in headless Chromium, as far as a browser can go on a machine without Google's push
service: Chromium's ``pushManager.subscribe`` registers with Firebase Cloud Messaging, which
these tests must never reach, so the page posts a subscription the test made (a real P-256
key pair, the same request the "Turn on notifications" button sends). The reminder worker
pushes to the local push service (tests/push_support.py: VAPID checked, payload
decrypted), and the decrypted payload is handed to the page's service worker through the
DevTools protocol (``ServiceWorker.deliverPushMessage``), standing in for the push
transport: the notification it shows says only "You have an activity waiting" (or, for a
Spanish-speaking patient whose push came without words, the Spanish words their pages gave it).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator

import pytest
from browser_support import chromium, csp_violations
from conftest import serve
from patient_support import give_homework, link_for, patient_app

from hw_fhir.assignment import parse_instant
from hw_fhir.i18n import with_language
from hw_fhir.push import subscriptions_for
from hw_fhir.reminders import run_reminders

from push_support import PushService

pytestmark = pytest.mark.browser


@pytest.fixture
def push() -> Iterator[PushService]:
    service = PushService()
    yield service
    service.stop()


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[Any]:
    app = patient_app(app_config, secure_cookies=True, base_url="https://hw.example.org",
                      egress_allow="127.0.0.1")
    server = serve(app)
    yield server
    server.stop()
    app.extensions["hw_fhir"].close()


def _wait(driver: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout)


def _notifications_after_push(phone: Any, origin: str, payload: dict[str, Any]) -> Any:
    """Hand a push's payload to the page's service worker; return the notifications it shows."""
    phone.execute_cdp_cmd("Browser.grantPermissions", {"origin": origin, "permissions": ["notifications"]})
    phone.execute_cdp_cmd("ServiceWorker.enable", {})

    def delivered(driver: Any) -> Any:
        # the DevTools ServiceWorker domain learns of the registration shortly after enable
        for registration in range(4):  # the fresh profile's one registration; its id is not exposed
            driver.execute_cdp_cmd("ServiceWorker.deliverPushMessage", {
                "origin": origin + "/", "registrationId": str(registration),
                "data": json.dumps(payload)})
        return driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "setTimeout(() => navigator.serviceWorker.ready.then(r => r.getNotifications())"
            ".then(ns => done(ns.map(n => ({title: n.title, body: n.body, url: n.data.url}))),"
            " () => done([])), 300);")

    return _wait(phone).until(delivered)


def test_opt_in_on_the_preferences_page_and_a_push_becomes_a_notification(served: Any, push: PushService) -> None:
    from selenium.webdriver.common.by import By

    app = served.app
    services = app.extensions["hw_fhir"]
    task = give_homework(app, "phq-9")
    with chromium(390, 844, mobile=True) as phone:
        phone.set_script_timeout(30)
        phone.get(served.url + link_for(app, task))
        _wait(phone, 30).until(lambda d: d.execute_script("return !!navigator.serviceWorker.controller"))
        phone.get(served.url + "/my/preferences")
        _wait(phone, 30).until(lambda d: d.execute_script("return !!navigator.serviceWorker.controller"))
        assert phone.find_element(By.ID, "push-on").is_displayed()  # the Push API is there
        assert not phone.find_element(By.ID, "push-unsupported").is_displayed()

        browser = push.subscribe()
        status = phone.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const box = document.getElementById('push');"
            "fetch(box.dataset.url, {method: 'POST', credentials: 'same-origin', body: JSON.stringify(arguments[0]),"
            " headers: {'Content-Type': 'application/json', 'Accept': 'application/json',"
            "  'X-CSRF-Token': document.querySelector('input[name=csrf_token]').value}})"
            ".then(r => done(r.status), e => done(String(e)));", browser.as_json())
        assert status == 201
        phone.get(served.url + "/my/preferences")
        assert "Notifications are on for one device." in phone.find_element(By.ID, "push-status").text
        assert not csp_violations(phone)  # the service worker and pwa.js run under the strict CSP
        patient = services.store.read("Patient", "pat-ava").resource
        assert '"valueCode": "webpush"' in json.dumps(patient)  # push is the preferred channel

        patient = services.store.read("Patient", "pat-ava").resource  # no quiet hours for the test
        patient["extension"] = [e for e in patient.get("extension", [])
                                if not e["url"].endswith("reminder-preferences")] + [{
            "url": "http://hw-fhir.org/fhir/StructureDefinition/reminder-preferences",
            "extension": [{"url": "channel", "valueCode": "webpush"},
                          {"url": "quietStart", "valueTime": "00:00:00"},
                          {"url": "quietEnd", "valueTime": "00:00:00"}]}]
        services.store.update(patient)
        services.events.publish("task_created", store=services.store, task=task)
        opens = parse_instant(task["restriction"]["period"].get("start") or task["authoredOn"])
        run_reminders(services, worker="w", now=opens + timedelta(minutes=1))
        assert not push.rejected and len(push.received) == 1
        payload = push.received[0].payload

        shown = _notifications_after_push(phone, served.url, payload)
        assert shown == [{"title": "Your care team", "body": "You have an activity waiting",
                          "url": served.url + "/my/"}]  # another origin's link is never opened

        phone.find_element(By.ID, "push-off").click()
        _wait(phone).until(lambda d: d.find_elements(By.ID, "prefs-saved"))
        assert subscriptions_for(services.store, "pat-ava") == []


def test_a_push_without_words_is_shown_in_the_language_of_the_patients_pages(served: Any) -> None:
    """The server's pushes carry their words (in the patient's language, tests/test_patient_pwa.py);
    one without them falls back to the words the patient's last page handed the service worker."""
    app = served.app
    store = app.extensions["hw_fhir"].store
    store.update(with_language(store.read("Patient", "pat-carmen").resource, "es"))
    task = give_homework(app, "phq-9", patient="pat-carmen")
    with chromium(390, 844, mobile=True) as phone:
        phone.set_script_timeout(30)
        phone.get(served.url + link_for(app, task))
        _wait(phone, 30).until(lambda d: d.execute_script("return !!navigator.serviceWorker.controller"))
        phone.get(served.url + "/my/")
        _wait(phone).until(lambda d: d.execute_async_script(  # the words, kept with the page
            "const done = arguments[arguments.length - 1];"
            "caches.open('hw-text-v1').then(c => c.match(arguments[0])).then(r => done(!!r), () => done(false));",
            served.url + "/my/hw-text.json"))
        shown = _notifications_after_push(phone, served.url, {})
        assert shown == [{"title": "Práctica en casa", "body": "Tiene una actividad pendiente",
                          "url": served.url + "/my/"}]


#: Chromium's own pushManager.subscribe would register with Firebase Cloud Messaging, which these
#: tests never reach: it answers with a subscription the server cannot use (not https).
_UNUSABLE_SUBSCRIPTION = """
PushManager.prototype.subscribe = function () {
  return Promise.resolve({ toJSON: function () {
    return { endpoint: "http://push.example.org/x", expirationTime: null,
             keys: { p256dh: "not-a-key", auth: "not-a-secret" } };
  } });
};
"""


@contextmanager
def _spanish_preferences(served: Any, subscribe: str) -> Iterator[Any]:
    """A phone of Carmen's (Spanish) on her preferences page, its service worker in control,
    notifications allowed and ``pushManager.subscribe`` replaced by ``subscribe``."""
    from selenium.webdriver.common.by import By

    app = served.app
    store = app.extensions["hw_fhir"].store
    store.update(with_language(store.read("Patient", "pat-carmen").resource, "es"))
    task = give_homework(app, "phq-9", patient="pat-carmen")
    with chromium(390, 844, mobile=True) as phone:
        phone.set_script_timeout(30)
        phone.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": subscribe})
        phone.execute_cdp_cmd("Browser.grantPermissions",
                              {"origin": served.url, "permissions": ["notifications"]})
        phone.get(served.url + link_for(app, task))
        _wait(phone, 30).until(lambda d: d.execute_script("return !!navigator.serviceWorker.controller"))
        phone.get(served.url + "/my/preferences")
        _wait(phone).until(lambda d: d.find_element(By.ID, "push-on").is_displayed())
        yield phone


def test_a_spanish_patient_whose_push_sign_up_is_refused_reads_why_in_spanish(served: Any) -> None:
    """The "Turn on notifications" button, the server refusing the subscription: what she reads
    under the button is in Spanish and in her words, not the server's English diagnostics."""
    from selenium.webdriver.common.by import By

    store = served.app.extensions["hw_fhir"].store
    with _spanish_preferences(served, _UNUSABLE_SUBSCRIPTION) as phone:
        phone.find_element(By.ID, "push-on").click()
        _wait(phone).until(lambda d: d.find_element(By.ID, "push-message").text)
        said = phone.find_element(By.ID, "push-message").text
        assert said == ("Las notificaciones de este navegador no se pueden usar aquí. Puede elegir "
                        "correo electrónico o mensajes de texto más arriba."), said
        assert not csp_violations(phone)
    assert subscriptions_for(store, "pat-carmen") == []


#: A subscription larger than the app then takes (the test lowers MAX_CONTENT_LENGTH): the
#: framework refuses it (413) before any view of ours runs.
_OVERSIZED_SUBSCRIPTION = """
PushManager.prototype.subscribe = function () {
  return Promise.resolve({ toJSON: function () {
    return { endpoint: "https://push.example.org/x", expirationTime: null,
             keys: { p256dh: "k".repeat(6000), auth: "not-a-secret" } };
  } });
};
"""


def test_a_failure_without_words_of_ours_shows_the_pages_words_not_the_diagnostics(served: Any) -> None:
    """The server answers the sign-up with a framework's refusal (an OperationOutcome whose
    diagnostics are English, no ``message``): under the button she reads her page's own words
    ("Notifications could not be turned on."), in Spanish, not the diagnostics."""
    from selenium.webdriver.common.by import By

    app = served.app
    store = app.extensions["hw_fhir"].store
    app.config["MAX_CONTENT_LENGTH"] = 4096
    with _spanish_preferences(served, _OVERSIZED_SUBSCRIPTION) as phone:
        answer = phone.execute_async_script(  # what the server says to this request, as pwa.js sees it
            "const done = arguments[arguments.length - 1];"
            "fetch(document.getElementById('push').dataset.url, {method: 'POST', credentials: 'same-origin',"
            " body: JSON.stringify({endpoint: 'https://push.example.org/x', keys: {p256dh: 'k'.repeat(6000)}}),"
            " headers: {'Content-Type': 'application/json', 'Accept': 'application/json',"
            "  'X-CSRF-Token': document.querySelector('input[name=csrf_token]').value}})"
            ".then(r => r.json().then(b => done([r.status, b])), e => done(String(e)));")
        assert answer[0] == 413 and "message" not in answer[1], answer
        assert answer[1]["issue"][0]["diagnostics"]  # English, for developers
        phone.find_element(By.ID, "push-on").click()
        _wait(phone).until(lambda d: d.find_element(By.ID, "push-message").text)
        said = phone.find_element(By.ID, "push-message").text
        assert said == "No se pudieron activar las notificaciones.", said
        assert not csp_violations(phone)
    assert subscriptions_for(store, "pat-carmen") == []
