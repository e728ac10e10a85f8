"""Languages on the clinician side: the confirmation after assigning shows the reminder text and
the activity as the patient will get them, in the patient's language; and a clinician adds or
edits an activity's Spanish text in the editor (a "Spanish text" field per item and option, stored
as FHIR translation extensions on the draft, the translation status saying the practice did it)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from clinician_support import Session, clinician_app, open_launch

from hw_fhir.i18n import with_language
from hw_fhir.translation import (
    apply_translation_form,
    missing_translations,
    translation_of,
    translation_rows,
    translation_status,
)


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = clinician_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


@pytest.fixture
def ava(app: Any) -> Session:
    return open_launch(app, app.test_client())


def _fields(page: str, form_id: str = "editor-form") -> dict[str, str]:
    """A form's text fields, hidden fields and selected values, as the browser sends them."""
    block = re.search(rf'<form[^>]*id="{form_id}".*?</form>', page, re.S)
    assert block, "no editor form"
    values: dict[str, str] = {}
    for tag in re.finditer(r"<input([^>]*)>", block.group(0)):
        attrs = dict(re.findall(r'(\w[\w.:#-]*)="([^"]*)"', tag.group(1)))
        if "name" in attrs and attrs.get("type") != "checkbox":
            values[attrs["name"]] = html.unescape(attrs.get("value", ""))
        elif "name" in attrs and " checked" in tag.group(1):
            values[attrs["name"]] = attrs.get("value", "on")
    for tag in re.finditer(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', block.group(0), re.S):
        values[tag.group(1)] = html.unescape(tag.group(2))
    for tag in re.finditer(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', block.group(0), re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', tag.group(2))
        values[tag.group(1)] = chosen.group(1) if chosen else ""
    return values


def _clone(ava: Session, source: str) -> str:
    response = ava.post("/clinician/library/clone", {"source": source, "title": f"My {source}"})
    assert response.status_code == 303, response.text
    return response.headers["Location"].split("/library/")[1].split("/edit")[0]


def test_the_editor_form_applies_translations_and_says_who_translated() -> None:
    q = {
        "resourceType": "Questionnaire", "title": "Check", "item": [
            {"linkId": "a", "type": "choice", "text": "How?", "answerOption": [
                {"valueCoding": {"system": "urn:x", "code": "ok", "display": "Fine"}},
                {"valueString": "Other"}]}]}
    rows = translation_rows(q, "es")
    assert [r.field for r in rows] == ["tr.title", "tr.text.a", "tr.option.a.ok", "tr.option.a.#1"]
    partly = apply_translation_form(q, {"tr.text.a": ["¿Cómo?"]}, "es")
    assert translation_of(partly["item"][0], "text", "es") == "¿Cómo?"
    assert translation_status(partly, "es").status == "incomplete"  # type: ignore[union-attr]
    full = apply_translation_form(partly, {"tr.title": "Revisión", "tr.option.a.ok": "Bien",
                                           "tr.option.a.#1": "Otra"}, "es")
    assert missing_translations(full, "es") == []
    assert translation_status(full, "es").status == "local"  # type: ignore[union-attr]
    assert len([e for e in full["extension"] if "translation-status" in e["url"]]) == 1
    assert full["item"][0]["answerOption"][1]["valueString"] == "Other"  # the answer is kept
    unchanged = apply_translation_form(full, {"tr.title": "Revisión"}, "es")
    assert unchanged == full
    removed = apply_translation_form(full, {"tr.title": ""}, "es")
    assert "_title" not in removed and missing_translations(removed, "es") == ["title"]


def test_a_clinician_edits_the_spanish_text_of_an_activity(app: Any, ava: Session) -> None:
    store = app.extensions["hw_fhir"].store
    qid = _clone(ava, "phq-9")
    page = ava.get(f"/clinician/library/{qid}/edit").text
    assert 'id="translations"' in page and "Spanish text" in page
    assert 'value="Poco interés o placer en hacer cosas"' in page  # the published text is there
    form = _fields(page)
    assert form["tr.text.phq9-1"] == "Poco interés o placer en hacer cosas"
    form["tr.text.phq9-1"] = "Poco interés o gusto por hacer las cosas"
    saved = ava.post(f"/clinician/library/{qid}/edit", {**form, "action": "save"})
    assert saved.status_code == 303, saved.text
    draft = store.read("Questionnaire", qid).resource
    item = next(i for i in draft["item"] if i["linkId"] == "phq9-1")
    assert translation_of(item, "text", "es") == "Poco interés o gusto por hacer las cosas"
    assert item["text"] == "Little interest or pleasure in doing things"
    status = translation_status(draft, "es")
    assert status is not None and status.status == "local"  # no longer the published text
    catalog = store.read("Questionnaire", "phq-9").resource
    assert translation_status(catalog, "es").status == "published"  # type: ignore[union-attr]


def test_the_confirmation_shows_the_reminder_and_activity_in_the_patients_language(
    app: Any, ava: Session
) -> None:
    store = app.extensions["hw_fhir"].store
    store.update(with_language(store.read("Patient", "pat-ava").resource, "es"))
    form = _fields(ava.get("/clinician/patients/pat-ava/assign/gad-7").text, "assign-form")
    response = ava.post("/clinician/patients/pat-ava/assign/gad-7", form)
    assert response.status_code == 303, response.text
    page = ava.client.get(response.headers["Location"]).text
    assert '<html lang="en"' in page  # the clinician's page stays English
    plan = page[page.index('id="reminder-plan"') : page.index("</section>", page.index('id="reminder-plan"'))]
    assert '<span class="muted" lang="es">“Recordatorio de ' in plan
    assert "(Spanish, the patient&#39;s language)" in plan or "(Spanish, the patient's language)" in plan
    assert "GAD" not in plan and "ansiedad" not in plan  # no clinical content in the message
    frame = re.search(r'id="patient-view"\s+src="([^"]+)"', page)
    assert frame, "no patient view"
    view = ava.client.get(html.unescape(frame.group(1))).text
    assert '<html lang="es">' in view
    assert "Escala del trastorno de ansiedad generalizada de 7 preguntas (GAD-7)" in view
    assert "No ha sido capaz de parar o controlar su preocupación" in view
    assert "Terminé: enviarlo" in view
    assert '<p class="muted small" role="note" lang="en">Preview' in view


def test_the_library_preview_says_whether_the_patients_language_is_there(
    app: Any, ava: Session
) -> None:
    store = app.extensions["hw_fhir"].store
    english = ava.get("/clinician/library/phq-9/preview", patient="pat-ava").text
    assert 'id="translation-status"' not in english
    store.update(with_language(store.read("Patient", "pat-ava").resource, "es"))
    published = ava.get("/clinician/library/phq-9/preview", patient="pat-ava").text
    assert "In Spanish, the patient&#39;s language:" in published or "In Spanish, the patient's" in published
    assert "the published translation (Published Spanish (USA) PHQ-9, Pfizer" in published
    missing = ava.get("/clinician/library/pcl-5/preview", patient="pat-ava").text
    assert "not translated yet" in missing  # the PCL-5 waits for a published Spanish version
    frame = re.search(r'<iframe class="phone"[^>]*src="([^"]+)"', published)
    assert frame and "patient=pat-ava" in html.unescape(frame.group(1))
