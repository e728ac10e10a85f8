"""The clinician sees which crisis resources the patient was shown with a risk: those of the
patient's country (real SQLite, the app's response page)."""

from __future__ import annotations

import re
from typing import Any

from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)
from clinician_support import Session, assign_once, complete_phq9


def _risk(store: Any) -> str:
    response = complete_phq9(store, assign_once(store), [1, 1, 1, 1, 1, 1, 1, 1, 2])
    return str(response["id"])



def _names(page: str, number: str) -> bool:
    """Whether the page names this phone number as a number of its own (not digits of an id)."""
    return re.search(rf"(?<![\w-]){number}(?![\w-])", page) is not None

def test_the_response_page_says_what_the_patient_was_shown(store: Any, ava: Session) -> None:
    patient = store.read("Patient", "pat-ava").resource
    store.update(dict(patient, address=[{"use": "home", "country": "Germany"}]))
    rid = _risk(store)
    page = ava.get(f"/clinician/patients/pat-ava/responses/{rid}").text
    shown = page[page.index('id="crisis-shown"'):]
    shown = shown[: shown.index("</p>")]
    assert "crisis resources for Germany" in shown
    assert "TelefonSeelsorge 0800 111 0 111" in shown and "112" in shown and not _names(shown, "988")


def test_without_a_country_the_clinician_is_told_to_add_one(store: Any, ava: Session) -> None:
    patient = store.read("Patient", "pat-ava").resource
    store.update({k: v for k, v in patient.items() if k != "address"})
    rid = _risk(store)
    page = ava.get(f"/clinician/patients/pat-ava/responses/{rid}").text
    shown = page[page.index('id="crisis-shown"'):]
    shown = shown[: shown.index("</p>")]
    assert "988" in shown and "Add the patient's country" in shown


def test_the_preview_of_an_activity_shows_the_patients_crisis_note(store: Any,
                                                                  ava: Session) -> None:
    patient = store.read("Patient", "pat-ava").resource
    store.update(dict(patient, address=[{"use": "home", "country": "GB"}]))
    frame = ava.get("/clinician/library/coping-card/preview/frame", patient="pat-ava").text
    assert "Samaritans free on 116 123" in frame and not _names(frame, "988")
    generic = ava.get("/clinician/library/coping-card/preview/frame").text
    assert "988" in generic  # no patient: the activity as written
