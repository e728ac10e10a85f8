"""TaskFacts: what the review pages read of a Task, kept per stored version."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from hw_fhir.adherence import TaskFacts, summarize_tasks, task_facts
from hw_fhir.assignment import COMPLETE_QUESTIONNAIRE, SDC_TEMP_SYSTEM
from hw_fhir.store import SqlStore, open_store

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
BUSINESS = "http://hw-fhir.org/fhir/CodeSystem/task-business-status"


def _task(id: str, status: str, due: str | None, **extra: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": id,
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": SDC_TEMP_SYSTEM, "code": COMPLETE_QUESTIONNAIRE}]},
        "for": {"reference": "Patient/p1"},
    }
    if due:
        task["restriction"] = {"period": {"end": due}}
    task.update(extra)
    return task


TASKS = [
    _task("a", "completed", "2026-03-01T20:00:00Z",
          executionPeriod={"end": "2026-03-01T19:00:00Z"}),
    _task("b", "completed", "2026-03-02T20:00:00Z",
          executionPeriod={"end": "2026-03-03T08:00:00Z"}),  # late by its end time
    _task("c", "completed", "2026-03-03T20:00:00Z",
          businessStatus={"coding": [{"system": BUSINESS, "code": "late"}]}),
    _task("d", "failed", "2026-03-04T20:00:00Z"),
    _task("e", "requested", "2026-03-09T20:00:00Z"),  # overdue
    _task("f", "requested", "2026-03-20T20:00:00Z"),  # upcoming
    _task("g", "cancelled", "2026-03-05T20:00:00Z"),
    _task("h", "completed", None, executionPeriod={"end": "2026-03-06T08:00:00Z"}),
    _task("i", "completed", "2026-03-07T20:00:00Z",
          executionPeriod={"end": "2026-03-07T10:00:00+02:00"}),
]


def test_facts_count_exactly_like_the_resources() -> None:
    from_resources = summarize_tasks(TASKS, now=NOW)
    from_facts = summarize_tasks([TaskFacts.of(t) for t in TASKS], now=NOW)
    assert from_facts == from_resources
    assert (from_facts.on_time, from_facts.late, from_facts.missed) == (3, 2, 1)
    assert (from_facts.overdue, from_facts.upcoming, from_facts.cancelled) == (1, 1, 1)
    assert from_facts.last_completed == "2026-03-07T10:00:00+02:00"
    # newest first: e (overdue, skipped), i, h (no due: counted when finished), d (missed)
    assert from_facts.current_streak == 2


def test_facts_read_plan_activity_response_and_canonical() -> None:
    facts = TaskFacts.of(
        _task(
            "x",
            "completed",
            "2026-03-01T20:00:00Z",
            basedOn=[{"reference": "Goal/1"}, {"reference": "CarePlan/plan-1"}],
            identifier=[
                {"system": "http://hw-fhir.org/fhir/sid/task-occurrence",
                 "value": "plan-1/2/2026-03-01"}
            ],
            input=[{"type": {"coding": [{"system": SDC_TEMP_SYSTEM, "code": "questionnaire"}]},
                    "valueCanonical": "http://example.org/Questionnaire/q|1"}],
            output=[{"type": {"text": "response"},
                     "valueReference": {"reference": "QuestionnaireResponse/r1"}}],
        )
    )
    assert facts.plan == "CarePlan/plan-1"
    assert facts.activity == 2
    assert facts.canonical == "http://example.org/Questionnaire/q|1"
    assert facts.response == "QuestionnaireResponse/r1"
    assert facts.subject == "Patient/p1"
    assert facts.homework and facts.ref == "Task/x"
    assert not TaskFacts.of({**TASKS[0], "code": {"text": "something else"}}).homework
    assert facts.based and facts.due_text == "2026-03-01T20:00:00Z"
    assert not TaskFacts.of(TASKS[0]).based


def test_facts_know_when_a_window_opens() -> None:
    ahead = TaskFacts.of(
        _task("later", "requested", "2026-03-20T20:00:00+01:00",
              restriction={"period": {"start": "2026-03-19T08:00:00+01:00",
                                      "end": "2026-03-20T20:00:00+01:00"}})
    )
    assert ahead.opens == "2026-03-19T08:00:00+01:00"
    assert ahead.due_text == "2026-03-20T20:00:00+01:00"  # as written, not normalised
    assert not ahead.opened(NOW)
    assert ahead.opened(datetime(2026, 3, 19, 7, 0, tzinfo=timezone.utc))
    # a closed Task counts as opened whatever its window; one with no start is open
    assert TaskFacts.of({**TASKS[0], "restriction": {"period": {"start": "2027-01-01"}}}).opened(
        NOW
    )
    assert TaskFacts.of(TASKS[4]).opened(NOW)


def _put(store: SqlStore, task: dict[str, Any]) -> None:
    store.update(task)


def test_each_version_is_parsed_once_and_a_new_version_is_read_again(sql_store: SqlStore) -> None:
    for task in TASKS[:3]:
        _put(sql_store, task)
    first = task_facts(sql_store, sql_store.search("Task", [("_count", "10")]).matches)
    assert {f.id for f, _ in first} == {"a", "b", "c"}
    again = task_facts(sql_store, sql_store.search("Task", [("_count", "10")]).matches)
    assert [f for f, _ in again] == [f for f, _ in first]
    assert all(stored._parsed is None for _, stored in again)  # not parsed a second time
    _put(sql_store, {**TASKS[0], "status": "cancelled"})
    third = {f.id: f for f, _ in task_facts(
        sql_store, sql_store.search("Task", [("_count", "10")]).matches
    )}
    assert third["a"].status == "cancelled"
    assert summarize_tasks(list(third.values()), now=NOW).cancelled == 1


def test_stores_do_not_share_facts(tmp_path: Any) -> None:
    one = open_store(f"sqlite:///{tmp_path}/one.db")
    two = open_store(f"sqlite:///{tmp_path}/two.db")
    try:
        _put(one, _task("same", "completed", "2026-03-01T20:00:00Z"))
        _put(two, _task("same", "failed", "2026-03-01T20:00:00Z"))  # same id, same version
        facts_one = task_facts(one, one.search("Task").matches)[0][0]
        facts_two = task_facts(two, two.search("Task").matches)[0][0]
        assert (facts_one.status, facts_two.status) == ("completed", "failed")
    finally:
        one.dispose()
        two.dispose()


def test_reading_a_tasks_facts_costs_a_few_python_calls() -> None:
    """A worker's first dashboard reads the facts of a patient's 1 000 Tasks: each costs
    the shared field readers' calls and no generator steps (was about 13 a Task).
    Calls, not time: counted with ``sys.setprofile``."""
    import sys

    occurrence = _task(
        "g", "completed", "2026-03-05T20:00:00Z",
        basedOn=[{"reference": "CarePlan/plan-1"}],
        identifier=[{"system": "http://hw-fhir.org/fhir/sid/task-occurrence",
                     "value": "plan-1/0/2026-03-05/0"}],
        input=[{"type": {"coding": [{"system": SDC_TEMP_SYSTEM, "code": "questionnaire"}]},
                "valueCanonical": "http://example.org/Questionnaire/q|1"}],
        output=[{"type": {"coding": [{"system": SDC_TEMP_SYSTEM,
                                      "code": "questionnaire-response"}]},
                 "valueReference": {"reference": "QuestionnaireResponse/r1"}}],
        businessStatus={"coding": [{"system": BUSINESS, "code": "on-time"}]},
        executionPeriod={"end": "2026-03-05T19:00:00Z"},
    )
    calls = 0

    def count(_frame: Any, event: str, _arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        facts = TaskFacts.of(occurrence)
    finally:
        sys.setprofile(None)
    assert (facts.plan, facts.response, facts.homework, facts.activity) == (
        "CarePlan/plan-1", "QuestionnaireResponse/r1", True, 0)
    assert calls <= 9, calls
