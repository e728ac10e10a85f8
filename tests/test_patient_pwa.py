"""The patient pages as an app, over HTTP: manifest and icons, the service worker's scope, the
drafts' per-session key, Web Push opt-in (a subscription made by the test, as Chromium's
Push API needs Google's push service), and answers changed on another device (If-Match).

The push service is the local one of tests/push_support.py: it verifies VAPID and decrypts.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path
from datetime import timedelta
from typing import Any, Iterator

import pytest
from patient_support import csrf, give_homework, patient_app, sign_in, stored
from werkzeug.datastructures import MultiDict

from hw_fhir.assignment import parse_instant
from hw_fhir.completion import response_for_task
from hw_fhir.i18n import with_language
from hw_fhir.push import application_server_key, subscriptions_for
from hw_fhir.reminders import run_reminders

from push_support import PushService

BASE = "https://hw.example.org"
STATIC = Path(__file__).resolve().parents[1] / "smart_app" / "static" / "patient"


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = patient_app(app_config, base_url=BASE, egress_allow="127.0.0.1")
    yield application
    application.extensions["hw_fhir"].close()


@pytest.fixture
def push() -> Iterator[PushService]:
    service = PushService()
    yield service
    service.stop()


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_manifest_makes_the_patient_pages_installable(app: Any) -> None:
    client = app.test_client()
    got = client.get("/my/manifest.webmanifest")
    assert got.status_code == 200 and got.mimetype == "application/manifest+json"
    manifest = got.get_json()
    assert manifest["start_url"] == "/my/" and manifest["scope"] == "/my/"
    assert manifest["display"] == "standalone" and re.fullmatch(r"#[0-9a-f]{6}", manifest["theme_color"])
    assert manifest["name"] and manifest["short_name"]
    sizes = set()
    for icon in manifest["icons"]:
        image = client.get(icon["src"])
        assert image.status_code == 200 and image.mimetype == "image/png", icon["src"]
        width, height = _png_size(image.data)
        assert icon["sizes"] == f"{width}x{height}"
        sizes.add((width, icon["purpose"]))
    assert {(192, "any"), (512, "any"), (512, "maskable")} <= sizes


def test_the_service_worker_covers_every_patient_page_and_pages_link_the_app(app: Any) -> None:
    client = app.test_client()
    worker = client.get("/my/sw.js")
    assert worker.status_code == 200 and worker.mimetype == "text/javascript"
    assert worker.headers["Service-Worker-Allowed"] == "/my/"
    assert "no-cache" in worker.headers["Cache-Control"]
    task = give_homework(app, "phq-9")
    page = sign_in(client, app, task)
    for html in (page, text(client.get("/my/")), text(client.get("/my/preferences"))):
        assert 'rel="manifest" href="/my/manifest.webmanifest"' in html
        assert 'src="/static/patient/pwa.js"' in html
        # no inline scripts (CSP); a JSON data block (type="application/json") is not a script
        assert not re.search(r'<script(?![^>]*\b(?:src=|type="application/json"))[^>]*>', html), \
            "no inline scripts (CSP)"
    assert 'name="_version" value=""' in page  # nothing saved yet


def test_the_drafts_key_lives_in_the_session_and_is_gone_after_sign_out(app: Any) -> None:
    client = app.test_client()
    assert client.get("/my/offline/key").status_code == 401
    task = give_homework(app, "phq-9")
    page = sign_in(client, app, task)
    first = client.get("/my/offline/key")
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    key = first.get_json()["key"]
    assert len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) == 32
    assert first.get_json()["csrf"] == csrf(page)
    assert client.get("/my/offline/key").get_json()["key"] == key  # the same all session long
    other = app.test_client()
    sign_in(other, app, task)
    assert other.get("/my/offline/key").get_json()["key"] != key  # another browser, another key
    out = client.post("/my/signout", data={"csrf_token": csrf(page)})
    assert 'data-signed-out="1"' in text(out)  # pwa.js deletes what was kept on the device
    assert client.get("/my/offline/key").status_code == 401
    sign_in(client, app, task)
    assert client.get("/my/offline/key").get_json()["key"] != key


def test_push_opt_in_over_http_then_a_reminder_arrives_by_push(app: Any, push: PushService) -> None:
    services = app.extensions["hw_fhir"]
    task = give_homework(app, "phq-9")
    client = app.test_client()
    sign_in(client, app, task)
    prefs_page = text(client.get("/my/preferences"))
    assert f'data-key="{application_server_key(services.settings)}"' in prefs_page
    assert 'id="push-on"' in prefs_page
    # no quiet hours, so that the reminder goes now whatever the time of day
    client.post("/my/preferences", data={"csrf_token": csrf(prefs_page), "channel": "email",
                                         "quiet_start": "00:00", "quiet_end": "00:00"})
    browser = push.subscribe()
    headers = {"X-CSRF-Token": csrf(prefs_page), "Accept": "application/json"}
    made = client.post("/my/push/subscription", json=browser.as_json(), headers=headers)
    assert made.status_code == 201, text(made)
    again = client.post("/my/push/subscription", json=browser.as_json(), headers=headers)
    assert again.status_code == 200
    assert [s.endpoint for s in subscriptions_for(services.store, "pat-ava")] == [browser.endpoint]
    patient = services.store.read("Patient", "pat-ava").resource
    assert '"valueCode": "webpush"' in json.dumps(patient)
    assert "Notifications are on for one device." in text(client.get("/my/preferences"))

    services.events.publish("task_created", store=services.store, task=task)
    opens = parse_instant(task["restriction"]["period"].get("start") or task["authoredOn"])
    run = run_reminders(services, worker="w", now=opens + timedelta(minutes=1))
    assert run.sent >= 1 and not push.rejected, push.rejected
    assert [r.payload["body"] for r in push.received] == ["You have an activity waiting"]
    assert push.received[0].payload["url"] == f"{BASE}/my/"
    assert "PHQ" not in str(push.received[0].payload) and "Ava" not in str(push.received[0].payload)
    comms = stored(app, "Communication")
    assert any(c.get("about") == [{"reference": f"Task/{task['id']}"}] and c["status"] == "completed"
               for c in comms)

    off = client.post("/my/push/off", data={"csrf_token": csrf(prefs_page)})
    assert off.status_code == 302 and subscriptions_for(services.store, "pat-ava") == []


def test_bad_push_subscriptions_are_refused_readably_and_nothing_changes(app: Any, push: PushService) -> None:
    services = app.extensions["hw_fhir"]
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    before = services.store.read("Patient", "pat-ava").resource["meta"]["versionId"]
    headers = {"X-CSRF-Token": csrf(page), "Accept": "application/json"}
    broken = push.subscribe().as_json()
    broken["keys"]["p256dh"] = "not-a-key"
    bad = client.post("/my/push/subscription", json=broken, headers=headers)
    assert bad.status_code == 400 and "p256dh" in text(bad) and "Traceback" not in text(bad)
    notjson = client.post("/my/push/subscription", data="nope", headers=headers)
    assert notjson.status_code == 400 and "JSON" in text(notjson)
    insecure = push.subscribe().as_json()
    insecure["endpoint"] = "http://push.example.org/x"
    assert client.post("/my/push/subscription", json=insecure, headers=headers).status_code == 400
    private = push.subscribe().as_json()
    private["endpoint"] = "https://10.1.2.3/push/x"  # a private address: the egress policy refuses
    refused = client.post("/my/push/subscription", json=private, headers=headers)
    assert refused.status_code == 400 and "HW_FHIR_EGRESS_ALLOW" in text(refused)
    nocsrf = client.post("/my/push/subscription", json=push.subscribe().as_json(),
                         headers={"Accept": "application/json"})
    assert nocsrf.status_code == 403
    stranger = app.test_client()
    assert stranger.post("/my/push/subscription", json=push.subscribe().as_json()).status_code in (401, 403)
    assert subscriptions_for(services.store, "pat-ava") == []
    assert services.store.read("Patient", "pat-ava").resource["meta"]["versionId"] == before


def _post(client: Any, task: dict[str, Any], page: str, action: str, version: str | None,
          **fields: str) -> Any:
    data = MultiDict([("csrf_token", csrf(page)), ("_action", action), *fields.items()])
    if version is not None:
        data.add("_version", version)
    return client.post(f"/my/tasks/{task['id']}", data=data)


def test_answers_changed_on_another_device_are_shown_not_overwritten(app: Any) -> None:
    task = give_homework(app, "body-scan")
    phone, laptop = app.test_client(), app.test_client()
    phone_page = sign_in(phone, app, task)  # opened before the laptop saved: version ""
    laptop_page = sign_in(laptop, app, task)
    saved = _post(laptop, task, laptop_page, "save", "", **{"q:done": "true", "q:minutes": "25"})
    assert saved.status_code == 302
    theirs = response_for_task(app.extensions["hw_fhir"].store, task["id"])

    clash = _post(phone, task, phone_page, "submit", "", **{"q:done": "true", "q:minutes": "5"})
    assert clash.status_code == 409
    shown = text(clash)
    assert 'data-conflict="1"' in shown and "changed on another device" in shown
    assert 'value="25"' in shown  # the other device's answers are what is shown
    assert f'name="_version" value="{theirs["meta"]["versionId"]}"' in shown
    now = response_for_task(app.extensions["hw_fhir"].store, task["id"])
    assert now["meta"]["versionId"] == theirs["meta"]["versionId"] and now["status"] == "in-progress"
    assert app.extensions["hw_fhir"].store.read("Task", task["id"]).resource["status"] != "completed"

    # sent again knowingly, at the version now shown: accepted once
    done = _post(phone, task, shown, "submit", theirs["meta"]["versionId"],
                 **{"q:done": "true", "q:minutes": "5"})
    assert done.status_code == 302 and done.headers["Location"].endswith("/done")
    final = response_for_task(app.extensions["hw_fhir"].store, task["id"])
    assert final["status"] == "completed" and "5" in str(final["item"])


def test_autosave_moves_the_pages_version_and_a_stale_autosave_is_refused(app: Any) -> None:
    task = give_homework(app, "body-scan")
    client = app.test_client()
    page = sign_in(client, app, task)
    headers = {"X-CSRF-Token": csrf(page), "Accept": "application/json"}
    url = f"/my/tasks/{task['id']}/draft"
    first = client.post(url, data={"q:done": "true", "q:minutes": "10", "_version": ""}, headers=headers)
    version = first.get_json()["version"]
    assert first.get_json()["ok"] and version
    second = client.post(url, data={"q:done": "true", "q:minutes": "12", "_version": version}, headers=headers)
    assert second.get_json()["ok"] and second.get_json()["version"] != version
    stale = client.post(url, data={"q:done": "true", "q:minutes": "99", "_version": version}, headers=headers)
    assert stale.status_code == 409
    assert "12" in str(response_for_task(app.extensions["hw_fhir"].store, task["id"])["item"])


def _pwa_words(html: str) -> dict[str, str]:
    """The words a page hands to pwa.js (its ``<script type="application/json">`` block)."""
    found = re.search(r'<script type="application/json" id="hw-pwa-text">(.*?)</script>', html, re.S)
    assert found, "no hw-pwa-text block on the page"
    words: dict[str, str] = json.loads(found.group(1))
    return words


def _english_in(script: str, name: str) -> dict[str, str]:
    """The English fallback words of a static script (its ``var NAME = {...};`` object)."""
    block = re.search(r"var " + name + r" = \{(.*?)\n\s*\};", (STATIC / script).read_text(), re.S)
    assert block, f"no {name} in {script}"
    return {k: json.loads(v) for k, v in re.findall(r'(\w+): ("(?:[^"\\]|\\.)*")', block.group(1))}


def _spanish(app: Any, patient: str) -> None:
    store = app.extensions["hw_fhir"].store
    store.update(with_language(store.read("Patient", patient).resource, "es"))


def test_every_patient_page_hands_pwa_js_its_words_in_the_patients_language(app: Any) -> None:
    """The offline notices, "waiting to be sent", the kept-answers panel and the push opt-in
    messages of pwa.js (and the service worker's offline page) come in the patient's language."""
    _spanish(app, "pat-carmen")
    carmen = app.test_client()
    task = give_homework(app, "phq-9", patient="pat-carmen")
    page = sign_in(carmen, app, task)
    spanish = _pwa_words(page)
    assert spanish["offlineKept"] == ("No tiene conexión. Sus respuestas se guardan en este "
                                      "dispositivo y se enviarán cuando vuelva a tener conexión.")
    assert spanish["outboxWaiting"].startswith("Pendiente de enviar cuando vuelva a tener conexión")
    assert spanish["useKept"] == "Usar mis respuestas de este dispositivo"
    assert spanish["pushBlocked"].startswith("Las notificaciones de este sitio están bloqueadas")
    assert spanish["offlineHeading"] == "No tiene conexión" and spanish["toDo"] == "Por hacer"
    assert spanish["pushBody"] == "Tiene una actividad pendiente"
    for path in ("/my/", "/my/progress", "/my/preferences", "/my/messages"):
        assert _pwa_words(text(carmen.get(path))) == spanish, path

    ava = app.test_client()
    english = _pwa_words(sign_in(ava, app, give_homework(app, "phq-9")))
    # pwa.js and sw.js fall back to the very same English words, key for key
    assert english == _english_in("pwa.js", "TEXT")
    worker = _english_in("sw.js", "ENGLISH")
    assert worker.pop("lang") == "en" and worker == {k: english[k] for k in worker}
    assert set(spanish) == set(english) and not set(spanish.values()) & set(english.values())


def test_a_spanish_patient_turns_push_on_and_is_reminded_in_spanish(app: Any, push: PushService) -> None:
    services = app.extensions["hw_fhir"]
    _spanish(app, "pat-carmen")
    task = give_homework(app, "phq-9", patient="pat-carmen")
    client = app.test_client()
    sign_in(client, app, task)
    prefs_page = text(client.get("/my/preferences"))
    client.post("/my/preferences", data={"csrf_token": csrf(prefs_page), "channel": "email",
                                         "quiet_start": "00:00", "quiet_end": "00:00"})
    headers = {"X-CSRF-Token": csrf(prefs_page), "Accept": "application/json"}
    made = client.post("/my/push/subscription", json=push.subscribe().as_json(), headers=headers)
    assert made.status_code == 201, text(made)
    assert made.get_json()["message"] == "Las notificaciones están activadas en este dispositivo."

    services.events.publish("task_created", store=services.store, task=task)
    opens = parse_instant(task["restriction"]["period"].get("start") or task["authoredOn"])
    run = run_reminders(services, worker="w", now=opens + timedelta(minutes=1))
    assert run.sent >= 1 and not push.rejected, push.rejected
    assert [r.payload["body"] for r in push.received] == ["Tiene una actividad pendiente"]
    # the default practice name is words, so hers too ("your care team" was left in English)
    assert [r.payload["title"] for r in push.received] == ["Su equipo de atención"]
    # what the Communication records is what the push said
    sent = [c for c in stored(app, "Communication") if c.get("about") == [{"reference": f"Task/{task['id']}"}]]
    assert any("Tiene una actividad pendiente" in str(c.get("payload")) for c in sent)


def test_the_app_a_spanish_patient_installs_is_named_in_spanish(app: Any) -> None:
    """Her pages link the Spanish manifest: the language is in its path (browsers fetch a
    manifest without cookies), nothing else about her, and it is the same for everyone."""
    _spanish(app, "pat-carmen")
    carmen = app.test_client()
    page = sign_in(carmen, app, give_homework(app, "phq-9", patient="pat-carmen"))
    for html in (page, text(carmen.get("/my/")), text(carmen.get("/my/progress"))):
        assert 'rel="manifest" href="/my/manifest.es.webmanifest"' in html
    anyone = app.test_client()  # no session: what a browser's manifest fetch is
    got = anyone.get("/my/manifest.es.webmanifest")
    assert got.status_code == 200 and got.mimetype == "application/manifest+json"
    spanish = got.get_json()
    assert spanish["name"] == "Práctica en casa" and spanish["short_name"] == "Práctica"
    assert spanish["description"] == "Sus actividades entre sesiones, recordatorios y progreso."
    assert spanish["lang"] == "es"
    english = anyone.get("/my/manifest.webmanifest").get_json()
    assert english["name"] == "Home practice" and english["lang"] == "en"
    # one app whatever its language: the same id, start, scope and icons
    assert {k: v for k, v in spanish.items() if k not in ("name", "short_name", "description", "lang")} \
        == {k: v for k, v in english.items() if k not in ("name", "short_name", "description", "lang")}
    # cacheable: the same for everyone, and revalidated cheaply; no cookie set
    assert "public" in got.headers["Cache-Control"] and "max-age" in got.headers["Cache-Control"]
    assert "Set-Cookie" not in got.headers and "Cookie" not in got.headers.get("Vary", "")
    again = anyone.get("/my/manifest.es.webmanifest", headers={"If-None-Match": got.headers["ETag"]})
    assert again.status_code == 304
    assert anyone.get("/my/manifest.xx.webmanifest").status_code == 404

    ava = app.test_client()
    assert 'rel="manifest" href="/my/manifest.webmanifest"' in sign_in(ava, app, give_homework(app, "phq-9"))


def test_the_service_worker_is_registered_with_the_patients_language_and_knows_its_words(app: Any) -> None:
    """The first offline page is in her language even before any page handed the worker its
    words: her pages register /my/sw.js?lang=es, which starts with the Spanish words."""
    _spanish(app, "pat-carmen")
    carmen = app.test_client()
    page = sign_in(carmen, app, give_homework(app, "phq-9", patient="pat-carmen"))
    assert 'name="hw-sw" content="/my/sw.js?lang=es"' in page
    worker = carmen.get("/my/sw.js?lang=es")
    assert worker.status_code == 200 and worker.mimetype == "text/javascript"
    assert worker.headers["Service-Worker-Allowed"] == "/my/" and "no-cache" in worker.headers["Cache-Control"]
    script = text(worker)
    assert script.startswith('"use strict";\n')  # still the whole script's directive
    built_in = json.loads(re.match(r'"use strict";\nvar HW_WORDS = (\{.*?\});\n', script).group(1))
    spanish = _pwa_words(page)
    assert built_in == {"lang": "es", **{k: spanish[k] for k in built_in if k != "lang"}}
    assert built_in["offlineHeading"] == "No tiene conexión" and built_in["pushBody"] == spanish["pushBody"]
    assert set(built_in) - {"lang"} == set(_english_in("sw.js", "ENGLISH")) - {"lang"}
    assert (STATIC / "sw.js").read_text() in script
    revalidated = carmen.get("/my/sw.js?lang=es", headers={"If-None-Match": worker.headers["ETag"]})
    assert revalidated.status_code == 304
    english = text(app.test_client().get("/my/sw.js?lang=xx"))  # unknown: English
    assert '"offlineHeading": "You are offline"' in english


def test_a_spanish_patient_whose_push_sign_up_fails_reads_why_in_spanish(app: Any, push: PushService) -> None:
    """What pwa.js shows when the server refuses: the answer's message, in her language and
    her words (the developer's diagnostics stay in the issues, in English)."""
    _spanish(app, "pat-carmen")
    services = app.extensions["hw_fhir"]
    client = app.test_client()
    page = sign_in(client, app, give_homework(app, "phq-9", patient="pat-carmen"))
    headers = {"X-CSRF-Token": csrf(page), "Accept": "application/json"}
    insecure = push.subscribe().as_json()
    insecure["endpoint"] = "http://push.example.org/x"
    refused = client.post("/my/push/subscription", json=insecure, headers=headers)
    assert refused.status_code == 400
    assert refused.get_json()["message"] == ("Las notificaciones de este navegador no se pueden usar "
                                             "aquí. Puede elegir correo electrónico o mensajes de "
                                             "texto más arriba.")
    assert "https://" in refused.get_json()["issue"][0]["diagnostics"]  # for a developer
    notjson = client.post("/my/push/subscription", data="nope", headers=headers)
    assert notjson.status_code == 400 and notjson.get_json()["message"] == refused.get_json()["message"]
    expired = client.post("/my/push/subscription", json=push.subscribe().as_json(),
                          headers={"Accept": "application/json", "X-CSRF-Token": "stale"})
    assert expired.status_code == 403
    assert expired.get_json()["message"] == "Esta página ha caducado. Vuelva a cargarla e inténtelo de nuevo."
    # without JavaScript (turning notifications off is a form): a page of hers, in Spanish
    off = client.post("/my/push/off", data={"csrf_token": "stale"})
    assert off.status_code == 403
    assert 'lang="es"' in text(off) and "Esta página ha caducado" in text(off)
    assert "expired" not in text(off) and "Something is not right" not in text(off)
    assert subscriptions_for(services.store, "pat-carmen") == []
