"""Languages: the patient's language from Patient.communication, Spanish patient pages, reminder
texts and crisis resources, Questionnaire translations (FHIR translation extension) with a
fallback, and a Spanish PHQ-9 scored and flagged exactly like the English one."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from patient_support import csrf, give_homework, patient_app, sign_in, snapshot, stored
from reminder_support import (
    RecordingChannel,
    announce,
    channel_plugin,
    make_patient,
    make_services,
    make_task,
)
from werkzeug.datastructures import MultiDict

from hw_fhir.catalog import __file__ as catalog_init
from hw_fhir.config import Settings
from hw_fhir.i18n import patient_language, with_language
from hw_fhir.outcomes import crisis_resources
from hw_fhir.reminders import run_reminders
from hw_fhir.translation import (
    localize,
    missing_translations,
    set_translation,
    translation_of,
)
from smart_app.patient.todo import due_text

UTC = timezone.utc


def _spanish(patient: dict[str, Any]) -> dict[str, Any]:
    return with_language(patient, "es")


# -- the patient's language -----------------------------------------------------------------------


def _comm(code: str, preferred: bool | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": code}]}}
    if preferred is not None:
        entry["preferred"] = preferred
    return entry


def test_the_language_is_the_preferred_communication_first() -> None:
    assert patient_language({}) == "en"
    assert patient_language({"communication": [_comm("es-MX")]}) == "es"
    assert patient_language({"communication": [_comm("en"), _comm("es", True)]}) == "es"
    assert patient_language({"communication": [_comm("vi", True), _comm("es")]}) == "es"
    assert patient_language({"communication": [_comm("vi", True)]}) == "en"


def test_choosing_a_language_updates_communication_and_keeps_the_others() -> None:
    patient = {"resourceType": "Patient", "communication": [_comm("en", True), _comm("vi")]}
    chosen = with_language(patient, "es")
    assert chosen["communication"][0] == {**_comm("es", True), "language": {"coding": [
        {"system": "urn:ietf:bcp:47", "code": "es", "display": "Español"}]}}
    assert chosen["communication"][1:] == [_comm("en"), _comm("vi")]
    assert patient_language(chosen) == "es"
    back = with_language(chosen, "en")
    assert back["communication"][0] == _comm("en", True) and patient_language(back) == "en"
    assert len(back["communication"]) == 3
    with pytest.raises(ValueError):
        with_language(patient, "xx")


def test_due_times_follow_the_locale() -> None:
    now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday
    assert due_text(now + timedelta(hours=3), now, UTC, "en").replace("\u202f", " ") == (
        "Today, 6:00 PM"
    )
    assert due_text(now + timedelta(hours=3), now, UTC, "es") == "Hoy, 18:00"
    assert due_text(now + timedelta(days=1), now, UTC, "es") == "Mañana, 15:00"
    assert due_text(now + timedelta(days=3), now, UTC, "es") == "jueves, 15:00"
    assert due_text(now + timedelta(days=10), now, UTC, "es") == "jue 12 mar, 15:00"
    assert due_text(None, now, UTC, "es") == "Cuando quiera"


# -- reminders and crisis resources ---------------------------------------------------------------


def test_a_spanish_speaking_patient_gets_spanish_reminders_without_phi(tmp_path: Any) -> None:
    rec = RecordingChannel("rec")
    services = make_services(tmp_path, channel_plugin(rec))
    try:
        now = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)
        for pid, spanish in (("p-es", True), ("p-en", False)):
            patient = make_patient(services.store, pid, tz="America/New_York")
            if spanish:
                services.store.update(_spanish(patient))
            task = make_task(services.store, pid, due=now + timedelta(days=1),
                             opens=now - timedelta(minutes=5), channel="rec")
            announce(services, task)
        run_reminders(services, worker="w", now=now)
        sent = {m.recipient: m for m in rec.sent}
        es, en = sent["Patient/p-es"], sent["Patient/p-en"]
        assert es.text.startswith("Hola, ") and "ha compartido una actividad con usted" in es.text
        assert es.subject.startswith("Una nueva actividad de ")
        assert en.text.startswith("Hello, ") and en.subject.startswith("A new activity from ")
        assert (es.headers["Content-Language"], en.headers["Content-Language"]) == ("es", "en")
        plans = {r["subject"]["reference"]: r for r in
                 services.store.search("CommunicationRequest", [("_count", "10")]).resources}
        assert plans["Patient/p-es"]["payload"][0]["contentString"].startswith("Hola, ")
        assert plans["Patient/p-en"]["payload"][0]["contentString"].startswith("Hello, ")
        for message in (es, en):
            assert "https://hw.example.org/p/" in message.text
            lowered = (message.subject + " " + message.text).lower()
            for phi in ("sam", "sample", "mood", "ánimo", "1990", "p-es", "p-en"):
                assert phi not in lowered.replace("https://hw.example.org/p/", ""), phi
    finally:
        services.close()


def test_crisis_resources_in_spanish_keep_the_numbers() -> None:
    spanish = crisis_resources(Settings(), language="es")
    names = [c.name for c in spanish.contacts]
    assert names[0] == "988 Línea de Prevención del Suicidio y Crisis"
    assert spanish.contacts[0].links == (("Llamar al 988", "tel:988"),
                                         ("Enviar texto al 988", "sms:988"))
    assert "988" in spanish.text and spanish.text.startswith("Si está en crisis")
    english = crisis_resources(Settings())
    assert english.contacts[0].name == "988 Suicide & Crisis Lifeline"
    assert english.contacts[0].links[0] == ("Call 988", "tel:988")
    own = Settings(crisis_text="Call the clinic on 555 0100.")
    assert crisis_resources(own, language="es").text == "Call the clinic on 555 0100."


# -- Questionnaire translations -------------------------------------------------------------------


def _questionnaire() -> dict[str, Any]:
    q: dict[str, Any] = {
        "resourceType": "Questionnaire", "status": "active", "title": "Evening check",
        "item": [
            {"linkId": "feel", "type": "choice", "text": "How do you feel?", "answerOption": [
                {"valueCoding": {"system": "urn:x", "code": "ok", "display": "Fine"}},
                {"valueCoding": {"system": "urn:x", "code": "low", "display": "Low"}}]},
            {"linkId": "where", "type": "choice", "text": "Where were you?", "answerOption": [
                {"valueString": "At home"}, {"valueString": "Out"}]},
            {"linkId": "note", "type": "string", "text": "Anything else?"},
        ],
    }
    set_translation(q, "title", "es", "Revisión de la tarde")
    feel, where, _ = q["item"]
    set_translation(feel, "text", "es", "¿Cómo se siente?")
    set_translation(feel["answerOption"][0]["valueCoding"], "display", "es", "Bien")
    set_translation(feel["answerOption"][1]["valueCoding"], "display", "es", "Decaído")
    set_translation(where, "text", "es", "¿Dónde estaba?")
    set_translation(where["answerOption"][0], "valueString", "es", "En casa")
    set_translation(where["answerOption"][1], "valueString", "es", "Fuera")
    return q


def test_translations_use_the_fhir_translation_extension() -> None:
    q = _questionnaire()
    ext = q["_title"]["extension"][0]
    assert ext == {"url": "http://hl7.org/fhir/StructureDefinition/translation", "extension": [
        {"url": "lang", "valueCode": "es"}, {"url": "content", "valueString": "Revisión de la tarde"}]}
    assert translation_of(q, "title", "es") == "Revisión de la tarde"
    assert translation_of(q, "title", "fr") is None
    assert missing_translations(q, "es") == ["note"]
    set_translation(q, "title", "es", "")
    assert "_title" not in q and missing_translations(q, "es") == ["title", "note"]


def test_localize_keeps_codes_and_says_what_fell_back() -> None:
    q = _questionnaire()
    shown = localize(q, "es")
    feel, where, note = shown.questionnaire["item"]
    assert shown.questionnaire["title"] == "Revisión de la tarde"
    assert feel["answerOption"][1]["valueCoding"] == {
        "system": "urn:x", "code": "low", "display": "Decaído",
        "_display": q["item"][0]["answerOption"][1]["valueCoding"]["_display"]}
    assert [o["valueString"] for o in where["answerOption"]] == ["En casa", "Fuera"]
    assert note["text"] == "Anything else?" and shown.fallback == {"note"}
    assert not shown.complete and not shown.untranslated
    draft = {"item": [{"linkId": "where", "answer": [{"valueString": "Out"}]}]}
    assert shown.shown_response(draft)["item"][0]["answer"] == [{"valueString": "Fuera"}]
    assert draft["item"][0]["answer"] == [{"valueString": "Out"}]  # the stored one is untouched
    assert q["item"][0]["answerOption"][1]["valueCoding"]["display"] == "Low"  # a copy
    english = localize(q, "en")
    assert english.complete and english.questionnaire["title"] == "Evening check"


# -- the catalog ----------------------------------------------------------------------------------


def _catalog() -> list[dict[str, Any]]:
    from pathlib import Path

    folder = Path(catalog_init).parent / "questionnaires"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


# -- patient pages in Spanish over the test client ------------------------------------------------


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = patient_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


UNTRANSLATED = "http://example.org/fhir/Questionnaire/english-only|1.0.0"


def english_only(app: Any) -> str:
    """Store an activity with no translation at all; return its canonical."""
    app.extensions["hw_fhir"].store.update({
        "resourceType": "Questionnaire", "id": "english-only", "status": "active",
        "url": UNTRANSLATED.split("|")[0], "version": "1.0.0", "title": "Evening walk",
        "item": [
            {"linkId": "walked", "type": "boolean", "text": "Did you go for a walk?",
             "required": True},
            {"linkId": "minutes", "type": "integer", "text": "How many minutes?"},
        ],
    })
    return UNTRANSLATED


def _make_spanish(app: Any, pid: str = "pat-ava") -> None:
    store = app.extensions["hw_fhir"].store
    store.update(_spanish(store.read("Patient", pid).resource))


def _submit(client: Any, task: dict[str, Any], page: str, fields: dict[str, str]) -> Any:
    data = MultiDict([("csrf_token", csrf(page)), ("_action", "submit"), *fields.items()])
    return client.post(f"/my/tasks/{task['id']}", data=data)


def test_the_spanish_phq9_shows_the_published_text_and_scores_like_the_english(app: Any) -> None:
    _make_spanish(app, "pat-carmen")
    results = {}
    for patient in ("pat-ava", "pat-carmen"):
        task = give_homework(app, "phq-9", patient=patient)
        client = app.test_client()
        page = sign_in(client, app, task)
        if patient == "pat-carmen":
            assert '<html lang="es">' in page
            assert "Pensamientos de que estaría mejor muerto(a) o de lastimarse de alguna manera" in page
            assert "Más de la mitad de los días" in page and "Terminé: enviarlo" in page
            assert "translation-note" not in page and 'lang="en"' not in page
        else:
            assert '<html lang="en">' in page and "Thoughts that you would be better off dead" in page
        answers = {f"q:phq9-{n}": "2" for n in range(1, 11)}
        answers["q:phq9-9"] = "1"
        done = _submit(client, task, page, answers)
        assert done.status_code == 302, done.get_data(as_text=True)
        confirmation = client.get(done.headers["Location"]).get_data(as_text=True)
        results[patient] = (task, confirmation)
    responses = {r["subject"]["reference"]: r for r in stored(app, "QuestionnaireResponse")}
    es, en = responses["Patient/pat-carmen"], responses["Patient/pat-ava"]
    assert json.dumps(es["item"], sort_keys=True) == json.dumps(en["item"], sort_keys=True)
    totals = {}
    for obs in stored(app, "Observation"):
        if obs["code"]["coding"][0]["code"] == "44261-6":
            totals[obs["subject"]["reference"]] = obs["valueQuantity"]["value"]
    assert totals == {"Patient/pat-ava": 17, "Patient/pat-carmen": 17}
    flagged = {f["subject"]["reference"] for f in stored(app, "Flag")}
    assert flagged == {"Patient/pat-ava", "Patient/pat-carmen"}
    spanish_confirmation = results["pat-carmen"][1]
    assert 'id="crisis"' in spanish_confirmation
    assert "988 Línea de Prevención del Suicidio y Crisis" in spanish_confirmation
    assert "Llamar al 988" in spanish_confirmation and 'href="tel:988"' in spanish_confirmation
    assert "Hay ayuda disponible ahora mismo" in spanish_confirmation
    assert "988 Suicide &amp; Crisis Lifeline" in results["pat-ava"][1]


def test_an_untranslated_activity_falls_back_to_english_with_a_note(app: Any) -> None:
    _make_spanish(app)
    task = give_homework(app, english_only(app))
    client = app.test_client()
    page = sign_in(client, app, task)
    assert '<html lang="es">' in page
    assert "Esta actividad aún no está disponible en español" in page
    assert re.search(r'<h1 lang="en">', page)
    assert re.search(r'data-link-id="[^"]+"[^>]*lang="en"', page)
    assert "Guardar y terminar después" in page


def test_the_todo_list_and_progress_speak_spanish(app: Any) -> None:
    _make_spanish(app)
    give_homework(app, "gad-7", days=0)
    task = give_homework(app, "phq-9", days=1)
    client = app.test_client()
    sign_in(client, app, task)
    todo = client.get("/my/").get_data(as_text=True)
    assert '<html lang="es">' in todo
    assert "Escala del trastorno de ansiedad generalizada de 7 preguntas (GAD-7)" in todo
    assert "Para: Mañana" in todo and ">Por hacer<" in todo and "<h1>Sus tareas</h1>" in todo
    assert re.search(r"2 cosas por hacer", todo)
    store = app.extensions["hw_fhir"].store
    patient = store.read("Patient", "pat-ava").resource
    store.update({**patient, "extension": [*patient.get("extension", []), {
        "url": "http://hw-fhir.org/fhir/StructureDefinition/share-scores-with-patient",
        "valueBoolean": True}]})
    page = client.get(f"/my/tasks/{task['id']}").get_data(as_text=True)
    answers = {f"q:phq9-{n}": "1" for n in range(1, 11)}
    assert _submit(client, task, page, answers).status_code == 302
    progress = client.get("/my/progress").get_data(as_text=True)
    assert "Su progreso" in progress and "Para su próxima sesión" in progress
    assert "PHQ-9 (estado de ánimo)" in progress and "Puntuaciones de PHQ-9" in progress
    months = "ene|feb|mar|abr|may|jun|jul|ago|sept?|oct|nov|dic"
    assert re.search(rf"<td>\d{{1,2}} ({months}) \d{{4}}</td><td>9</td>", progress), progress
    assert re.search(rf"· [a-zé]{{3}} \d{{1,2}} ({months})</span>", progress)  # done lately


def test_the_language_is_changed_on_the_preferences_page(app: Any) -> None:
    task = give_homework(app, "phq-9")
    client = app.test_client()
    sign_in(client, app, task)
    page = client.get("/my/preferences").get_data(as_text=True)
    assert '<html lang="en">' in page and 'name="language" value="es"' in page
    assert 'lang="es"' in page  # the choice "Español" is marked as Spanish
    before = snapshot(app)
    bad = client.post("/my/preferences", data={"csrf_token": csrf(page), "language": "xx"})
    assert bad.status_code == 422 and "Choose a language from the list" in bad.get_data(as_text=True)
    assert snapshot(app) == before
    saved = client.post("/my/preferences", data={"csrf_token": csrf(page), "language": "es",
                                                  "channel": "email",  # preselected: in use
                                                  "timezone": "America/New_York"})
    assert saved.status_code == 302
    patient = app.extensions["hw_fhir"].store.read("Patient", "pat-ava").resource
    assert patient["communication"][0]["preferred"] is True
    assert patient["communication"][0]["language"]["coding"][0]["code"] == "es"
    shown = client.get("/my/preferences?saved=1").get_data(as_text=True)
    assert '<html lang="es">' in shown and "Guardado." in shown and "Idioma" in shown
    assert {"url": "http://hl7.org/fhir/StructureDefinition/timezone",
            "valueCode": "America/New_York"} in patient["extension"]


def test_the_catalog_has_spanish_for_every_text_or_says_it_is_incomplete() -> None:
    from hw_fhir.translation import STATUSES, translation_status

    published = set()
    for q in _catalog():
        status = translation_status(q, "es")
        assert status is not None and status.status in STATUSES, q["id"]
        missing = missing_translations(q, "es")
        if status.status == "incomplete":
            continue
        assert not missing, f"{q['id']} is marked {status.status} but lacks es for {missing}"
        assert status.source, q["id"]
        if status.status == "published":
            published.add(q["id"])
    assert {"phq-9", "phq-2", "gad-7"} <= published


def test_form_messages_and_hints_speak_the_patients_language(app: Any) -> None:
    _make_spanish(app)
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    before = snapshot(app)
    refused = _submit(client, task, page, {"q:phq9-1": "1"})
    assert refused.status_code == 422
    shown = refused.get_data(as_text=True)
    assert "Revise estas respuestas" in shown and "Responda esta pregunta, por favor." in shown
    assert "Please answer" not in shown
    assert snapshot(app) == before
    body_scan = give_homework(app, "body-scan")
    page = client.get(f"/my/tasks/{body_scan['id']}").get_data(as_text=True)
    assert "Responda solo si su respuesta a " in page  # enableWhen hint, in Spanish


def test_before_sign_in_the_browser_language_is_used(app: Any) -> None:
    from patient_support import link_for

    task = give_homework(app, "phq-9")
    client = app.test_client()
    spanish = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}
    link = link_for(app, task, birth_date_check=True)
    page = client.get(link, headers=spanish).get_data(as_text=True)
    assert '<html lang="es">' in page and "Fecha de nacimiento" in page
    wrong = client.post(link, headers=spanish, data={
        "csrf_token": csrf(page), "dob_day": "1", "dob_month": "1", "dob_year": "1990"})
    assert wrong.status_code == 401
    assert "Esa fecha de nacimiento no coincide" in wrong.get_data(as_text=True)
    broken = client.get(link[:-3] + "xyz", headers=spanish)
    assert broken.status_code == 403
    assert "Este enlace no es válido" in broken.get_data(as_text=True)
    english = client.get(link, headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert '<html lang="en">' in english and "Date of birth" in english


@pytest.mark.parametrize("purpose, spanish", [
    ("before-due", "Recordatorio de su equipo de atención: tiene una actividad"),
    ("assigned", "Hola, su equipo de atención ha compartido una actividad con usted"),
    ("overdue", "Su equipo de atención: su actividad"),
    ("new-message", "Tiene un mensaje nuevo de su equipo de atención. Léalo aquí: "),
])
def test_reminders_and_message_notices_name_the_default_practice_in_spanish(
        purpose: str, spanish: str) -> None:
    """"Recordatorio de your care team" and an English new-message notice reached Spanish
    patients: the default practice name is words, and the notice is a patient text."""
    from hw_fhir.i18n import DEFAULT_PRACTICE_NAME
    from hw_fhir.reminders.texts import default_message

    assert Settings().practice_name == DEFAULT_PRACTICE_NAME

    def text(practice: str, language: str) -> tuple[str, str]:
        m = default_message(kind="reminder", purpose=purpose, channel="email",
                            to="p@example.org", recipient="Patient/p", practice=practice,
                            link="https://hw.example.org/p/x", idempotency_key="k",
                            language=language)
        return m.subject, m.text

    subject, body = text(DEFAULT_PRACTICE_NAME, "es")
    assert body.startswith(spanish), body
    assert "your care team" not in (subject + body).lower()
    english = " ".join(text(DEFAULT_PRACTICE_NAME, "en"))
    assert "your care team" in english.lower() and "equipo" not in english
    own = " ".join(text("Clínica Sol", "es"))  # a practice's own name is kept as it is
    assert "equipo de atención" not in own or purpose == "new-message"
    assert "Clínica Sol" in own or purpose == "new-message"
