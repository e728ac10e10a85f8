"""The SDC Task workflow over /fhir: a QuestionnaireResponse an outside form filler writes
through the API closes the Task it answers, in one transaction, as the patient pages do.

The app is served over real HTTP, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from hw_fhir.completion import RESPONSE_TASK_SYSTEM, save_draft

from conftest import serve
from outcomes_support import instrument_response
from patient_support import give_homework, patient_app, snapshot
from smart_support import Browser, secure_cookies_over_http, token_for

FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
PHQ9 = "http://hw-fhir.org/fhir/Questionnaire/phq-9"
SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"


@pytest.fixture
def app_config(tmp_path: Path, db_url: str) -> dict:
    """The test app on a fresh SQLite or PostgreSQL database, open API."""
    return {"TESTING": True, "instance_path": str(tmp_path / "instance"), "database_url": db_url,
            "open_api": True, "secret_key": "test-secret"}


@pytest.fixture
def app(app_config: dict) -> Iterator[Any]:
    """The app with the demo practice and the catalog."""
    application = patient_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


@pytest.fixture
def base(app: Any) -> Iterator[str]:
    """The app served over HTTP; its URL."""
    server = serve(app)
    yield server.url
    server.stop()


def call(base: str, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
    headers = dict(FHIR, **({"Authorization": f"Bearer {token}"} if token else {}),
                   **kwargs.pop("headers", {}))
    return requests.request(method, f"{base}/fhir/{path}", headers=headers, timeout=20, **kwargs)


def read(base: str, ref: str) -> dict[str, Any]:
    got = call(base, "GET", ref)
    assert got.status_code == 200, got.text
    return got.json()


def phq9(patient: str = "pat-ava", status: str = "completed", **extra: Any) -> dict[str, Any]:
    weights: list[int | None] = [1, 1, 0, 2, 0, 1, 0, 0, 0] if status == "completed" else [1, 1]
    return dict(instrument_response("phq-9", weights, patient=patient, status=status), **extra)


def output_of(task: dict[str, Any]) -> list[str]:
    return [o["valueReference"]["reference"] for o in task.get("output") or []
            if (SDC_TEMP, "questionnaire-response") in
            {(c.get("system"), c.get("code")) for c in o["type"]["coding"]}]


def test_completed_response_naming_its_task_completes_it(app: Any, base: str) -> None:
    task = give_homework(app, "phq-9")
    sent = phq9(basedOn=[{"reference": f"Task/{task['id']}"}])
    created = call(base, "POST", "QuestionnaireResponse", json=sent)
    assert created.status_code == 201, created.text
    response = created.json()
    assert response["identifier"] == {"system": RESPONSE_TASK_SYSTEM, "value": task["id"]}
    assert created.headers["Location"].split("/fhir/")[1].startswith(f"QuestionnaireResponse/{response['id']}/")

    done = read(base, f"Task/{task['id']}")
    assert done["status"] == "completed"
    assert output_of(done) == [f"QuestionnaireResponse/{response['id']}"]
    assert done["executionPeriod"]["start"] and done["executionPeriod"]["end"]
    assert done["businessStatus"]["coding"][0]["code"] == "on-time"
    # the response is scored as before (PHQ-9 total 5 from the weights above)
    scores = call(base, "GET", f"Observation?derived-from=QuestionnaireResponse/{response['id']}").json()
    totals = [e["resource"]["valueQuantity"]["value"] for e in scores.get("entry", [])
              if e["resource"]["code"]["coding"][0]["code"] == "44261-6"]
    assert totals == [5]


def test_draft_then_update_by_questionnaire_match(app: Any, base: str) -> None:
    later = give_homework(app, "phq-9", days=5)
    sooner = give_homework(app, "phq-9", days=2)
    give_homework(app, "phq-9", patient="pat-ben")
    draft = call(base, "POST", "QuestionnaireResponse", json=phq9(status="in-progress"))
    assert draft.status_code == 201, draft.text
    qr = draft.json()
    # no basedOn: the open Task of that patient asking for that questionnaire, due first
    assert qr["identifier"]["value"] == sooner["id"]
    working = read(base, f"Task/{sooner['id']}")
    assert working["status"] == "in-progress" and "end" not in working["executionPeriod"]
    assert "output" not in working
    assert read(base, f"Task/{later['id']}")["status"] == "requested"

    final = dict(phq9(), id=qr["id"], questionnaire=f"{PHQ9}|1.0.0")
    updated = call(base, "PUT", f"QuestionnaireResponse/{qr['id']}", json=final,
                   headers={"If-Match": draft.headers["ETag"]})
    assert updated.status_code == 200, updated.text
    done = read(base, f"Task/{sooner['id']}")
    assert done["status"] == "completed"
    assert output_of(done) == [f"QuestionnaireResponse/{qr['id']}"]
    assert done["executionPeriod"]["start"] == working["executionPeriod"]["start"]
    found = call(base, "GET", "QuestionnaireResponse?subject=Patient/pat-ava").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [qr["id"]]


def test_api_continues_a_draft_saved_on_the_patient_pages(app: Any, base: str) -> None:
    task = give_homework(app, "phq-9")
    store = app.extensions["hw_fhir"].store
    page_draft = save_draft(store, task["id"], {"item": phq9(status="in-progress")["item"]},
                            patient="Patient/pat-ava").response
    created = call(base, "POST", "QuestionnaireResponse", json=phq9())
    assert created.status_code == 200, created.text  # the Task's one response, updated
    assert created.json()["id"] == page_draft["id"]
    assert read(base, f"Task/{task['id']}")["status"] == "completed"


def test_refusals_write_nothing(app: Any, base: str) -> None:
    ava = give_homework(app, "phq-9")
    ben = give_homework(app, "phq-9", patient="pat-ben")
    before = snapshot(app)
    # a response about Ava naming Ben's Task
    other = call(base, "POST", "QuestionnaireResponse",
                 json=phq9(basedOn=[{"reference": f"Task/{ben['id']}"}]))
    assert other.status_code == 403, other.text
    assert other.json()["resourceType"] == "OperationOutcome"
    # a submitted response missing required answers
    incomplete = phq9(basedOn=[{"reference": f"Task/{ava['id']}"}])
    incomplete["item"] = incomplete["item"][:3]
    bad = call(base, "POST", "QuestionnaireResponse", json=incomplete)
    assert bad.status_code == 422, bad.text
    # another version of the questionnaire than the Task asks for
    wrong = phq9(basedOn=[{"reference": f"Task/{ava['id']}"}], questionnaire=f"{PHQ9}|9.9.9")
    assert call(base, "POST", "QuestionnaireResponse", json=wrong).status_code == 422
    assert snapshot(app) == before
    assert read(base, f"Task/{ava['id']}")["status"] == "requested"


@pytest.mark.parametrize("change", [
    {"basedOn": "Task/x"},
    {"item": "not a list"},
    {"subject": "Patient/pat-ava"},
    {"identifier": [{"system": "urn:x", "value": "1"}]},
    {"questionnaire": 7},
])
def test_malformed_responses_are_refused_cleanly(app: Any, base: str, change: dict[str, Any]) -> None:
    give_homework(app, "phq-9")
    before = snapshot(app)
    refused = call(base, "POST", "QuestionnaireResponse", json=dict(phq9(), **change))
    assert refused.status_code == 400, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert snapshot(app) == before


def test_closed_task_and_no_task(app: Any, base: str) -> None:
    task = give_homework(app, "phq-9")
    first = call(base, "POST", "QuestionnaireResponse",
                 json=phq9(basedOn=[{"reference": f"Task/{task['id']}"}]))
    assert first.status_code == 201
    again = call(base, "POST", "QuestionnaireResponse",
                 json=phq9(basedOn=[{"reference": f"Task/{task['id']}"}]))
    assert again.status_code == 422 and "amend" in again.text
    # an amendment of the submitted response is a plain update; the Task stays as it was
    amended = dict(first.json(), status="amended")
    put = call(base, "PUT", f"QuestionnaireResponse/{amended['id']}", json=amended)
    assert put.status_code == 200, put.text
    assert read(base, f"Task/{task['id']}")["meta"]["versionId"] == "2"
    # a response answering no Task is stored as before
    loose = call(base, "POST", "QuestionnaireResponse", json=phq9(patient="pat-carmen"))
    assert loose.status_code == 201 and "identifier" not in loose.json()


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post_entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    return {**entry, "fullUrl": full_url} if full_url else entry


def test_a_transaction_completes_the_task_it_answers(app: Any, base: str) -> None:
    task = give_homework(app, "phq-9")
    note = {"resourceType": "Communication", "status": "completed",
            "subject": {"reference": "Patient/pat-ava"},
            "about": [{"reference": "urn:uuid:7d2c64b4-6f09-4b58-9a8e-3f5c2d1e0a11"}]}
    bundle = transaction(
        post_entry(phq9(basedOn=[{"reference": f"Task/{task['id']}"}]),
                   "urn:uuid:7d2c64b4-6f09-4b58-9a8e-3f5c2d1e0a11"),
        post_entry(note))
    done = call(base, "POST", "", json=bundle)
    assert done.status_code == 200, done.text
    entries = done.json()["entry"]
    assert len(entries) == 2  # the entries sent, no more
    qr_id = entries[0]["resource"]["id"]
    assert entries[1]["resource"]["about"] == [{"reference": f"QuestionnaireResponse/{qr_id}"}]
    closed = read(base, f"Task/{task['id']}")
    assert closed["status"] == "completed" and output_of(closed) == [f"QuestionnaireResponse/{qr_id}"]
    assert closed["executionPeriod"]["end"]


def test_a_transaction_that_writes_the_task_itself_is_left_alone(app: Any, base: str) -> None:
    task = give_homework(app, "phq-9")
    own = {k: v for k, v in task.items() if k != "meta"}
    own.update(status="in-progress", businessStatus={"text": "filler"})
    bundle = transaction(
        post_entry(phq9(basedOn=[{"reference": f"Task/{task['id']}"}]),
                   "urn:uuid:0b8f7c2e-5a3d-4c1b-9e6f-2d4a8b7c6e50"),
        {"resource": own, "request": {"method": "PUT", "url": f"Task/{task['id']}"}})
    assert call(base, "POST", "", json=bundle).status_code == 200
    stored = read(base, f"Task/{task['id']}")
    assert stored["status"] == "in-progress" and stored["businessStatus"] == {"text": "filler"}


def test_a_transaction_answering_another_patients_task_is_refused(app: Any, base: str) -> None:
    ben = give_homework(app, "phq-9", patient="pat-ben")
    before = snapshot(app)
    bundle = transaction(post_entry(phq9(basedOn=[{"reference": f"Task/{ben['id']}"}])))
    refused = call(base, "POST", "", json=bundle)
    assert refused.status_code == 403, refused.text
    assert snapshot(app) == before


@pytest.fixture
def smart(app_config: dict) -> Iterator[tuple[Any, str]]:
    """The app with /fhir protected and the sandbox EHR, served over HTTP: (app, URL)."""
    application = patient_app(app_config, open_api=False, sandbox=True, secure_cookies=True)
    server = serve(application)
    with secure_cookies_over_http():
        yield application, server.url
    server.stop()
    application.extensions["hw_fhir"].close()


def test_patient_token_completes_own_task_only(smart: tuple[Any, str]) -> None:
    app, smart_base = smart
    ava = give_homework(app, "phq-9")
    ben = give_homework(app, "phq-9", patient="pat-ben")
    token = token_for(Browser(smart_base), "launch/patient openid fhirUser patient/*.cruds",
                      user="Patient/pat-ava")["access_token"]
    before = snapshot(app)
    theirs = call(smart_base, "POST", "QuestionnaireResponse", token,
                  json=phq9(patient="pat-ben", basedOn=[{"reference": f"Task/{ben['id']}"}]))
    assert theirs.status_code == 403, theirs.text
    assert snapshot(app) == before
    mine = call(smart_base, "POST", "QuestionnaireResponse", token,
                json=phq9(basedOn=[{"reference": f"Task/{ava['id']}"}]))
    assert mine.status_code == 201, mine.text
    assert call(smart_base, "GET", f"Task/{ava['id']}", token).json()["status"] == "completed"
    assert call(smart_base, "GET", f"Task/{ben['id']}", token).status_code == 403
    # in a transaction Bundle too: the caller's scopes are checked, the Task is the server's write
    again = give_homework(app, "phq-9")
    theirs_again = give_homework(app, "phq-9", patient="pat-ben")
    refused = call(smart_base, "POST", "", token, json=transaction(post_entry(
        phq9(patient="pat-ben", basedOn=[{"reference": f"Task/{theirs_again['id']}"}]))))
    assert refused.status_code == 403, refused.text
    done = call(smart_base, "POST", "", token, json=transaction(post_entry(
        phq9(basedOn=[{"reference": f"Task/{again['id']}"}]))))
    assert done.status_code == 200, done.text
    assert call(smart_base, "GET", f"Task/{again['id']}", token).json()["status"] == "completed"
