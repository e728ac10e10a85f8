"""Completing homework: drafts, submission, amendment, validation against the exact version."""

from __future__ import annotations

import copy
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import pytest

from hw_fhir import library
from hw_fhir.assignment import Assignment, assign
from hw_fhir.completion import (
    RESPONSE_TASK_SYSTEM,
    amend_response,
    response_for_task,
    save_draft,
    submit_response,
)
from hw_fhir.errors import BusinessRuleError, Forbidden, InvalidResponse, VersionConflict
from hw_fhir.events import Events
from hw_fhir.models import validate
from hw_fhir.schedule import Schedule
from hw_fhir.store import iter_all

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
NY = "America/New_York"
SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
URL = "http://example.org/Questionnaire/practice-log"
FEEL = "urn:example:feeling"
EXT = "http://hl7.org/fhir/StructureDefinition/"
FORM: dict[str, Any] = {
    "resourceType": "Questionnaire",
    "url": URL,
    "version": "1.0.0",
    "status": "active",
    "title": "Practice log",
    "item": [
        {"linkId": "did-it", "type": "boolean", "text": "Did you practice?", "required": True},
        {
            "linkId": "minutes",
            "type": "integer",
            "text": "For how many minutes?",
            "required": True,
            "enableWhen": [{"question": "did-it", "operator": "=", "answerBoolean": True}],
            "extension": [
                {"url": EXT + "minValue", "valueInteger": 0},
                {"url": EXT + "maxValue", "valueInteger": 120},
            ],
        },
        {
            "linkId": "feeling",
            "type": "choice",
            "text": "How did it feel?",
            "answerOption": [
                {"valueCoding": {"system": FEEL, "code": "calm", "display": "Calm"}},
                {"valueCoding": {"system": FEEL, "code": "tense", "display": "Tense"}},
            ],
        },
        {
            "linkId": "why-not",
            "type": "string",
            "text": "What got in the way?",
            "enableWhen": [{"question": "did-it", "operator": "=", "answerBoolean": False}],
        },
    ],
}


def answer(link_id: str, **value: Any) -> dict[str, Any]:
    return {"linkId": link_id, "answer": [value]}


GOOD = {
    "item": [
        answer("did-it", valueBoolean=True),
        answer("minutes", valueInteger=20),
        answer("feeling", valueCoding={"system": FEEL, "code": "calm"}),
    ]
}


def snapshot(store: Any) -> set[tuple[str, str, str]]:
    """Every stored version, as (type, id, version): equal snapshots = nothing written."""
    return {(e.resource_type, e.id, e.version_id) for e in store.history(count=100000).entries}


@pytest.fixture
def store(sql_store):
    """A store holding the practice-log Questionnaire (and the catalog)."""
    library.load_catalog(sql_store)
    sql_store.create(FORM)
    return sql_store


@pytest.fixture
def events():
    """An event dispatcher recording every event as (name, kwargs)."""
    dispatcher = Events()
    dispatcher.log = []
    for name in (
        "task_created",
        "task_status_changed",
        "response_saved",
        "response_completed",
        "plan_created",
    ):
        dispatcher.subscribe(name, lambda name=name, **kw: dispatcher.log.append((name, kw)))
    return dispatcher


def one_off(
    store: Any,
    *,
    patient: str = "pat-ava",
    activity: str = f"{URL}|1.0.0",
    day: date = date(2026, 3, 3),
) -> dict[str, Any]:
    return assign(
        store,
        Assignment(
            patient=patient,
            practitioner="dr-rivera",
            activity=activity,
            schedule=Schedule(frequency="once", start=day, time_of_day=time(20, 0), timezone=NY),
        ),
        now=NOW,
    ).task


def coding(concept: dict[str, Any]) -> tuple[str, str]:
    return concept["coding"][0]["system"], concept["coding"][0]["code"]


# -- drafts and submission -------------------------------------------------------------------


def test_save_a_draft_then_submit(store, events):
    task = one_off(store)
    draft = save_draft(
        store,
        task["id"],
        {"item": [answer("did-it", valueBoolean=True)]},
        patient="pat-ava",
        events=events,
        now=NOW,
    )
    response = draft.response
    assert validate(response) == response
    assert response["status"] == "in-progress"
    assert response["questionnaire"] == f"{URL}|1.0.0"
    assert response["subject"] == {"reference": "Patient/pat-ava"}
    assert response["author"] == {"reference": "Patient/pat-ava"}
    assert response["authored"] == "2026-03-02T15:00:00Z"
    assert response["identifier"] == {"system": RESPONSE_TASK_SYSTEM, "value": task["id"]}
    assert "basedOn" not in response  # a one-off Task has no plan
    assert draft.task["status"] == "in-progress"
    assert draft.task["executionPeriod"] == {"start": "2026-03-02T15:00:00Z"}
    assert "output" not in draft.task
    assert [n for n, _ in events.log] == ["task_status_changed", "response_saved"]
    assert events.log[0][1]["previous_status"] == "requested"

    later = NOW + timedelta(hours=2)
    done = submit_response(store, task["id"], GOOD, patient="pat-ava", events=events, now=later)
    assert done.late is False
    response, task_after = done.response, done.task
    assert response["id"] == draft.response["id"]  # the draft became the answer
    assert response["meta"]["versionId"] == "2"
    assert response["status"] == "completed"
    assert validate(response) == response and validate(task_after) == task_after
    assert task_after["status"] == "completed"
    [output] = task_after["output"]
    assert coding(output["type"]) == (SDC_TEMP, "questionnaire-response")
    assert output["valueReference"] == {"reference": f"QuestionnaireResponse/{response['id']}"}
    assert task_after["executionPeriod"] == {
        "start": "2026-03-02T15:00:00Z",
        "end": "2026-03-02T17:00:00Z",
    }
    assert coding(task_after["businessStatus"]) == (
        "http://hw-fhir.org/fhir/CodeSystem/task-business-status",
        "on-time",
    )
    assert len(iter_all(store, "QuestionnaireResponse", [("subject", "Patient/pat-ava")])) == 1
    assert [n for n, _ in events.log][2:] == ["task_status_changed", "response_completed"]
    completed = events.log[-1][1]
    assert completed["amended"] is False and completed["response"] == response
    assert completed["questionnaire"]["url"] == URL and completed["task"] == task_after


def test_submit_without_a_draft_and_late(store):
    task = one_off(store)
    late_at = datetime(2026, 3, 4, 3, 0, tzinfo=timezone.utc)  # due 4 March 01:00Z
    done = submit_response(store, task["id"], GOOD, patient="pat-ava", now=late_at)
    assert done.late is True
    assert done.task["businessStatus"]["coding"][0]["code"] == "late"
    assert done.task["executionPeriod"] == {
        "start": "2026-03-04T03:00:00Z",
        "end": "2026-03-04T03:00:00Z",
    }
    output_ref = done.task["output"][0]["valueReference"]["reference"]
    assert output_ref == f"QuestionnaireResponse/{done.response['id']}"
    assert response_for_task(store, task["id"]) == done.response


def test_a_plan_occurrence_response_is_based_on_the_careplan(store):
    result = assign(
        store,
        Assignment(
            patient="pat-ava",
            practitioner="dr-rivera",
            activity=f"{URL}|1.0.0",
            schedule=Schedule(
                frequency="daily",
                start=date(2026, 3, 2),
                time_of_day=time(20, 0),
                timezone=NY,
                count=3,
            ),
        ),
        now=NOW,
        horizon_days=2,
    )
    task = result.tasks[0]
    done = submit_response(store, task["id"], GOOD, patient="pat-ava", now=NOW)
    assert done.response["basedOn"] == [{"reference": f"CarePlan/{result.plan['id']}"}]


def test_drafts_may_be_incomplete_but_not_wrong(store):
    task = one_off(store)
    empty = save_draft(store, task["id"], {"item": []}, patient="pat-ava", now=NOW)
    assert empty.response["status"] == "in-progress"
    before = snapshot(store)
    with pytest.raises(InvalidResponse) as caught:
        save_draft(
            store,
            task["id"],
            {"item": [answer("minutes", valueString="ten")]},
            patient="pat-ava",
            now=NOW,
        )
    assert any("minutes" in (i.expression or "") for i in caught.value.issues)
    assert snapshot(store) == before


# -- invalid responses ----------------------------------------------------------------------

INVALID = [
    ("wrong type", {"item": [answer("did-it", valueString="yes")]}, "did-it"),
    ("missing required", {"item": [answer("did-it", valueBoolean=True)]}, "minutes"),
    (
        "answer to a disabled item",
        {
            "item": [
                answer("did-it", valueBoolean=True),
                answer("minutes", valueInteger=5),
                answer("why-not", valueString="tired"),
            ]
        },
        "why-not",
    ),
    (
        "value not in answerOption",
        {
            "item": [
                answer("did-it", valueBoolean=False),
                answer("feeling", valueCoding={"system": FEEL, "code": "angry"}),
            ]
        },
        "feeling",
    ),
    (
        "text for an integer",
        {"item": [answer("did-it", valueBoolean=True), answer("minutes", valueString="ten")]},
        "minutes",
    ),
    (
        "above maxValue",
        {"item": [answer("did-it", valueBoolean=True), answer("minutes", valueInteger=500)]},
        "minutes",
    ),
    (
        "unknown item",
        {"item": [answer("did-it", valueBoolean=False), answer("extra", valueString="?")]},
        "extra",
    ),
    (
        "another questionnaire version",
        dict(GOOD, questionnaire=f"{URL}|0.9.0"),
        "QuestionnaireResponse.questionnaire",
    ),
    (
        "another questionnaire",
        dict(GOOD, questionnaire="http://example.org/Questionnaire/x|1"),
        "QuestionnaireResponse.questionnaire",
    ),
]


@pytest.mark.parametrize("name,response,where", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_responses_are_rejected_per_item_and_nothing_is_stored(
    store, events, name, response, where
):
    task = one_off(store)
    save_draft(
        store,
        task["id"],
        {"item": [answer("did-it", valueBoolean=True)]},
        patient="pat-ava",
        now=NOW,
    )
    events.log.clear()
    before = snapshot(store)
    with pytest.raises(InvalidResponse) as caught:
        submit_response(store, task["id"], response, patient="pat-ava", events=events, now=NOW)
    error = caught.value
    assert error.status == 422
    assert error.issues and all(i.message for i in error.issues)
    assert any(where in (i.expression or "") for i in error.issues), error.issues
    assert error.outcome["resourceType"] == "OperationOutcome"
    assert snapshot(store) == before
    assert store.read("Task", task["id"]).resource["status"] == "in-progress"
    assert response_for_task(store, task["id"])["status"] == "in-progress"
    assert events.log == []


def test_validation_uses_the_exact_version_the_task_names(store):
    v2 = copy.deepcopy(FORM)
    v2["version"] = "2.0.0"
    v2["item"].append({"linkId": "extra", "type": "string", "text": "Anything else?"})
    store.create(v2)
    task = one_off(store)  # names 1.0.0
    with_extra = {"item": GOOD["item"] + [answer("extra", valueString="no")]}
    before = snapshot(store)
    with pytest.raises(InvalidResponse) as caught:
        submit_response(store, task["id"], with_extra, patient="pat-ava", now=NOW)
    assert any("extra" in (i.expression or "") for i in caught.value.issues)
    with pytest.raises(InvalidResponse):
        submit_response(
            store, task["id"], dict(GOOD, questionnaire=f"{URL}|2.0.0"), patient="pat-ava", now=NOW
        )
    assert snapshot(store) == before
    done = submit_response(store, task["id"], GOOD, patient="pat-ava", now=NOW)
    assert done.response["questionnaire"] == f"{URL}|1.0.0"
    newer = one_off(store, activity=f"{URL}|2.0.0")
    assert (
        submit_response(store, newer["id"], with_extra, patient="pat-ava", now=NOW).response[
            "questionnaire"
        ]
        == f"{URL}|2.0.0"
    )


def test_only_the_patient_of_the_task_can_answer(store):
    task = one_off(store)
    before = snapshot(store)
    with pytest.raises(Forbidden):
        submit_response(store, task["id"], GOOD, patient="pat-ben", now=NOW)
    with pytest.raises(Forbidden):
        save_draft(store, task["id"], GOOD, patient="Patient/pat-ben", now=NOW)
    with pytest.raises(Forbidden):
        submit_response(
            store,
            task["id"],
            dict(GOOD, subject={"reference": "Patient/pat-ben"}),
            patient="pat-ava",
            now=NOW,
        )
    assert snapshot(store) == before


def test_closed_tasks_cannot_be_answered(store):
    task = one_off(store)
    submit_response(store, task["id"], GOOD, patient="pat-ava", now=NOW)
    before = snapshot(store)
    with pytest.raises(BusinessRuleError, match="amend"):
        submit_response(store, task["id"], GOOD, patient="pat-ava", now=NOW)
    with pytest.raises(BusinessRuleError, match="amend"):
        save_draft(store, task["id"], GOOD, patient="pat-ava", now=NOW)
    cancelled = one_off(store)
    from hw_fhir.assignment import cancel_assignment

    cancel_assignment(store, f"Task/{cancelled['id']}", now=NOW)
    after_cancel = snapshot(store)
    assert after_cancel - before  # the cancellation was written
    with pytest.raises(BusinessRuleError, match="cancelled"):
        submit_response(store, cancelled["id"], GOOD, patient="pat-ava", now=NOW)
    assert snapshot(store) == after_cancel


# -- amendment ---------------------------------------------------------------------------


def test_amend_keeps_the_earlier_version(store, events):
    task = one_off(store)
    first = submit_response(store, task["id"], GOOD, patient="pat-ava", now=NOW).response
    changed = {"item": [answer("did-it", valueBoolean=True), answer("minutes", valueInteger=35)]}
    later = NOW + timedelta(days=1)
    amended = amend_response(
        store, task["id"], changed, patient="pat-ava", events=events, now=later
    )
    response = amended.response
    assert response["id"] == first["id"]
    assert response["status"] == "amended"
    assert response["authored"] == "2026-03-03T15:00:00Z"
    assert validate(response) == response
    old = store.vread("QuestionnaireResponse", first["id"], first["meta"]["versionId"]).resource
    assert old["status"] == "completed"
    assert old["item"] == GOOD["item"]
    history = store.history("QuestionnaireResponse", first["id"]).entries
    assert [e.resource["status"] for e in reversed(history)] == ["completed", "amended"]
    assert store.read("Task", task["id"]).resource["status"] == "completed"
    assert events.log[-1][0] == "response_completed" and events.log[-1][1]["amended"] is True
    before = snapshot(store)
    with pytest.raises(InvalidResponse):
        amend_response(
            store,
            task["id"],
            {"item": [answer("did-it", valueBoolean=True)]},
            patient="pat-ava",
            now=later,
        )
    with pytest.raises(Forbidden):
        amend_response(store, task["id"], changed, patient="pat-ben", now=later)
    assert snapshot(store) == before


def test_only_submitted_responses_are_amended(store):
    task = one_off(store)
    save_draft(store, task["id"], {"item": []}, patient="pat-ava", now=NOW)
    with pytest.raises(BusinessRuleError, match="only a submitted"):
        amend_response(store, task["id"], GOOD, patient="pat-ava", now=NOW)


# -- one transaction ----------------------------------------------------------------------


class RacingStore:
    """The real store, where someone else changes the Task just before each transaction."""

    def __init__(self, store: Any, task_id: str) -> None:
        self.store = store
        self.task_id = task_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        task = self.store.read("Task", self.task_id).resource
        self.store.update(dict(task, businessStatus={"text": "reminded"}))
        return self.store.transaction(bundle)


def test_a_concurrent_task_change_writes_nothing_half(store):
    task = one_off(store)
    racing = RacingStore(store, task["id"])
    with pytest.raises(VersionConflict):
        submit_response(racing, task["id"], GOOD, patient="pat-ava", now=NOW)
    assert response_for_task(store, task["id"]) is None
    assert iter_all(store, "QuestionnaireResponse") == []
    stored = store.read("Task", task["id"]).resource
    assert stored["status"] == "requested" and stored["businessStatus"] == {"text": "reminded"}
    assert (
        submit_response(store, task["id"], GOOD, patient="pat-ava", now=NOW).task["status"]
        == "completed"
    )


def test_a_task_pointing_at_its_questionnaire_by_focus(store):
    questionnaire = library.resolve_questionnaire(store, f"{URL}|1.0.0")
    task = store.create(
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "code": {"coding": [{"system": SDC_TEMP, "code": "complete-questionnaire"}]},
            "focus": {"reference": f"Questionnaire/{questionnaire['id']}"},
            "for": {"reference": "Patient/pat-ava"},
            "authoredOn": "2026-03-01T00:00:00Z",
            "requester": {"reference": "Practitioner/dr-rivera"},
        }
    ).resource
    done = submit_response(store, task["id"], GOOD, patient="pat-ava", now=NOW)
    assert done.response["questionnaire"] == f"{URL}|1.0.0"
    assert done.late is False
    with pytest.raises(InvalidResponse):
        submit_response(
            store,
            one_off(store)["id"],
            {"item": [answer("minutes", valueInteger=3)]},
            patient="pat-ava",
            now=NOW,
        )
