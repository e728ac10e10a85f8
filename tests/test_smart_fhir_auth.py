"""Authorization on /fhir over real HTTP, with tokens the sandbox issued: 401/403 with
``WWW-Authenticate``, v1 and v2 scopes, granular filters, and the patient compartment."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from smart_support import (
    Browser,
    browser_like_cookies,  # noqa: F401  (autouse fixture)
    browser,  # noqa: F401
    fhir,
    sandbox_app,  # noqa: F401
    sandbox_server,  # noqa: F401
    token_for,
)

from hw_fhir.config import load_settings
from hw_fhir.errors import ConfigurationError
from hw_fhir.smart.authstore import hash_secret
from hw_fhir.smart.tables import smart_token

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _task(patient: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "status": "requested", "intent": "order",
            "code": {"text": "complete questionnaire"}, "for": {"reference": f"Patient/{patient}"}, **extra}


def _observation(patient: str, category: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "score"},
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "subject": {"reference": f"Patient/{patient}"}, "valueInteger": 3}


@pytest.fixture
def data(sandbox_app: Any) -> dict[str, str]:
    """Tasks and Observations of two patients, written straight into the store."""
    store = sandbox_app.extensions["hw_fhir"].store
    ids = {
        "ava_task": store.create(_task("pat-ava")).stored.id,
        "ben_task": store.create(_task("pat-ben")).stored.id,
        "ava_survey": store.create(_observation("pat-ava", "survey")).stored.id,
        "ava_lab": store.create(_observation("pat-ava", "laboratory")).stored.id,
        "ben_survey": store.create(_observation("pat-ben", "survey")).stored.id,
    }
    return ids


def _ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"}


def _patient_token(browser: Browser, scope: str, patient: str = "pat-ava") -> str:
    return token_for(browser, f"launch/patient {scope}", user=f"Patient/{patient}")["access_token"]


def _clinician_token(browser: Browser, scope: str) -> str:
    return token_for(browser, scope, user="Practitioner/dr-rivera")["access_token"]


# ------------------------------------------------------------------ 401


def test_no_token_is_401_with_a_bearer_challenge(browser: Browser) -> None:
    response = fhir(browser.base, None, "GET", "Patient/pat-ava")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="hw-fhir"'
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "login"


def test_unknown_or_malformed_credentials_are_401(browser: Browser) -> None:
    bad = fhir(browser.base, "not-a-token", "GET", "Patient")
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    basic = fhir(browser.base, None, "GET", "Patient", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401 and 'error="invalid_request"' in basic.headers["WWW-Authenticate"]


def test_expired_token_is_401(browser: Browser, sandbox_app: Any) -> None:
    token = _patient_token(browser, "patient/Patient.rs")
    assert fhir(browser.base, token, "GET", "Patient/pat-ava").status_code == 200
    with sandbox_app.extensions["hw_fhir"].store.begin() as conn:
        conn.execute(sa.update(smart_token).where(smart_token.c.access_hash == hash_secret(token))
                     .values(expires_at=1))
    response = fhir(browser.base, token, "GET", "Patient/pat-ava")
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_metadata_needs_no_token(browser: Browser) -> None:
    response = fhir(browser.base, None, "GET", "metadata")
    assert response.status_code == 200 and response.json()["resourceType"] == "CapabilityStatement"


# ------------------------------------------------------- patient compartment


def test_patient_a_cannot_read_patient_b(browser: Browser, data: dict[str, str]) -> None:
    token = _patient_token(browser, "patient/*.rs")
    assert fhir(browser.base, token, "GET", "Patient/pat-ava").status_code == 200
    other = fhir(browser.base, token, "GET", "Patient/pat-ben")
    assert other.status_code == 403
    assert 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]
    assert other.json()["issue"][0]["code"] == "forbidden"
    assert fhir(browser.base, token, "GET", f"Task/{data['ben_task']}").status_code == 403
    assert fhir(browser.base, token, "GET", f"Task/{data['ava_task']}").status_code == 200
    assert fhir(browser.base, token, "GET", f"Task/{data['ben_task']}/_history/1").status_code == 403


def test_patient_searches_are_limited_to_the_compartment(browser: Browser, data: dict[str, str]) -> None:
    token = _patient_token(browser, "patient/*.rs")
    assert _ids(fhir(browser.base, token, "GET", "Task")) == {data["ava_task"]}
    assert _ids(fhir(browser.base, token, "GET", "Task?patient=Patient/pat-ben")) == set()
    assert _ids(fhir(browser.base, token, "GET", "Patient")) == {"pat-ava"}
    assert _ids(fhir(browser.base, token, "GET", "Observation?category=survey")) == {data["ava_survey"]}
    bundle = fhir(browser.base, token, "GET", "Task").json()
    assert bundle["total"] == 1
    assert "Patient%2Fpat-ava" not in bundle["link"][0]["url"]  # the added restriction is not echoed


def test_patient_search_never_includes_another_patients_resources(browser: Browser, sandbox_app: Any) -> None:
    store = sandbox_app.extensions["hw_fhir"].store
    store.create(_task("pat-ava", owner={"reference": "Patient/pat-ben"}))
    token = _patient_token(browser, "patient/*.rs")
    bundle = fhir(browser.base, token, "GET", "Task?_include=Task:owner&_include=Task:patient").json()
    included = {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    assert included == {"pat-ava"}


def test_patient_history_only_shows_the_patients_own_versions(browser: Browser, data: dict[str, str]) -> None:
    token = _patient_token(browser, "patient/*.rs")
    response = fhir(browser.base, token, "GET", "Task/_history")
    assert response.status_code == 200
    assert {e["resource"]["id"] for e in response.json()["entry"]} == {data["ava_task"]}
    assert fhir(browser.base, token, "GET", f"Task/{data['ben_task']}/_history").status_code == 403


def test_shared_definitions_are_readable_with_patient_scopes(browser: Browser, sandbox_app: Any) -> None:
    store = sandbox_app.extensions["hw_fhir"].store
    questionnaire = store.create({"resourceType": "Questionnaire", "status": "active",
                                  "url": "http://example.org/q", "item": [
                                      {"linkId": "1", "text": "How are you?", "type": "string"}]})
    token = _patient_token(browser, "patient/Questionnaire.rs patient/Practitioner.rs")
    assert fhir(browser.base, token, "GET", f"Questionnaire/{questionnaire.stored.id}").status_code == 200
    assert fhir(browser.base, token, "GET", "Practitioner/dr-okafor").status_code == 200
    write = fhir(browser.base, token, "POST", "Questionnaire", json={"resourceType": "Questionnaire",
                                                                     "status": "draft"})
    assert write.status_code == 403


# ---------------------------------------------------------------- writes


def test_read_only_task_scope_cannot_write(browser: Browser, data: dict[str, str]) -> None:
    token = _patient_token(browser, "patient/Task.rs")
    assert fhir(browser.base, token, "GET", f"Task/{data['ava_task']}").status_code == 200
    created = fhir(browser.base, token, "POST", "Task", json=_task("pat-ava"))
    assert created.status_code == 403
    assert 'scope="patient/Task.c"' in created.headers["WWW-Authenticate"]
    task = fhir(browser.base, token, "GET", f"Task/{data['ava_task']}").json()
    assert fhir(browser.base, token, "PUT", f"Task/{task['id']}", json={**task, "status": "cancelled"}).status_code == 403
    assert fhir(browser.base, token, "DELETE", f"Task/{task['id']}").status_code == 403
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _task("pat-ava"), "request": {"method": "POST", "url": "Task"}}]}
    assert fhir(browser.base, token, "POST", "", json=bundle).status_code == 403


def test_patient_writes_that_point_at_another_patient_are_refused(browser: Browser, data: dict[str, str]) -> None:
    token = _patient_token(browser, "patient/Task.cruds")
    mine = fhir(browser.base, token, "POST", "Task", json=_task("pat-ava"))
    assert mine.status_code == 201
    assert fhir(browser.base, token, "POST", "Task", json=_task("pat-ben")).status_code == 403
    sneaky = fhir(browser.base, token, "POST", "Task", json=_task("pat-ava", owner={"reference": "Patient/pat-ben"}))
    assert sneaky.status_code == 403
    task = mine.json()
    moved = fhir(browser.base, token, "PUT", f"Task/{task['id']}", json={**task, "for": {"reference": "Patient/pat-ben"}})
    assert moved.status_code == 403
    ben = fhir(browser.base, token, "PUT", f"Task/{data['ben_task']}", json=_task("pat-ava", id=data["ben_task"]))
    assert ben.status_code == 403  # cannot take over another patient's Task either
    assert fhir(browser.base, token, "DELETE", f"Task/{data['ben_task']}").status_code == 403
    updated = fhir(browser.base, token, "PUT", f"Task/{task['id']}", json={**task, "status": "in-progress"})
    assert updated.status_code == 200
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _task("pat-ava"), "request": {"method": "POST", "url": "Task"}},
        {"resource": _task("pat-ben"), "request": {"method": "POST", "url": "Task"}}]}
    assert fhir(browser.base, token, "POST", "", json=bundle).status_code == 403
    gets = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": "Task"}}]}
    assert fhir(browser.base, token, "POST", "", json=gets).status_code == 403


def test_conditional_create_cannot_reveal_another_patients_resource(browser: Browser, sandbox_app: Any) -> None:
    store = sandbox_app.extensions["hw_fhir"].store
    store.create(_task("pat-ben", identifier=[{"system": "urn:x", "value": "ben-1"}]))
    token = _patient_token(browser, "patient/Task.cruds")
    response = fhir(browser.base, token, "POST", "Task", json=_task("pat-ava"),
                    headers={"If-None-Exist": "identifier=urn:x|ben-1"})
    # the criteria are evaluated within the patient's compartment: Ben's Task is not seen
    assert response.status_code == 201
    assert "pat-ben" not in response.text


# ------------------------------------------------------ v1, v2, granular


def test_v1_read_and_write_scopes(browser: Browser, data: dict[str, str]) -> None:
    read = _patient_token(browser, "patient/*.read")
    assert fhir(browser.base, read, "GET", "Task").status_code == 200
    assert fhir(browser.base, read, "POST", "Task", json=_task("pat-ava")).status_code == 403
    write = _patient_token(browser, "patient/Task.write")
    assert fhir(browser.base, write, "POST", "Task", json=_task("pat-ava")).status_code == 201
    assert fhir(browser.base, write, "GET", "Task").status_code == 403  # write is c u d, not r s
    star = _patient_token(browser, "patient/Task.*")
    assert fhir(browser.base, star, "GET", "Task").status_code == 200
    assert fhir(browser.base, star, "POST", "Task", json=_task("pat-ava")).status_code == 201


def test_granular_scope_filters_reads_and_searches(browser: Browser, data: dict[str, str]) -> None:
    token = _patient_token(browser, f"patient/Observation.rs?category={CATEGORY}|survey")
    assert _ids(fhir(browser.base, token, "GET", "Observation")) == {data["ava_survey"]}
    assert fhir(browser.base, token, "GET", f"Observation/{data['ava_survey']}").status_code == 200
    assert fhir(browser.base, token, "GET", f"Observation/{data['ava_lab']}").status_code == 403
    assert fhir(browser.base, token, "GET", f"Observation/{data['ben_survey']}").status_code == 403


def test_clinician_user_scopes_see_every_patient(browser: Browser, data: dict[str, str]) -> None:
    token = _clinician_token(browser, "user/Task.rs user/Patient.rs")
    assert _ids(fhir(browser.base, token, "GET", "Task")) == {data["ava_task"], data["ben_task"]}
    assert fhir(browser.base, token, "GET", "Patient/pat-ben").status_code == 200
    assert fhir(browser.base, token, "GET", f"Observation/{data['ava_lab']}").status_code == 403
    assert fhir(browser.base, token, "POST", "Task", json=_task("pat-ben")).status_code == 403
    writer = _clinician_token(browser, "user/Task.cruds")
    assert fhir(browser.base, writer, "POST", "Task", json=_task("pat-ben")).status_code == 201


def test_granular_user_scope_applies_to_writes(browser: Browser) -> None:
    token = _clinician_token(browser, f"user/Observation.cu?category={CATEGORY}|survey user/Observation.rs")
    assert fhir(browser.base, token, "POST", "Observation", json=_observation("pat-ava", "survey")).status_code == 201
    assert fhir(browser.base, token, "POST", "Observation", json=_observation("pat-ava", "laboratory")).status_code == 403


# -------------------------------------------------------------- open API


def test_open_api_serves_without_a_token(client: Any) -> None:
    """The conftest app runs with open_api=True (development only)."""
    assert client.get("/fhir/Patient").status_code == 200


def test_open_api_is_refused_with_production() -> None:
    with pytest.raises(ConfigurationError):
        load_settings(environ={}, open_api=True, production=True, secret_key="x", instance_path="/tmp/x")
