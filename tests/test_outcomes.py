"""Recording scores: Observations, re-scoring, risks (Flag + alert), acknowledgement, the
completion path, measurement-based care and crisis resources — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any

import pytest

from hw_fhir import library, outcomes
from hw_fhir.assignment import Assignment, assign
from hw_fhir.completion import amend_response, submit_response
from hw_fhir.config import load_settings
from hw_fhir.errors import BusinessRuleError, ConfigurationError, InvalidInput, NotFound
from hw_fhir.events import Events
from hw_fhir.models import validate
from hw_fhir.schedule import Schedule
from hw_fhir.scoring import OBSERVATION_SYSTEM, observation_id
from hw_fhir.store import iter_all

from outcomes_support import (
    ANSWERS,
    LOINC,
    PHQ9_ITEM_CODES,
    SCORE_BANDS,
    SURVEY,
    UCUM,
    by_code,
    codes,
    instrument_response,
)

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 3, 2, 16, 30, tzinfo=timezone.utc)


@pytest.fixture
def store(sql_store):
    """A store holding the catalog, the patient and the clinician."""
    library.load_catalog(sql_store)
    sql_store.update({"resourceType": "Patient", "id": "pat-ava", "name": [{"family": "Ava"}]})
    sql_store.update({"resourceType": "Practitioner", "id": "dr-rivera"})
    return sql_store


def stored(store: Any, response: dict[str, Any]) -> dict[str, Any]:
    return store.create(response).resource


def derived(store: Any, response_id: str) -> list[dict[str, Any]]:
    return iter_all(store, "Observation",
                    [("derived-from", f"QuestionnaireResponse/{response_id}")])


def versions(store: Any) -> set[tuple[str, str, str]]:
    return {(e.resource_type, e.id, e.version_id) for e in store.history(count=100000).entries}


# -- Observations ------------------------------------------------------------------------------


def test_phq9_scores_become_a_panel_total_and_item_observations(store):
    # items 1..9 weigh 1+2+3+0+1+2+3+1+0 = 13 → moderate (10-14); item 9 "Not at all"
    response = stored(store, instrument_response("phq-9", [1, 2, 3, 0, 1, 2, 3, 1, 0]))
    recorded = outcomes.record_scores(store, response, now=NOW)
    assert recorded.scored and not recorded.warnings
    assert not recorded.flags and recorded.crisis is None
    rid = response["id"]

    # the calculated total is written back into the response: a new version
    assert recorded.response["meta"]["versionId"] == "2"
    [total_item] = [i for i in recorded.response["item"] if i["linkId"] == "phq9-total"]
    assert total_item["answer"] == [{"valueInteger": 13}]
    assert store.read("QuestionnaireResponse", rid).resource == recorded.response

    found = derived(store, rid)
    assert {o["id"] for o in found} == {o["id"] for o in recorded.observations}
    assert len(found) == 1 + 1 + 9  # panel, total, nine items (item 10 unanswered)
    for obs in found:
        assert validate(obs) == obs
        assert obs["status"] == "final"
        assert obs["category"] == [SURVEY]
        assert obs["subject"] == {"reference": "Patient/pat-ava"}
        assert obs["effectiveDateTime"] == "2026-03-02T15:00:00Z"
        assert obs["performer"] == [{"reference": "Patient/pat-ava"}]
        assert obs["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{rid}"}]
    obs = by_code(found)

    panel = recorded.observations[0]
    assert panel is not None and codes(panel["code"]) == [(LOINC, "44249-1")]
    assert panel["id"] == observation_id(rid, "44249-1")
    assert panel["identifier"] == [{"system": OBSERVATION_SYSTEM, "value": f"{rid}/44249-1"}]
    assert "valueQuantity" not in panel and "valueCodeableConcept" not in panel
    members = {m["reference"] for m in panel["hasMember"]}
    assert members == {f"Observation/{o['id']}" for o in found if o["id"] != panel["id"]}

    total = obs["44261-6"]
    assert total["id"] == observation_id(rid, "44261-6")
    assert total["code"]["text"] == "PHQ-9 total score"
    assert total["valueQuantity"] == {"value": 13, "unit": "{score}", "system": UCUM,
                                      "code": "{score}"}
    assert codes(total["interpretation"][0]) == [(SCORE_BANDS, "moderate")]
    assert "note" not in total

    weights = [1, 2, 3, 0, 1, 2, 3, 1, 0]
    for code, weight in zip(PHQ9_ITEM_CODES, weights, strict=True):
        item = obs[code]
        assert item["valueCodeableConcept"]["coding"] == [
            {"system": LOINC, "code": ANSWERS[weight][0], "display": ANSWERS[weight][1]}]
        assert "hasMember" not in item and "interpretation" not in item


def test_scoring_again_writes_nothing(store):
    response = stored(store, instrument_response("phq-9", [3, 3, 3, 3, 3, 3, 3, 3, 0]))
    first = outcomes.record_scores(store, response, now=NOW)
    assert first.written == 1 + 11  # the response's new version and eleven Observations
    before = versions(store)
    again = outcomes.record_scores(store, first.response, now=LATER)
    assert again.written == 0 and versions(store) == before
    assert [o["id"] for o in again.observations] == [o["id"] for o in first.observations]
    assert by_code(list(again.observations))["44261-6"]["valueQuantity"]["value"] == 24


def test_amended_response_updates_the_same_observations(store):
    response = stored(store, instrument_response("phq-9", [1, 2, 3, 0, 1, 2, 3, 1, 0]))
    first = outcomes.record_scores(store, response, now=NOW)
    ids = {o["id"] for o in derived(store, response["id"])}

    # the patient corrects items 3 and 7: 13 - 3 - 3 = 7 → mild
    amended = instrument_response("phq-9", [1, 2, 0, 0, 1, 2, 0, 1, 0], status="amended",
                                  authored="2026-03-02T16:30:00Z")
    amended = store.update(dict(amended, id=response["id"])).resource
    again = outcomes.record_scores(store, amended, now=LATER)

    after = derived(store, response["id"])
    assert {o["id"] for o in after} == ids  # same ids, nothing added
    assert len(after) == len(ids) == 11
    total = by_code(after)["44261-6"]
    assert total["valueQuantity"]["value"] == 7
    assert codes(total["interpretation"][0]) == [(SCORE_BANDS, "mild")]
    assert total["status"] == "amended"
    assert total["effectiveDateTime"] == "2026-03-02T16:30:00Z"
    assert total["meta"]["versionId"] == "2"
    history = store.history("Observation", total["id"]).entries
    assert [h.resource["valueQuantity"]["value"] for h in history] == [7, 13]
    assert by_code(after)["44259-0"]["valueCodeableConcept"]["coding"][0]["code"] == ANSWERS[0][0]
    [total_item] = [i for i in again.response["item"] if i["linkId"] == "phq9-total"]
    assert total_item["answer"] == [{"valueInteger": 7}]
    assert first.response["meta"]["versionId"] == "2" and again.response["meta"]["versionId"] == "4"


def test_a_score_the_amendment_no_longer_yields_is_entered_in_error(store):
    response = stored(store, instrument_response("phq-9", [1, 1, 1, 1, 1, 1, 1, 1, 0]))
    outcomes.record_scores(store, response, now=NOW)
    # three items now unanswered: the published rule gives no total
    amended = instrument_response("phq-9", [1, 1, 1, None, None, None, 1, 1, 0], status="amended")
    amended = store.update(dict(amended, id=response["id"])).resource
    recorded = outcomes.record_scores(store, amended, now=LATER)

    assert recorded.result is not None and recorded.result.total is None
    retracted = {o["code"]["coding"][0]["code"] for o in recorded.retracted}
    assert retracted == {"44261-6", PHQ9_ITEM_CODES[3], PHQ9_ITEM_CODES[4], PHQ9_ITEM_CODES[5]}
    after = by_code(derived(store, response["id"]))
    assert len(after) == 11  # still no duplicates
    assert {c for c, o in after.items() if o["status"] == "entered-in-error"} == retracted
    panel = after["44249-1"]
    assert any("Not scored: 3 of 9" in n["text"] for n in panel["note"])
    assert {m["reference"] for m in panel["hasMember"]} == {
        f"Observation/{o['id']}" for c, o in after.items() if c not in retracted | {"44249-1"}}
    # the response's calculated total is gone too
    assert all(i["linkId"] != "phq9-total" for i in recorded.response["item"])
    # and the required-item problems are reported, without stopping the scoring
    assert any("required" == w.code or "required" in w.message for w in recorded.warnings)


def test_partial_phq9_is_prorated_following_the_published_rule(store):
    # items 4 and 6 unanswered: 2+2+2+1+1+1+0 = 9 over 7 items → 9/7 × 9 = 11.57 → 12 (moderate)
    response = stored(store, instrument_response("phq-9", [2, 2, 2, None, 1, None, 1, 1, 0]))
    recorded = outcomes.record_scores(store, response, now=NOW)
    total = by_code(derived(store, response["id"]))["44261-6"]
    assert total["valueQuantity"]["value"] == 12
    assert codes(total["interpretation"][0]) == [(SCORE_BANDS, "moderate")]
    assert any(n["text"].startswith("Prorated: 7 of 9") for n in total["note"])
    assert {w.expression for w in recorded.warnings if w.code == "required"} == {
        "QuestionnaireResponse.item[linkId='phq9-4']",
        "QuestionnaireResponse.item[linkId='phq9-6']"}


def test_vendor_questionnaire_in_the_store_is_scored_by_weights_and_expressions(store):
    from outcomes_support import VENDOR_SYSTEM, vendor_questionnaire, vendor_response

    store.update(vendor_questionnaire())
    # often (4) + sometimes (2) - often (4) = 2
    response = stored(store, vendor_response("often", "sometimes", "often"))
    recorded = outcomes.record_scores(store, response, now=NOW)
    assert recorded.result is not None and recorded.result.instrument is None
    found = {(o["code"]["coding"][0]["system"], o["code"]["coding"][0]["code"]): o
             for o in derived(store, response["id"])}
    assert set(found) == {(VENDOR_SYSTEM, "panel"), (VENDOR_SYSTEM, "score"), (VENDOR_SYSTEM, "w1")}
    assert found[(VENDOR_SYSTEM, "score")]["valueQuantity"]["value"] == 2
    assert found[(VENDOR_SYSTEM, "w1")]["valueCodeableConcept"]["coding"][0]["code"] == "often"


def test_unknown_questionnaire_is_a_warning_and_writes_nothing(store):
    response = stored(store, dict(instrument_response("phq-9", [1] * 9),
                                  questionnaire="http://example.org/Questionnaire/nope|9"))
    before = versions(store)
    recorded = outcomes.record_scores(store, response, now=NOW)
    assert not recorded.scored and recorded.written == 0 and versions(store) == before
    [warning] = recorded.warnings
    assert warning.severity == "warning" and warning.code == "not-found"
    assert "http://example.org/Questionnaire/nope|9" in warning.message


def test_a_version_not_stored_is_not_taken_from_another_version(store):
    response = stored(store, dict(instrument_response("phq-9", [1] * 9),
                                  questionnaire="http://hw-fhir.org/fhir/Questionnaire/phq-9|7.0"))
    recorded = outcomes.record_scores(store, response, now=NOW)
    assert not recorded.scored and derived(store, response["id"]) == []


def test_drafts_are_not_scored_and_entered_in_error_retracts(store):
    draft = stored(store, instrument_response("phq-9", [1] * 9, status="in-progress"))
    recorded = outcomes.record_scores(store, draft, now=NOW)
    assert not recorded.scored and not recorded.warnings and derived(store, draft["id"]) == []

    response = stored(store, instrument_response("phq-9", [1] * 9))
    outcomes.record_scores(store, response, now=NOW)
    gone = store.update(dict(store.read("QuestionnaireResponse", response["id"]).resource,
                             status="entered-in-error")).resource
    recorded = outcomes.record_scores(store, gone, now=LATER)
    assert len(recorded.retracted) == 11
    assert {o["status"] for o in derived(store, response["id"])} == {"entered-in-error"}


def test_a_failing_expression_names_the_item_and_expression(store):
    from outcomes_support import vendor_questionnaire, vendor_response

    broken = vendor_questionnaire()
    broken["item"][3]["extension"][0]["valueExpression"]["expression"] = "%nowhere.weight().sum()"
    store.update(broken)
    response = stored(store, vendor_response("often", "often", "never"))
    recorded = outcomes.record_scores(store, response, now=NOW)
    assert not recorded.scored and derived(store, response["id"]) == []
    assert any("'score'" in w.message and "%nowhere" in w.message for w in recorded.warnings)


def test_record_scores_refuses_what_is_not_a_stored_response(store):
    with pytest.raises(InvalidInput):
        outcomes.record_scores(store, {"resourceType": "Patient", "id": "x"})
    with pytest.raises(InvalidInput):
        outcomes.record_scores(store, instrument_response("phq-9", [0] * 9))


# -- safety ------------------------------------------------------------------------------------


def test_item_9_raises_a_flag_and_a_stat_alert_once(store):
    store.update({"resourceType": "Patient", "id": "pat-ava",
                  "generalPractitioner": [{"reference": "Practitioner/dr-rivera"}]})
    # item 9 alone positive: total 1 (minimal), but a risk
    response = stored(store, instrument_response("phq-9", [0, 0, 0, 0, 0, 0, 0, 0, 1]))
    recorded = outcomes.record_scores(store, response, now=NOW)
    rid = response["id"]
    assert recorded.risk_raised
    assert recorded.crisis == outcomes.crisis_resources(None, language="en")  # her language

    [flag] = iter_all(store, "Flag", [("subject", "Patient/pat-ava")])
    assert validate(flag) == flag and recorded.flags == (flag,)
    assert flag["status"] == "active"
    assert codes(flag["category"][0]) == [("http://terminology.hl7.org/CodeSystem/flag-category",
                                          "clinical")]
    assert codes(flag["category"][1]) == [(outcomes.LOCAL_FLAG_CATEGORY_SYSTEM, "self-harm-risk")]
    assert codes(flag["code"]) == [(outcomes.RISK_SYSTEM, "self-harm")]
    assert "item 9" in flag["code"]["text"] and "1 of 3" in flag["code"]["text"]
    assert flag["subject"] == {"reference": "Patient/pat-ava"}
    assert flag["author"] == {"reference": "Practitioner/dr-rivera"}
    assert flag["period"] == {"start": "2026-03-02T15:00:00Z"}
    assert flag["identifier"] == [{"system": outcomes.RISK_FLAG_SYSTEM,
                                   "value": f"{rid}/self-harm"}]
    assert flag["extension"] == [{"url": outcomes.FLAG_DETAIL_EXTENSION,
                                  "valueReference": {"reference": f"QuestionnaireResponse/{rid}"}},
                                 {"url": outcomes.FLAG_RAISED_EXTENSION,
                                  "valueDateTime": "2026-03-02T15:00:00Z"}]

    [alert] = iter_all(store, "CommunicationRequest", [("subject", "Patient/pat-ava")])
    assert validate(alert) == alert and recorded.alerts == (alert,)
    assert alert["status"] == "active" and alert["priority"] == "stat"
    assert codes(alert["category"][0]) == [(outcomes.COMMUNICATION_CATEGORY_SYSTEM, "risk-alert")]
    assert alert["subject"] == {"reference": "Patient/pat-ava"}
    assert alert["recipient"] == [{"reference": "Practitioner/dr-rivera"}]
    assert alert["about"] == [{"reference": f"Flag/{flag['id']}"},
                              {"reference": f"QuestionnaireResponse/{rid}"}]
    assert alert["authoredOn"] == "2026-03-02T15:00:00Z"
    assert alert["identifier"] == [{"system": outcomes.RISK_ALERT_SYSTEM,
                                    "value": f"{rid}/self-harm"}]
    assert "harm" not in alert["payload"][0]["contentString"]  # no clinical content on channels

    # the panel says why
    panel = by_code(derived(store, rid))["44249-1"]
    assert any("Thoughts of self-harm" in n["text"] for n in panel["note"])

    # scored again, amended with the risk still there: still one Flag and one alert
    outcomes.record_scores(store, recorded.response, now=LATER)
    amended = store.update(dict(instrument_response("phq-9", [1, 0, 0, 0, 0, 0, 0, 0, 2],
                                                    status="amended"), id=rid)).resource
    again = outcomes.record_scores(store, amended, now=LATER)
    assert [f["id"] for f in again.flags] == [flag["id"]]
    assert len(iter_all(store, "Flag", [])) == 1
    assert len(iter_all(store, "CommunicationRequest", [])) == 1
    assert outcomes.flags_for_response(store, amended) == [store.read("Flag", flag["id"]).resource]


def test_an_amendment_without_the_risk_leaves_the_flag_active(store):
    response = stored(store, instrument_response("phq-9", [0, 0, 0, 0, 0, 0, 0, 0, 3]))
    recorded = outcomes.record_scores(store, response, now=NOW)
    amended = store.update(dict(instrument_response("phq-9", [0] * 9, status="amended"),
                                id=response["id"])).resource
    again = outcomes.record_scores(store, amended, now=LATER)
    assert again.flags == () and again.crisis is None
    assert store.read("Flag", recorded.flags[0]["id"]).resource["status"] == "active"


def test_a_risk_without_a_known_clinician_is_still_flagged(store):
    response = stored(store, instrument_response("phq-9", [0, 0, 0, 0, 0, 0, 0, 0, 1]))
    recorded = outcomes.record_scores(store, response, now=NOW)
    [flag], [alert] = recorded.flags, recorded.alerts
    assert "author" not in flag and "recipient" not in alert
    assert any(w.code == "incomplete" for w in recorded.warnings)


def test_the_clinician_to_alert_is_found_from_task_plan_or_patient(store):
    from hw_fhir.completion import RESPONSE_TASK_SYSTEM

    store.update({"resourceType": "Patient", "id": "pat-ava",
                  "generalPractitioner": [{"reference": "Practitioner/dr-rivera"}]})
    sdc = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"

    def task(tid: str, patient: str, requester: str) -> None:
        store.update({"resourceType": "Task", "id": tid, "status": "requested", "intent": "order",
                      "code": {"coding": [{"system": sdc, "code": "complete-questionnaire"}]},
                      "for": {"reference": patient}, "requester": {"reference": requester}})

    task("t-ava", "Patient/pat-ava", "Practitioner/dr-lee")
    task("t-ben", "Patient/pat-ben", "Practitioner/dr-mal")
    store.update({"resourceType": "CarePlan", "id": "plan-ava", "status": "active",
                  "intent": "plan", "subject": {"reference": "Patient/pat-ava"},
                  "author": {"reference": "Practitioner/dr-kim"}})
    base = dict(instrument_response("phq-9", [0] * 9), id="r1")

    def answering(tid: str) -> dict[str, Any]:
        return dict(base, identifier={"system": RESPONSE_TASK_SYSTEM, "value": tid})

    assert outcomes.assigning_practitioner(store, answering("t-ava")) == "Practitioner/dr-lee"
    # a Task of another patient is not trusted: the patient's own clinician is alerted
    assert outcomes.assigning_practitioner(store, answering("t-ben")) == "Practitioner/dr-rivera"
    planned = dict(base, basedOn=[{"reference": "CarePlan/plan-ava"}])
    assert outcomes.assigning_practitioner(store, planned) == "Practitioner/dr-kim"
    assert outcomes.assigning_practitioner(store, base) == "Practitioner/dr-rivera"
    assert outcomes.assigning_practitioner(
        store, dict(base, subject={"reference": "Patient/pat-ben"})) is None


def test_a_response_scored_late_dates_its_flag_when_the_patient_answered(store):
    """Synced late or re-scored days later: Flag.period.start is the response's authored time
    (in UTC), the time it was raised is kept in the flag-raised extension, and the alert (whose
    escalation clock runs from it) is authored when it was raised."""
    response = stored(store, instrument_response("phq-9", [0, 0, 0, 0, 0, 0, 0, 0, 2],
                                                 authored="2026-02-27T21:40:00-05:00"))
    week_later = datetime(2026, 3, 6, 9, 0, tzinfo=timezone.utc)
    [recorded] = outcomes.rescore_since(store, "2026-01-01", now=week_later)
    [flag], [alert] = recorded.flags, recorded.alerts
    assert flag["period"] == {"start": "2026-02-28T02:40:00Z"}
    assert {"url": outcomes.FLAG_RAISED_EXTENSION,
            "valueDateTime": "2026-03-06T09:00:00Z"} in flag["extension"]
    assert alert["authoredOn"] == "2026-03-06T09:00:00Z"
    # a device clock ahead of the server is not believed; no time at all: when it was scored
    ahead = stored(store, instrument_response("phq-9", [0, 0, 0, 0, 0, 0, 0, 0, 1],
                                              authored="2026-03-09T10:00:00Z"))
    [flag] = outcomes.record_scores(store, ahead, now=week_later).flags
    assert flag["period"]["start"] == "2026-03-06T09:00:00Z"
    undated = stored(store, instrument_response("phq-9", [0, 0, 0, 0, 0, 0, 0, 0, 1],
                                                authored="2026-03-01"))
    [flag] = outcomes.record_scores(store, undated, now=week_later).flags
    assert flag["period"]["start"] == "2026-03-06T09:00:00Z"


def test_acknowledging_a_flag_ends_it_and_completes_its_alert(store):
    response = stored(store, instrument_response("phq-9", [0, 0, 0, 0, 0, 0, 0, 0, 2]))
    recorded = outcomes.record_scores(store, response, now=NOW)
    [flag], [alert] = recorded.flags, recorded.alerts

    done = outcomes.acknowledge_flag(store, flag["id"], "dr-rivera",
                                     "Called; safety plan reviewed.", now=LATER)
    assert validate(done) == done and done == store.read("Flag", flag["id"]).resource
    assert done["status"] == "inactive"
    assert done["period"] == {"start": "2026-03-02T15:00:00Z", "end": "2026-03-02T16:30:00Z"}
    [ack] = [e for e in done["extension"] if e["url"] == outcomes.ACKNOWLEDGEMENT_EXTENSION]
    assert ack["extension"] == [
        {"url": "by", "valueReference": {"reference": "Practitioner/dr-rivera"}},
        {"url": "at", "valueDateTime": "2026-03-02T16:30:00Z"},
        {"url": "note", "valueString": "Called; safety plan reviewed."}]
    closed = store.read("CommunicationRequest", alert["id"]).resource
    assert closed["status"] == "completed"
    assert closed["note"] == [{"authorReference": {"reference": "Practitioner/dr-rivera"},
                               "time": "2026-03-02T16:30:00Z",
                               "text": "Acknowledged by Practitioner/dr-rivera: "
                                       "Called; safety plan reviewed."}]
    assert outcomes.flags_for_response(store, response) == []
    assert outcomes.flags_for_response(store, response, active_only=False) == [done]

    # acknowledging again changes nothing; re-scoring does not raise the flag again
    before = versions(store)
    assert outcomes.acknowledge_flag(store, flag["id"], "dr-rivera", now=LATER) == done
    outcomes.record_scores(store, store.read("QuestionnaireResponse", response["id"]).resource,
                           now=LATER)
    assert versions(store) == before


def test_acknowledge_flag_errors(store):
    response = stored(store, instrument_response("phq-9", [0, 0, 0, 0, 0, 0, 0, 0, 1]))
    [flag] = outcomes.record_scores(store, response, now=NOW).flags
    with pytest.raises(InvalidInput):
        outcomes.acknowledge_flag(store, flag["id"], "Patient/pat-ava")
    with pytest.raises(NotFound):
        outcomes.acknowledge_flag(store, "no-such-flag", "dr-rivera")
    store.update(dict(store.read("Flag", flag["id"]).resource, status="entered-in-error"))
    with pytest.raises(BusinessRuleError):
        outcomes.acknowledge_flag(store, flag["id"], "dr-rivera")


# -- the completion path -----------------------------------------------------------------------


def phq9_task(store: Any) -> dict[str, Any]:
    return assign(store, Assignment(
        patient="pat-ava", practitioner="dr-rivera",
        activity="http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0",
        schedule=Schedule(frequency="once", start=date(2026, 3, 3), time_of_day=time(20, 0),
                          timezone="America/New_York")), now=NOW).task


def test_submitting_through_the_completion_path_scores_and_alerts_the_assigning_clinician(store):
    events = Events()
    listener = outcomes.subscribe(events)
    assert listener in events.listeners("response_completed")
    task = phq9_task(store)
    given = instrument_response("phq-9", [2, 2, 2, 2, 2, 2, 2, 2, 1])
    done = submit_response(store, task["id"], {"item": given["item"]}, patient="pat-ava",
                           events=events, now=NOW)
    rid = done.response["id"]
    total = by_code(derived(store, rid))["44261-6"]
    assert total["valueQuantity"]["value"] == 17  # 8 × 2 + 1 → moderately severe
    assert codes(total["interpretation"][0]) == [(SCORE_BANDS, "moderately-severe")]
    [flag] = outcomes.flags_for_response(store, done.response)
    assert flag["author"] == {"reference": "Practitioner/dr-rivera"}
    [alert] = iter_all(store, "CommunicationRequest", [("about", f"Flag/{flag['id']}")])
    assert alert["recipient"] == [{"reference": "Practitioner/dr-rivera"}]

    # amending re-scores the same Observations
    fixed = instrument_response("phq-9", [1, 1, 1, 1, 1, 1, 1, 1, 1])
    amend_response(store, task["id"], {"item": fixed["item"]}, patient="pat-ava", events=events,
                   now=LATER)
    after = derived(store, rid)
    assert len(after) == 11 and by_code(after)["44261-6"]["valueQuantity"]["value"] == 9
    assert len(iter_all(store, "Flag", [])) == 1


def test_a_scoring_failure_never_breaks_a_submission(store):
    from outcomes_support import VENDOR_URL, vendor_questionnaire, vendor_response

    broken = vendor_questionnaire()
    broken["item"][3]["extension"][0]["valueExpression"]["expression"] = "%nowhere.weight().sum()"
    store.update(broken)
    events = Events()
    outcomes.subscribe(events)
    task = assign(store, Assignment(
        patient="pat-ava", practitioner="dr-rivera", activity=f"{VENDOR_URL}|3.0",
        schedule=Schedule(frequency="once", start=date(2026, 3, 3), time_of_day=time(20, 0),
                          timezone="America/New_York")), now=NOW).task
    given = vendor_response("often", "often", "never")
    result = submit_response(store, task["id"], {"item": given["item"]}, patient="pat-ava",
                             events=events, now=NOW)
    assert result.response["status"] == "completed" and result.task["status"] == "completed"
    assert derived(store, result.response["id"]) == []

    # an error inside record_scores is logged and reported, never raised
    unstored = instrument_response("phq-9", [0] * 9)
    recorded = outcomes.score_quietly(store, unstored)
    assert not recorded.scored and [w.code for w in recorded.warnings] == ["exception"]


def test_rescore_since_catches_up_on_unscored_responses(store):
    a = stored(store, instrument_response("phq-9", [3, 3, 3, 0, 0, 0, 0, 0, 0]))
    b = stored(store, instrument_response("gad-7", [1, 1, 1, 1, 1, 1, 1]))
    stored(store, instrument_response("phq-9", [1] * 9, status="in-progress"))
    results = outcomes.rescore_since(store, "2000-01-01T00:00:00Z", now=NOW)
    assert sum(1 for r in results if r.scored) == 2
    assert by_code(derived(store, a["id"]))["44261-6"]["valueQuantity"]["value"] == 9
    assert by_code(derived(store, b["id"]))["70274-6"]["valueQuantity"]["value"] == 7
    before = versions(store)
    outcomes.rescore_since(store, "2000-01-01T00:00:00Z", now=LATER)
    assert versions(store) == before


# -- measurement-based care --------------------------------------------------------------------


def score_series(store: Any, instrument: str, series: list[tuple[str, list[int]]],
                 patient: str = "pat-ava") -> None:
    for authored, weights in series:
        response = stored(store, instrument_response(instrument, weights, patient=patient,
                                                     authored=authored))
        outcomes.record_scores(store, response, now=NOW)


def test_measure_history_and_progress(store):
    # PHQ-9: 18 → 12 → 4 (written out of order); GAD-7: 10 → 7
    score_series(store, "phq-9", [
        ("2026-02-02T10:00:00Z", [2, 2, 2, 2, 1, 1, 1, 1, 0]),   # 12
        ("2026-01-05T10:00:00Z", [2, 2, 2, 2, 2, 2, 2, 2, 2]),   # 18
        ("2026-03-02T10:00:00Z", [1, 1, 1, 1, 0, 0, 0, 0, 0]),   # 4
    ])
    score_series(store, "gad-7", [("2026-01-05T10:00:00Z", [2, 2, 2, 1, 1, 1, 1]),   # 10
                                  ("2026-03-02T10:00:00Z", [1, 1, 1, 1, 1, 1, 1])])  # 7
    # another patient's scores and a retracted score do not count
    score_series(store, "phq-9", [("2026-01-05T10:00:00Z", [3] * 9)], patient="pat-ben")
    extra = stored(store, instrument_response("phq-9", [3] * 9, authored="2026-03-01T10:00:00Z"))
    outcomes.record_scores(store, extra, now=NOW)
    current = store.read("QuestionnaireResponse", extra["id"]).resource
    retracted = store.update(dict(current, status="entered-in-error")).resource
    outcomes.record_scores(store, retracted, now=NOW)

    assert outcomes.measure_history(store, "Patient/pat-ava", "phq-9") == [
        ("2026-01-05T10:00:00Z", 18), ("2026-02-02T10:00:00Z", 12), ("2026-03-02T10:00:00Z", 4)]
    assert outcomes.measure_history(store, "pat-ava", "gad-7") == [
        ("2026-01-05T10:00:00Z", 10), ("2026-03-02T10:00:00Z", 7)]
    assert outcomes.measure_history(store, "pat-ava", "phq-2") == []

    progress = outcomes.patient_progress(store, "Patient/pat-ava")
    assert set(progress) == {"phq-9", "gad-7"}
    phq = progress["phq-9"]
    assert (phq.baseline.value, phq.latest.value, phq.change, phq.count) == (18, 4, -14, 3)
    assert phq.labels == ("response", "remission", "reliable-improvement")
    gad = progress["gad-7"]
    assert gad.change == -3 and gad.labels == ("no-reliable-change",)
    with pytest.raises(InvalidInput):
        outcomes.measure_history(store, "pat-ava", "bdi-ii")
    with pytest.raises(InvalidInput):
        outcomes.patient_progress(store, "pat-ava", ["phq-2"])


def test_scores_written_by_the_ehr_count_too(store):
    score_series(store, "phq-9", [("2026-01-05T10:00:00Z", [1, 1, 1, 1, 1, 0, 0, 0, 0])])  # 5
    store.create({"resourceType": "Observation", "status": "final", "category": [SURVEY],
                  "code": {"coding": [{"system": LOINC, "code": "44261-6"}]},
                  "subject": {"reference": "Patient/pat-ava"},
                  "effectiveDateTime": "2026-02-10", "valueInteger": 11})
    history = outcomes.measure_history(store, "pat-ava", "phq-9")
    assert history == [("2026-01-05T10:00:00Z", 5), ("2026-02-10", 11)]
    progress = outcomes.patient_progress(store, "pat-ava", ["phq-9"])["phq-9"]
    assert progress.labels == ("deterioration",)


def test_progress_parameters_shape(store):
    score_series(store, "phq-9", [("2026-01-05T10:00:00Z", [2, 2, 2, 2, 2, 2, 2, 2, 0]),    # 16
                                  ("2026-03-02T10:00:00Z", [1, 1, 1, 1, 1, 1, 1, 1, 0])])   # 8
    result = outcomes.measure_progress(store, "pat-ava")
    assert validate(result) == result
    subject, measure = result["parameter"]
    assert subject == {"name": "subject", "valueReference": {"reference": "Patient/pat-ava"}}
    parts = [(p["name"], next((v for k, v in p.items() if k.startswith("value")), None))
             for p in measure["part"]]
    assert parts[:3] == [("instrument", "phq-9"), ("code", {"system": LOINC, "code": "44261-6"}),
                         ("count", 2)]
    named = {n: v for n, v in parts if n not in ("label", "point")}
    assert named["change"] == -8 and named["percentChange"] == -50.0
    assert named["response"] is True and named["remission"] is False
    assert named["reliableChange"] is True and named["reliableImprovement"] is True
    assert named["deterioration"] is False
    assert [v for n, v in parts if n == "label"] == ["response", "reliable-improvement"]
    baseline = next(p for p in measure["part"] if p["name"] == "baseline")
    assert baseline["part"] == [{"name": "date", "valueDateTime": "2026-01-05T10:00:00Z"},
                                {"name": "value", "valueDecimal": 16}]
    points = [p for p in measure["part"] if p["name"] == "point"]
    assert [p["part"][1]["valueDecimal"] for p in points] == [16, 8]


# -- crisis resources --------------------------------------------------------------------------


def test_crisis_resources_default_to_988_and_911(tmp_path):
    info = outcomes.crisis_resources(load_settings({}, instance_path=str(tmp_path), secret_key="s"))
    assert "988" in info.text and "911" in info.text
    lifeline, emergency = info.contacts
    assert lifeline.links == (("Call 988", "tel:988"), ("Text 988", "sms:988"))
    assert emergency.links == (("Call 911", "tel:911"),)


def test_crisis_resources_are_configurable(tmp_path):
    settings = load_settings({}, instance_path=str(tmp_path), secret_key="s",
                             crisis_text="Need help now? Call Samaritans.",
                             extra={"crisis_contacts": [
                                 {"name": "Samaritans", "number": "116 123"},
                                 {"name": "Text line", "number": "+44 85258",
                                  "actions": ["text"]}]})
    info = outcomes.crisis_resources(settings)
    assert info.text == "Need help now? Call Samaritans."
    assert [c.links for c in info.contacts] == [(("Call 116 123", "tel:116123"),),
                                                (("Text +44 85258", "sms:+4485258"),)]
    for bad in ([{"name": "X"}], [{"name": "X", "number": "911", "actions": ["fax"]}], "988", []):
        with pytest.raises(ConfigurationError):
            outcomes.crisis_resources(load_settings({}, instance_path=str(tmp_path), secret_key="s",
                                                    extra={"crisis_contacts": bad}))
