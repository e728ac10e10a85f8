"""Every path scores: QuestionnaireResponses written through /fhir (create, update, Bundles)
are scored before the write returns; ``$measure-progress``; the crisis snippet.

The app runs on SQLite and on PostgreSQL (``app_config`` is overridden with ``db_url``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import render_template

from hw_fhir import library, outcomes
from hw_fhir.models import validate
from hw_fhir.scoring import OBSERVATION_SYSTEM, observation_id

from outcomes_support import (
    ANSWERS,
    LOINC,
    PHQ9_ITEM_CODES,
    SCORE_BANDS,
    SURVEY,
    UCUM,
    VENDOR_SYSTEM,
    by_code,
    codes,
    instrument_response,
    vendor_questionnaire,
    vendor_response,
)
from reminder_support import jobs

FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def app_config(tmp_path: Path, db_url: str) -> dict:
    """The test app on a fresh SQLite or PostgreSQL database, open API."""
    return {"TESTING": True, "instance_path": str(tmp_path / "instance"), "database_url": db_url,
            "open_api": True, "secret_key": "test-secret"}


@pytest.fixture
def client(app):
    """A test client of an app holding the catalog, a patient and her clinician."""
    store = app.extensions["hw_fhir"].store
    library.load_catalog(store)
    store.update({"resourceType": "Practitioner", "id": "dr-rivera"})
    store.update({"resourceType": "Patient", "id": "pat-ava",
                  "generalPractitioner": [{"reference": "Practitioner/dr-rivera"}]})
    return app.test_client()


def post(client: Any, resource: dict[str, Any], **headers: str) -> Any:
    return client.post(f"/fhir/{resource['resourceType']}", json=resource,
                       headers={**FHIR, **headers})


def put(client: Any, resource: dict[str, Any], **headers: str) -> Any:
    return client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                      headers={**FHIR, **headers})


def search(client: Any, query: str) -> list[dict[str, Any]]:
    page = client.get(f"/fhir/{query}")
    assert page.status_code == 200, page.json
    return [e["resource"] for e in page.json.get("entry") or [] if e["search"]["mode"] == "match"]


def derived(client: Any, rid: str) -> list[dict[str, Any]]:
    return search(client, f"Observation?derived-from=QuestionnaireResponse/{rid}&_count=100")


# -- create and update through /fhir -----------------------------------------------------------


def test_phq9_created_through_fhir_is_scored_before_the_write_returns(client):
    # 0+1+2+3+0+1+2+3+0 = 12 → moderate
    weights = [0, 1, 2, 3, 0, 1, 2, 3, 0]
    sent = post(client, instrument_response("phq-9", weights))
    assert sent.status_code == 201 and "Warning" not in sent.headers
    response = sent.json
    rid = response["id"]
    # the body is the newest version: the calculated total filled in
    assert response["meta"]["versionId"] == "2"
    assert sent.headers["ETag"] == 'W/"2"'
    assert sent.headers["Location"].endswith(f"/fhir/QuestionnaireResponse/{rid}/_history/2")
    assert [i["answer"] for i in response["item"] if i["linkId"] == "phq9-total"] == [
        [{"valueInteger": 12}]]
    assert client.get(f"/fhir/QuestionnaireResponse/{rid}").json == response

    found = derived(client, rid)
    assert len(found) == 11
    obs = by_code(found)
    panel, total = obs["44249-1"], obs["44261-6"]
    for o in found:
        assert validate(o) == o
        assert o["status"] == "final"
        assert o["category"] == [SURVEY]
        assert o["subject"] == {"reference": "Patient/pat-ava"}
        assert o["effectiveDateTime"] == "2026-03-02T15:00:00Z"
        assert o["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{rid}"}]
    assert panel["id"] == observation_id(rid, "44249-1")
    assert panel["identifier"] == [{"system": OBSERVATION_SYSTEM, "value": f"{rid}/44249-1"}]
    assert codes(panel["code"]) == [(LOINC, "44249-1")]
    assert sorted(m["reference"] for m in panel["hasMember"]) == sorted(
        f"Observation/{o['id']}" for o in found if o is not panel)
    assert total["id"] == observation_id(rid, "44261-6")
    assert codes(total["code"]) == [(LOINC, "44261-6")]
    assert total["valueQuantity"] == {"value": 12, "unit": "{score}", "system": UCUM,
                                      "code": "{score}"}
    assert total["interpretation"][0]["coding"][0]["system"] == SCORE_BANDS
    assert total["interpretation"][0]["coding"][0]["code"] == "moderate"
    item4 = obs[PHQ9_ITEM_CODES[3]]
    assert item4["valueCodeableConcept"]["coding"][0]["code"] == ANSWERS[3][0]
    assert "hasMember" not in item4 and "valueQuantity" not in item4
    # the scores are also found by patient and code
    by_patient = search(client, f"Observation?patient=pat-ava&code={LOINC}|44261-6")
    assert [o["id"] for o in by_patient] == [total["id"]]


def test_amended_through_fhir_updates_the_same_observations(client):
    created = post(client, instrument_response("phq-9", [3, 3, 3, 3, 3, 3, 3, 3, 0])).json  # 24
    rid = created["id"]
    before = {o["id"]: o for o in derived(client, rid)}
    amended = dict(instrument_response("phq-9", [1, 1, 1, 1, 1, 1, 1, 1, 0], status="amended"),
                   id=rid)  # 8 → mild
    answer = put(client, amended, **{"If-Match": f'W/"{created["meta"]["versionId"]}"'})
    assert answer.status_code == 200
    assert answer.json["meta"]["versionId"] == "4" and answer.headers["ETag"] == 'W/"4"'
    after = {o["id"]: o for o in derived(client, rid)}
    assert set(after) == set(before) and len(after) == 11
    total = by_code(list(after.values()))["44261-6"]
    assert total["valueQuantity"]["value"] == 8 and total["status"] == "amended"
    assert total["meta"]["versionId"] == "2"
    assert before[total["id"]]["valueQuantity"]["value"] == 24
    history = client.get(f"/fhir/Observation/{total['id']}/_history").json
    assert [e["resource"]["valueQuantity"]["value"] for e in history["entry"]] == [8, 24]

    # the same amendment again (without the total): the total is filled in, the scores stay
    again = put(client, dict(amended, id=rid))
    assert again.json["meta"]["versionId"] == "6"  # the PUT, then the calculated total
    assert {o["id"]: o["meta"]["versionId"] for o in derived(client, rid)} == {
        i: o["meta"]["versionId"] for i, o in after.items()}


def test_item_9_through_fhir_raises_flag_and_alert(client):
    # item 9 alone: total 1, minimal — and a risk
    sent = post(client, instrument_response("phq-9", [0, 0, 0, 0, 0, 0, 0, 0, 1]))
    assert sent.status_code == 201 and "Warning" not in sent.headers
    rid = sent.json["id"]
    [flag] = search(client, "Flag?patient=pat-ava&status=active")
    assert flag["author"] == {"reference": "Practitioner/dr-rivera"}
    assert codes(flag["code"]) == [(outcomes.RISK_SYSTEM, "self-harm")]
    assert flag["extension"][0]["valueReference"] == {"reference": f"QuestionnaireResponse/{rid}"}
    [alert] = search(client, "CommunicationRequest?recipient=Practitioner/dr-rivera&status=active")
    assert alert["priority"] == "stat"
    assert codes(alert["category"][0]) == [(outcomes.COMMUNICATION_CATEGORY_SYSTEM, "risk-alert")]
    assert alert["about"] == [{"reference": f"Flag/{flag['id']}"},
                              {"reference": f"QuestionnaireResponse/{rid}"}]
    assert by_code(derived(client, rid))["44261-6"]["valueQuantity"]["value"] == 1
    # risk_raised ran: the built-in plugin queued the alert before the write returned
    services = client.application.extensions["hw_fhir"]
    assert [j.request_id for j in jobs(services, kind="alert")] == [alert["id"]]

    # the clinician acknowledges: the Flag ends and the alert is done
    store = client.application.extensions["hw_fhir"].store
    outcomes.acknowledge_flag(store, flag["id"], "Practitioner/dr-rivera", "Spoke with Ava.")
    assert search(client, "Flag?patient=pat-ava&status=active") == []
    assert client.get(f"/fhir/CommunicationRequest/{alert['id']}").json["status"] == "completed"


def test_vendor_questionnaire_with_weights_and_expression_is_scored_through_fhir(client):
    assert put(client, vendor_questionnaire()).status_code == 201
    # sometimes (2) + often (4) - never (0) = 6
    sent = post(client, vendor_response("sometimes", "often", "never"))
    assert sent.status_code == 201 and "Warning" not in sent.headers
    assert [i["answer"] for i in sent.json["item"] if i["linkId"] == "score"] == [
        [{"valueInteger": 6}]]
    found = {o["code"]["coding"][0]["code"]: o for o in derived(client, sent.json["id"])}
    assert set(found) == {"panel", "score", "w1"}
    assert found["score"]["code"]["coding"][0]["system"] == VENDOR_SYSTEM
    assert found["score"]["valueQuantity"]["value"] == 6
    assert "interpretation" not in found["score"]  # no instrument plugin: no bands


def test_unknown_questionnaire_is_stored_with_a_clear_warning_and_no_observations(client):
    unknown = dict(instrument_response("phq-9", [1] * 9),
                   questionnaire="http://example.org/Questionnaire/unknown|1")
    sent = post(client, unknown)
    assert sent.status_code == 201
    assert sent.headers["Warning"].startswith('199 hw-fhir "Not scored: Questionnaire '
                                              'http://example.org/Questionnaire/unknown|1')
    rid = sent.json["id"]
    assert sent.json["meta"]["versionId"] == "1"
    assert client.get(f"/fhir/QuestionnaireResponse/{rid}").status_code == 200
    assert derived(client, rid) == []

    outcome = post(client, unknown, Prefer="return=OperationOutcome")
    assert outcome.status_code == 201
    stored_issue, warning = outcome.json["issue"]
    assert stored_issue["severity"] == "information"
    assert warning["severity"] == "warning" and warning["code"] == "not-found"
    assert "unknown|1" in warning["diagnostics"]
    assert warning["expression"] == ["QuestionnaireResponse.questionnaire"]

    minimal = post(client, unknown, Prefer="return=minimal")
    assert minimal.status_code == 201 and minimal.data == b"" and "Warning" in minimal.headers


def test_drafts_and_other_resources_are_not_scored(client):
    draft = post(client, instrument_response("phq-9", [1] * 9, status="in-progress"))
    assert draft.status_code == 201 and "Warning" not in draft.headers
    assert draft.json["meta"]["versionId"] == "1" and derived(client, draft.json["id"]) == []
    other = post(client, {"resourceType": "Patient", "name": [{"family": "Other"}]})
    assert other.status_code == 201 and "Warning" not in other.headers


def test_responses_in_a_transaction_are_scored(client):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5e0b5d7c-1a2b-4c3d-8e9f-000000000001",
         "resource": instrument_response("gad-7", [3, 3, 3, 3, 3, 3, 3]),       # 21 → severe
         "request": {"method": "POST", "url": "QuestionnaireResponse"}},
        {"resource": {"resourceType": "Patient", "name": [{"family": "Zed"}]},
         "request": {"method": "POST", "url": "Patient"}},
    ]}
    answer = client.post("/fhir", json=bundle, headers=FHIR)
    assert answer.status_code == 200
    first, second = answer.json["entry"]
    rid = first["resource"]["id"]
    assert first["resource"]["meta"]["versionId"] == "2"
    assert first["response"]["etag"] == 'W/"2"'
    assert first["response"]["location"] == f"QuestionnaireResponse/{rid}/_history/2"
    assert "outcome" not in first["response"] and "outcome" not in second["response"]
    total = by_code(derived(client, rid))["70274-6"]
    assert total["valueQuantity"]["value"] == 21
    assert total["interpretation"][0]["coding"][0]["code"] == "severe"

    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": dict(instrument_response("phq-2", [1, 1]),
                          questionnaire="http://example.org/Questionnaire/gone|2"),
         "request": {"method": "POST", "url": "QuestionnaireResponse"}}]}
    [entry] = client.post("/fhir", json=batch, headers=FHIR).json["entry"]
    assert entry["response"]["status"].startswith("201")
    assert entry["response"]["outcome"]["issue"][0]["severity"] == "warning"
    assert "gone|2" in entry["response"]["outcome"]["issue"][0]["diagnostics"]


# -- $measure-progress -------------------------------------------------------------------------


def test_measure_progress_operation(client):
    for authored, weights in [("2026-01-05T10:00:00Z", [3, 3, 2, 2, 2, 2, 2, 2, 1]),   # 19
                              ("2026-02-02T10:00:00Z", [2, 2, 1, 1, 1, 1, 1, 1, 0]),   # 10
                              ("2026-03-02T10:00:00Z", [1, 1, 1, 0, 0, 0, 0, 0, 0])]:  # 3
        sent = post(client, instrument_response("phq-9", weights, authored=authored))
        assert sent.status_code == 201
    for authored, weights in [("2026-01-05T10:00:00Z", [1, 1, 1, 1, 1, 1, 1]),         # 7
                              ("2026-03-02T10:00:00Z", [2, 2, 2, 1, 1, 1, 1])]:        # 10
        post(client, instrument_response("gad-7", weights, authored=authored))

    answer = client.get("/fhir/Patient/pat-ava/$measure-progress")
    assert answer.status_code == 200
    assert answer.content_type.startswith("application/fhir+json")
    result = answer.json
    assert validate(result) == result and result["resourceType"] == "Parameters"
    measures = {}
    for parameter in result["parameter"][1:]:
        parts = parameter["part"]
        measures[parts[0]["valueCode"]] = parts
    assert set(measures) == {"phq-9", "gad-7"}

    def value(parts: list[dict[str, Any]], name: str) -> Any:
        [part] = [p for p in parts if p["name"] == name]
        return part.get("part") or next(v for k, v in part.items() if k.startswith("value"))

    phq = measures["phq-9"]
    assert value(phq, "count") == 3
    assert value(phq, "baseline") == [{"name": "date", "valueDateTime": "2026-01-05T10:00:00Z"},
                                      {"name": "value", "valueDecimal": 19}]
    assert value(phq, "latest")[1] == {"name": "value", "valueDecimal": 3}
    assert value(phq, "change") == -16
    assert value(phq, "percentChange") == -84.2
    assert value(phq, "response") is True and value(phq, "remission") is True
    assert value(phq, "reliableChange") is True and value(phq, "reliableImprovement") is True
    assert [p["valueCode"] for p in phq if p["name"] == "label"] == [
        "response", "remission", "reliable-improvement"]
    gad = measures["gad-7"]
    assert value(gad, "change") == 3
    assert value(gad, "response") is False and value(gad, "remission") is False
    assert value(gad, "reliableChange") is False and value(gad, "deterioration") is False
    assert [p["valueCode"] for p in gad if p["name"] == "label"] == ["no-reliable-change"]

    only = client.get("/fhir/Patient/pat-ava/$measure-progress?instrument=gad-7").json
    assert [p["part"][0]["valueCode"] for p in only["parameter"][1:]] == ["gad-7"]


def test_measure_progress_errors_and_capability(client):
    empty = client.get("/fhir/Patient/pat-ava/$measure-progress").json
    assert empty["parameter"] == [{"name": "subject",
                                   "valueReference": {"reference": "Patient/pat-ava"}}]
    missing = client.get("/fhir/Patient/nobody/$measure-progress")
    assert missing.status_code == 404 and missing.json["resourceType"] == "OperationOutcome"
    for query in ("instrument=bdi-ii", "instrument=phq-2", "since=2026"):
        bad = client.get(f"/fhir/Patient/pat-ava/$measure-progress?{query}")
        assert bad.status_code == 400 and bad.json["resourceType"] == "OperationOutcome"
    statement = client.get("/fhir/metadata").json
    [operation] = [o for o in statement["rest"][0]["operation"] if o["name"] == "measure-progress"]
    assert operation["definition"] == outcomes.PROGRESS_OPERATION


def test_measure_progress_needs_authorization(tmp_path, sqlite_url):
    from smart_app import create_app

    app = create_app({"TESTING": True, "instance_path": str(tmp_path / "closed"),
                      "database_url": sqlite_url, "secret_key": "test-secret"})
    try:
        answer = app.test_client().get("/fhir/Patient/pat-ava/$measure-progress")
        assert answer.status_code == 401 and "Bearer" in answer.headers["WWW-Authenticate"]
    finally:
        app.extensions["hw_fhir"].close()


# -- crisis snippet ----------------------------------------------------------------------------


def test_crisis_snippet_renders_the_configured_resources(app):
    with app.test_request_context():
        crisis = outcomes.crisis_resources(app.extensions["hw_fhir"].settings)
        page = render_template("_crisis.html", crisis=crisis)
        assert 'role="alert"' in page
        assert crisis.text.split(",")[0] in page
        assert 'href="tel:988"' in page and 'href="sms:988"' in page and 'href="tel:911"' in page
        assert "988 Suicide &amp; Crisis Lifeline" in page
        assert render_template("_crisis.html", crisis=None).strip() == ""
