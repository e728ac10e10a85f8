"""Recurring plans and pathways: materializer, overdue sweep, step release, pause, skip, stop."""

from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hw_fhir import library
from hw_fhir.assignment import (
    BUSINESS_STATUS_SYSTEM,
    TASK_OCCURRENCE_SYSTEM,
    Assignment,
    assign,
    parse_instant,
)
from hw_fhir.completion import save_draft, submit_response
from hw_fhir.config import Settings
from hw_fhir.errors import BusinessRuleError, InvalidInput, NotFound
from hw_fhir.events import Events
from hw_fhir.models import validate
from hw_fhir.plans import (
    EXT_PATHWAY_STEP,
    PATHWAY_BASE,
    advance_plan,
    assign_pathway,
    cancel_plan,
    completion_listener,
    materialize,
    pathway_step,
    pause_plan,
    resume_plan,
    run_scheduler,
    skip_step,
    sweep_overdue,
)
from hw_fhir.schedule import Schedule
from hw_fhir.store import iter_all

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
NY = "America/New_York"
BERLIN = "Europe/Berlin"
MOOD_LOG = "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0"
MOOD_ANSWERS = {
    "item": [
        {"linkId": "date", "answer": [{"valueDate": "2026-03-02"}]},
        {"linkId": "mood", "answer": [{"valueInteger": 6}]},
    ]
}


def snapshot(store: Any) -> set[tuple[str, str, str]]:
    """Every stored version, as (type, id, version): equal snapshots = nothing written."""
    return {(e.resource_type, e.id, e.version_id) for e in store.history(count=100000).entries}


@pytest.fixture
def store(sql_store):
    """A store with the shipped catalog loaded."""
    library.load_catalog(sql_store)
    return sql_store


def daily(start: date = date(2026, 3, 2), **changes: Any) -> Schedule:
    values: dict[str, Any] = dict(
        frequency="daily", start=start, time_of_day=time(20, 0), timezone=NY
    )
    values.update(changes)
    return Schedule(**values)


def plan_of(
    store: Any,
    schedule: Schedule,
    *,
    now: datetime = NOW,
    horizon: int = 3,
    activity: str = MOOD_LOG,
) -> dict[str, Any]:
    result = assign(
        store,
        Assignment(
            patient="pat-ava", practitioner="dr-rivera", activity=activity, schedule=schedule
        ),
        now=now,
        horizon_days=horizon,
    )
    return result.plan


def tasks_of(store: Any, plan_id: str) -> list[dict[str, Any]]:
    found = iter_all(store, "Task", [("based-on", f"CarePlan/{plan_id}")])
    return sorted(found, key=lambda t: t["restriction"]["period"]["end"])


def key(task: dict[str, Any]) -> str:
    """The occurrence part of a Task's identifier: ``<activity>/<date>/<sequence>``."""
    return task["identifier"][0]["value"].split("/", 1)[1]


def due(task: dict[str, Any]) -> datetime:
    return parse_instant(task["restriction"]["period"]["end"])


# -- materializer ---------------------------------------------------------------------------


def test_materializer_is_idempotent(store):
    plan = plan_of(store, daily())
    first = tasks_of(store, plan["id"])
    assert [key(t) for t in first] == ["0/2026-03-02/1", "0/2026-03-03/2", "0/2026-03-04/3"]
    before = snapshot(store)
    assert materialize(store, now=NOW, horizon_days=3) == []
    assert materialize(store, now=NOW, horizon_days=3) == []
    assert snapshot(store) == before


def test_materializer_creates_exactly_the_occurrences_entering_the_horizon(store):
    events = Events()
    created: list[dict[str, Any]] = []
    events.subscribe("task_created", lambda task: created.append(task))
    plan = plan_of(store, daily(count=6))
    later = NOW + timedelta(days=2)
    new = materialize(store, now=later, horizon_days=3, events=events)
    assert [key(t) for t in sorted(new, key=due)] == ["0/2026-03-05/4", "0/2026-03-06/5"]
    assert created == new
    for task in new:
        assert validate(task) == task
        assert task["identifier"][0]["system"] == TASK_OCCURRENCE_SYSTEM
    assert [key(t) for t in materialize(store, now=later + timedelta(days=1), horizon_days=3)] == [
        "0/2026-03-07/6"
    ]
    assert materialize(store, now=later + timedelta(days=30), horizon_days=3) == []
    keys = [key(t) for t in tasks_of(store, plan["id"])]
    assert keys == sorted(set(keys)) and len(keys) == 6  # count 6: never more


def test_concurrent_materializers_create_each_task_once(store):
    plan = plan_of(store, daily(), horizon=1)
    later = NOW + timedelta(days=1)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            materialize(store, now=later, horizon_days=10)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert materialize(store, now=later, horizon_days=10) == []
    keys = [key(t) for t in tasks_of(store, plan["id"])]
    assert len(keys) == len(set(keys)) == 11


def test_daily_tasks_keep_their_local_time_across_daylight_saving(store):
    schedule = daily(start=date(2026, 3, 26), timezone=BERLIN, count=6)
    now = datetime(2026, 3, 25, 12, 0, tzinfo=timezone.utc)
    plan = plan_of(store, schedule, now=now, horizon=10)
    dues = [due(t) for t in tasks_of(store, plan["id"])]
    assert [d.astimezone(ZoneInfo(BERLIN)).hour for d in dues] == [20] * 6
    assert [d.hour for d in dues] == [19, 19, 19, 18, 18, 18]  # CET, then CEST from 29 March


def test_occurrences_before_assignment_are_not_created(store):
    plan = plan_of(store, daily(start=date(2026, 2, 20)), now=NOW)
    assert key(tasks_of(store, plan["id"])[0]) == "0/2026-03-02/11"


# -- overdue sweep -----------------------------------------------------------------------------


def test_overdue_sweep_fails_unfinished_tasks_after_the_grace(store):
    plan = plan_of(store, daily(count=3))
    first, second, third = tasks_of(store, plan["id"])
    save_draft(store, second["id"], {"item": []}, patient="pat-ava", now=NOW)
    submit_response(store, third["id"], MOOD_ANSWERS, patient="pat-ava", now=NOW)
    events = Events()
    changes: list[tuple[str, str]] = []
    events.subscribe(
        "task_status_changed",
        lambda task, previous_status: changes.append((task["id"], previous_status)),
    )
    # first is due 3 March 01:00Z: within the 24 h grace at 2 March 23:00Z + 1 day
    assert sweep_overdue(store, now=due(first) + timedelta(hours=23), grace_hours=24) == []
    failed = sweep_overdue(
        store, now=due(second) + timedelta(hours=25), grace_hours=24, events=events
    )
    assert sorted(t["id"] for t in failed) == sorted([first["id"], second["id"]])
    for task in failed:
        assert task["status"] == "failed"
        assert task["businessStatus"]["coding"][0]["system"] == BUSINESS_STATUS_SYSTEM
        assert task["businessStatus"]["coding"][0]["code"] == "missed"
        assert validate(task) == task
    assert sorted(changes) == sorted([(first["id"], "requested"), (second["id"], "in-progress")])
    assert store.read("Task", third["id"]).resource["status"] == "completed"
    assert sweep_overdue(store, now=due(third) + timedelta(days=5), grace_hours=24) == []


def test_late_completion_is_allowed_until_the_sweep_closes_the_task(store):
    plan = plan_of(store, daily(count=2))
    first, second = tasks_of(store, plan["id"])
    late = submit_response(
        store, first["id"], MOOD_ANSWERS, patient="pat-ava", now=due(first) + timedelta(hours=3)
    )
    assert late.late and late.task["businessStatus"]["coding"][0]["code"] == "late"
    run_scheduler(store, now=due(second) + timedelta(hours=30), grace_hours=24)
    assert store.read("Task", second["id"]).resource["status"] == "failed"
    before = snapshot(store)
    with pytest.raises(BusinessRuleError, match="not completed in time"):
        submit_response(
            store,
            second["id"],
            MOOD_ANSWERS,
            patient="pat-ava",
            now=due(second) + timedelta(hours=31),
        )
    assert snapshot(store) == before


# -- plans end ------------------------------------------------------------------------------


def test_a_finished_plan_completes(store):
    plan = plan_of(store, daily(count=2))
    first, second = tasks_of(store, plan["id"])
    submit_response(store, first["id"], MOOD_ANSWERS, patient="pat-ava", now=NOW)
    run = run_scheduler(store, now=NOW + timedelta(hours=1))
    assert run.completed_plans == ()
    submit_response(store, second["id"], MOOD_ANSWERS, patient="pat-ava", now=NOW)
    run = run_scheduler(store, now=NOW + timedelta(hours=2))
    assert run.completed_plans == (plan["id"],)
    stored = store.read("CarePlan", plan["id"]).resource
    assert stored["status"] == "completed"
    assert stored["activity"][0]["detail"]["status"] == "completed"


# -- pathways -------------------------------------------------------------------------------


def test_pathway_becomes_one_ordered_careplan(store):
    result = assign_pathway(
        store,
        "panic-breathing-interoceptive-exposure",
        patient="pat-ben",
        practitioner="dr-rivera",
        start=date(2026, 3, 2),
        timezone=BERLIN,
        time_of_day=time(18, 0),
        now=NOW,
    )
    plan = result.plan
    assert validate(plan) == plan
    assert plan["instantiatesUri"] == [f"{PATHWAY_BASE}/panic-breathing-interoceptive-exposure"]
    assert plan["status"] == "active" and plan["intent"] == "plan"
    assert plan["subject"] == {"reference": "Patient/pat-ben"}
    assert plan["author"] == {"reference": "Practitioner/dr-rivera"}
    canonicals = [a["detail"]["instantiatesCanonical"][0].split("/")[-1] for a in plan["activity"]]
    assert canonicals == [
        "audio-understanding-panic|1.0.0",
        "paced-breathing|1.0.0",
        "interoceptive-exposure|1.0.0",
    ]
    assert [a["detail"]["status"] for a in plan["activity"]] == [
        "scheduled",
        "not-started",
        "not-started",
    ]
    steps = [pathway_step(a) for a in plan["activity"]]
    assert [s["sequence"] for s in steps] == [1, 2, 3]
    assert steps[0]["delayDays"] == 0 and steps[1]["afterPrevious"] is True
    assert all(s["required"] is True for s in steps)
    assert "releasedAt" in steps[0] and "releasedAt" not in steps[1]
    assert all(
        e["url"] == EXT_PATHWAY_STEP
        for a in plan["activity"]
        for e in a["extension"]
        if "extension" in e
    )
    [task] = result.tasks
    assert task["input"][0]["valueCanonical"].endswith("audio-understanding-panic|1.0.0")
    assert due(task).astimezone(ZoneInfo(BERLIN)) == datetime(
        2026, 3, 2, 18, 0, tzinfo=ZoneInfo(BERLIN)
    )


def test_the_next_pathway_step_is_released_when_the_previous_one_is_done(store):
    result = assign_pathway(
        store,
        "panic-breathing-interoceptive-exposure",
        patient="pat-ben",
        practitioner="dr-rivera",
        start=date(2026, 3, 2),
        timezone=BERLIN,
        now=NOW,
        horizon_days=3,
    )
    plan_id = result.plan["id"]
    # 9:00 Berlin has passed at 15:00 UTC: the one-off first step moves to the next day
    [audio] = result.tasks
    assert audio["restriction"]["period"]["end"] == "2026-03-03T08:00:00Z"
    assert run_scheduler(store, now=NOW + timedelta(hours=1), horizon_days=3).released == ()
    q = library.resolve_questionnaire(store, audio["input"][0]["valueCanonical"])
    answers = {
        "item": [
            {"linkId": i["linkId"], "answer": [{"valueBoolean": True}]}
            for i in q["item"]
            if i["type"] == "boolean" and i.get("required")
        ]
    }
    done_at = datetime(2026, 3, 2, 19, 0, tzinfo=timezone.utc)  # 20:00 in Berlin
    submit_response(store, audio["id"], answers, patient="pat-ben", now=done_at)
    run = run_scheduler(store, now=done_at + timedelta(minutes=5), horizon_days=3)
    assert run.released == (f"CarePlan/{plan_id}#1",)
    plan = store.read("CarePlan", plan_id).resource
    assert [a["detail"]["status"] for a in plan["activity"]] == [
        "completed",
        "scheduled",
        "not-started",
    ]
    timing = plan["activity"][1]["detail"]["scheduledTiming"]
    assert timing["repeat"]["boundsPeriod"]["start"] == "2026-03-03"  # 9:00 today has passed
    assert "releasedAt" in pathway_step(plan["activity"][1])
    breathing = [t for t in tasks_of(store, plan_id) if key(t).startswith("1/")]
    assert [key(t) for t in breathing] == ["1/2026-03-03/1", "1/2026-03-04/2", "1/2026-03-05/3"]
    assert {t["id"] for t in run.created} == {t["id"] for t in breathing}
    assert not [t for t in tasks_of(store, plan_id) if key(t).startswith("2/")]


def test_a_step_is_released_when_the_previous_ones_window_passed(store):
    result = assign_pathway(
        store,
        "staying-well",
        patient="pat-ava",
        practitioner="dr-rivera",
        start=date(2026, 3, 3),
        timezone=NY,
        now=NOW,
        horizon_days=3,
    )
    [first] = result.tasks
    moment = due(first) + timedelta(hours=25)
    run = run_scheduler(store, now=moment, horizon_days=3, grace_hours=24)
    assert [t["id"] for t in run.failed] == [first["id"]]
    assert run.released == (f"CarePlan/{result.plan['id']}#1",)
    assert store.read("Task", first["id"]).resource["status"] == "failed"


def test_delayed_steps_appear_when_they_enter_the_horizon(store):
    result = assign_pathway(
        store,
        "insomnia-4-weeks",
        patient="pat-ava",
        practitioner="dr-rivera",
        start=date(2026, 3, 3),
        timezone=NY,
        time_of_day=time(8, 0),
        now=NOW,
        horizon_days=3,
    )
    plan = result.plan
    assert [a["detail"]["status"] for a in plan["activity"]] == ["scheduled", "scheduled"]
    assert plan["activity"][1]["detail"]["scheduledTiming"]["repeat"]["boundsPeriod"] == {
        "start": "2026-03-10"
    }
    assert all(key(t).startswith("0/") for t in result.tasks)
    created = materialize(store, now=NOW + timedelta(days=6), horizon_days=3)
    stimulus = sorted(key(t) for t in created if key(t).startswith("1/"))
    assert stimulus == ["1/2026-03-10/1", "1/2026-03-11/2"]


def test_skip_a_step_cancels_its_tasks_and_releases_the_next(store):
    events = Events()
    changed: list[str] = []
    events.subscribe("task_status_changed", lambda task: changed.append(task["status"]))
    result = assign_pathway(
        store,
        "distress-tolerance-4-weeks",
        patient="pat-ava",
        practitioner="dr-rivera",
        start=date(2026, 3, 2),
        timezone=NY,
        time_of_day=time(20, 0),
        now=NOW,
        horizon_days=3,
    )
    plan_id = result.plan["id"]
    grounding = tasks_of(store, plan_id)
    skipped = skip_step(store, plan_id, 0, now=NOW, horizon_days=3, events=events)
    assert skipped["activity"][0]["detail"]["status"] == "stopped"
    assert skipped["activity"][0]["detail"]["statusReason"] == {"text": "Skipped by the clinician"}
    assert skipped["activity"][1]["detail"]["status"] == "scheduled"
    states = {
        key(t): (t["status"], (t.get("businessStatus") or {}).get("coding", [{}])[0].get("code"))
        for t in tasks_of(store, plan_id)
    }
    assert {v for k, v in states.items() if k.startswith("0/")} == {("cancelled", "step-skipped")}
    assert {v for k, v in states.items() if k.startswith("1/")} == {("requested", None)}
    assert changed == ["cancelled"] * len(grounding)
    with pytest.raises(BusinessRuleError):
        skip_step(store, plan_id, 0, now=NOW)
    with pytest.raises(NotFound):
        skip_step(store, plan_id, 7, now=NOW)


def test_pause_and_resume(store):
    plan = plan_of(store, daily(count=10), horizon=4)
    first, *rest = tasks_of(store, plan["id"])
    save_draft(store, first["id"], {"item": []}, patient="pat-ava", now=NOW)
    paused_at = NOW + timedelta(hours=1)
    paused = pause_plan(store, plan["id"], now=paused_at)
    assert paused["status"] == "on-hold"
    assert [t["status"] for t in tasks_of(store, plan["id"])] == ["in-progress"] + [
        "on-hold"
    ] * len(rest)
    before = snapshot(store)
    assert materialize(store, now=paused_at + timedelta(days=1), horizon_days=4) == []
    run = run_scheduler(store, now=paused_at + timedelta(days=1), horizon_days=4)
    assert run.created == () and run.failed == ()
    assert snapshot(store) == before
    # resume on 8 March 13:00 New York: 3–7 March passed during the pause
    resumed_at = datetime(2026, 3, 8, 17, 0, tzinfo=timezone.utc)
    resumed = resume_plan(store, plan["id"], now=resumed_at, horizon_days=4)
    assert resumed["status"] == "active"
    after = {key(t): t for t in tasks_of(store, plan["id"])}
    assert after["0/2026-03-02/1"]["status"] == "in-progress"  # the patient's draft is kept
    for held in ("0/2026-03-03/2", "0/2026-03-04/3", "0/2026-03-05/4"):
        assert after[held]["status"] == "cancelled"
        assert after[held]["businessStatus"]["coding"][0]["code"] == "paused"
    # occurrences due during the pause (6 and 7 March) are never created
    assert sorted(after) == [
        "0/2026-03-02/1",
        "0/2026-03-03/2",
        "0/2026-03-04/3",
        "0/2026-03-05/4",
        "0/2026-03-08/7",
        "0/2026-03-09/8",
        "0/2026-03-10/9",
        "0/2026-03-11/10",
    ]
    assert {after[k]["status"] for k in after if k >= "0/2026-03-08"} == {"requested"}
    assert resume_plan(store, plan["id"], now=resumed_at)["meta"] == resumed["meta"]
    cancel_plan(store, plan["id"], now=resumed_at)
    with pytest.raises(BusinessRuleError):
        pause_plan(store, plan["id"], now=resumed_at)
    with pytest.raises(BusinessRuleError):
        resume_plan(store, plan["id"], now=resumed_at)


def test_cancelling_a_plan_cancels_only_future_not_started_tasks(store):
    events = Events()
    seen: list[tuple[str, str]] = []
    events.subscribe(
        "task_status_changed",
        lambda task, previous_status: seen.append((task["status"], previous_status)),
    )
    plan = plan_of(
        store, daily(start=date(2026, 2, 28), count=10), now=NOW - timedelta(days=2), horizon=6
    )
    tasks = tasks_of(store, plan["id"])
    done = submit_response(store, tasks[0]["id"], MOOD_ANSWERS, patient="pat-ava", now=NOW).task
    draft = save_draft(store, tasks[3]["id"], {"item": []}, patient="pat-ava", now=NOW).task
    overdue = store.read("Task", tasks[1]["id"]).resource  # due 2 March 01:00Z: past
    assert due(overdue) < NOW
    revoked = cancel_plan(store, plan["id"], reason="Finished therapy", now=NOW, events=events)
    assert revoked["status"] == "revoked"
    assert revoked["activity"][0]["detail"]["status"] == "stopped"
    assert revoked["note"][-1]["text"] == "Finished therapy"
    after = {t["id"]: t for t in tasks_of(store, plan["id"])}
    assert after[done["id"]] == done
    assert after[draft["id"]] == draft
    assert after[overdue["id"]] == overdue
    future = [t for t in after.values() if due(t) > NOW and t["id"] != draft["id"]]
    assert future and {t["status"] for t in future} == {"cancelled"}
    assert {t["businessStatus"]["coding"][0]["code"] for t in future} == {"plan-cancelled"}
    assert seen == [("cancelled", "requested")] * len(future)
    before = snapshot(store)
    assert materialize(store, now=NOW + timedelta(days=3), horizon_days=6) == []
    assert cancel_plan(store, plan["id"], now=NOW)["meta"] == revoked["meta"]
    assert snapshot(store) == before


def test_scheduler_reads_grace_and_horizon_from_settings(store):
    plan = plan_of(store, daily(count=8), horizon=1)
    [first] = tasks_of(store, plan["id"])
    settings = Settings(overdue_grace_hours=2, materialize_horizon_days=5)
    run = run_scheduler(store, settings=settings, now=due(first) + timedelta(hours=3))
    assert [t["id"] for t in run.failed] == [first["id"]]
    assert len(tasks_of(store, plan["id"])) == 6


def test_pathway_input_is_checked(store):
    before = snapshot(store)
    with pytest.raises(NotFound):
        assign_pathway(
            store,
            "no-such-pathway",
            patient="p",
            practitioner="d",
            start=date(2026, 3, 2),
            timezone=NY,
            now=NOW,
        )
    with pytest.raises(InvalidInput):
        assign_pathway(
            store,
            {"id": "x", "steps": []},
            patient="p",
            practitioner="d",
            start=date(2026, 3, 2),
            timezone=NY,
            now=NOW,
        )
    with pytest.raises(InvalidInput):
        assign_pathway(
            store,
            "insomnia-4-weeks",
            patient="p",
            practitioner="d",
            start=date(2026, 3, 2),
            timezone="Mars/Olympus",
            now=NOW,
        )
    assert snapshot(store) == before


DONE_CHECK = {
    "resourceType": "Questionnaire",
    "url": "http://example.org/Questionnaire/done",
    "version": "1",
    "status": "active",
    "title": "Done?",
    "item": [{"linkId": "done", "type": "boolean", "text": "Done?", "required": True}],
}


def test_a_custom_pathway_advances_as_soon_as_asked(store):
    store.create(DONE_CHECK)
    template = {
        "id": "two-steps",
        "title": "Two steps",
        "description": "One, then the other.",
        "problemArea": "general",
        "steps": [
            {
                "activity": "http://example.org/Questionnaire/done|1",
                "start": {"delayDays": 0},
                "schedule": {"frequency": "once"},
            },
            {
                "activity": "http://example.org/Questionnaire/done|1",
                "start": {"afterPrevious": True},
                "schedule": {"frequency": "daily", "count": 2},
                "required": False,
                "instructions": "Twice more.",
            },
        ],
    }
    result = assign_pathway(
        store,
        template,
        patient="pat-ava",
        practitioner="dr-rivera",
        start=date(2026, 3, 3),
        timezone=NY,
        time_of_day=time(21, 0),
        now=NOW,
        horizon_days=5,
    )
    assert result.plan["instantiatesUri"] == [f"{PATHWAY_BASE}/two-steps"]
    assert pathway_step(result.plan["activity"][1])["required"] is False
    [first] = result.tasks
    submit_response(
        store,
        first["id"],
        {"item": [{"linkId": "done", "answer": [{"valueBoolean": True}]}]},
        patient="pat-ava",
        now=NOW,
    )
    plan = advance_plan(store, result.plan["id"], now=NOW, horizon_days=5)
    assert [a["detail"]["status"] for a in plan["activity"]] == ["completed", "scheduled"]
    second = [t for t in tasks_of(store, plan["id"]) if key(t).startswith("1/")]
    assert [key(t) for t in second] == ["1/2026-03-02/1", "1/2026-03-03/2"]
    assert second[0]["description"] == "Twice more."
    for task in second:
        submit_response(
            store,
            task["id"],
            {"item": [{"linkId": "done", "answer": [{"valueBoolean": True}]}]},
            patient="pat-ava",
            now=NOW,
        )
    plan = advance_plan(store, plan["id"], now=NOW + timedelta(minutes=1), horizon_days=5)
    assert plan["status"] == "completed"
    assert [a["detail"]["status"] for a in plan["activity"]] == ["completed", "completed"]


def test_completion_listener_releases_the_next_step_at_once(store):
    store.create(DONE_CHECK)
    events = Events()
    created: list[dict[str, Any]] = []
    events.subscribe("task_created", lambda task: created.append(task))
    events.subscribe("response_completed", completion_listener(events, horizon_days=5))
    template = {
        "id": "then",
        "title": "Then",
        "description": "One, then the other.",
        "problemArea": "general",
        "steps": [
            {
                "activity": "http://example.org/Questionnaire/done|1",
                "start": {"delayDays": 0},
                "schedule": {"frequency": "once"},
            },
            {
                "activity": "http://example.org/Questionnaire/done|1",
                "start": {"afterPrevious": True},
                "schedule": {"frequency": "once"},
            },
        ],
    }
    result = assign_pathway(
        store,
        template,
        patient="pat-ava",
        practitioner="dr-rivera",
        start=date(2026, 3, 3),
        timezone=NY,
        time_of_day=time(21, 0),
        now=NOW,
        horizon_days=5,
    )
    created.clear()
    done_at = NOW + timedelta(hours=3)
    submit_response(
        store,
        result.tasks[0]["id"],
        {"item": [{"linkId": "done", "answer": [{"valueBoolean": True}]}]},
        patient="pat-ava",
        events=events,
        now=done_at,
    )
    plan = store.read("CarePlan", result.plan["id"]).resource
    assert [a["detail"]["status"] for a in plan["activity"]] == ["completed", "scheduled"]
    assert pathway_step(plan["activity"][1])["releasedAt"] == "2026-03-02T18:00:00Z"
    assert [key(t) for t in created] == ["1/2026-03-02/1"]


class IgnoringStore:
    """The real store behind a server that ignores the ``due`` search parameter."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def search(self, resource_type: str, params: Any = (), **kwargs: Any) -> Any:
        return self.store.search(resource_type, [p for p in params if p[0] != "due"], **kwargs)


def test_the_sweep_never_fails_tasks_that_are_not_overdue(store):
    plan = plan_of(store, daily(count=4), horizon=5)
    first, *later = tasks_of(store, plan["id"])
    failed = sweep_overdue(
        IgnoringStore(store), now=due(first) + timedelta(hours=25), grace_hours=24, batch=2
    )
    assert [t["id"] for t in failed] == [first["id"]]
    assert {t["status"] for t in tasks_of(store, plan["id"]) if t["id"] != first["id"]} == {
        "requested"
    }


def test_every_resource_the_scheduler_writes_validates(store):
    result = assign_pathway(
        store,
        "distress-tolerance-4-weeks",
        patient="pat-ava",
        practitioner="dr-rivera",
        start=date(2026, 3, 2),
        timezone=NY,
        now=NOW,
        horizon_days=10,
    )
    plan_id = result.plan["id"]
    pause_plan(store, plan_id, now=NOW + timedelta(days=1))
    resume_plan(store, plan_id, now=NOW + timedelta(days=2), horizon_days=10)
    skip_step(store, plan_id, 0, now=NOW + timedelta(days=2), horizon_days=10)
    run_scheduler(store, now=NOW + timedelta(days=9), horizon_days=10)
    cancel_plan(store, plan_id, now=NOW + timedelta(days=10))
    entries = store.history(count=100000).entries
    assert {e.resource_type for e in entries} >= {"CarePlan", "Task"}
    for entry in entries:
        assert validate(entry.resource) == entry.resource


# -- the worker's scheduler is audited ----------------------------------------------------


def test_the_worker_scheduler_audits_each_write_it_makes(tmp_path, db_url, monkeypatch):
    import orjson
    from reminder_support import make_services

    from hw_fhir import default_worker
    from hw_fhir.audit_query import search_events

    monkeypatch.setattr(default_worker, "SCHEDULER_EVERY_SECONDS", 0)
    services = make_services(tmp_path, db_url=db_url)
    try:
        store = services.store
        library.load_catalog(store)
        store.update(
            {"resourceType": "Patient", "id": "pat-ava",
             "name": [{"family": "Zyxwright", "given": ["Avaline"]}]}
        )
        now = datetime.now(timezone.utc)
        then = now - timedelta(days=5)
        # assigned (by a clinician, audited by that request) five days ago, never done
        plan = plan_of(store, daily(start=then.date(), count=2), now=then, horizon=3)
        pathway = assign_pathway(
            store, "staying-well", patient="pat-ava", practitioner="dr-rivera",
            start=then.date(), timezone=NY, now=then, horizon_days=3,
        )
        pathway_ref = f"CarePlan/{pathway.plan['id']}"

        def worker_events():
            page = search_events(store, [("altid", "hw-fhir-worker"), ("_count", "1000")])
            return [orjson.loads(content) for _, content in page.events]

        assert worker_events() == []  # assignment is not the worker's
        assert default_worker.plan_scheduler(services) > 0
        events = worker_events()
        by_subtype: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_subtype.setdefault(event["subtype"][0]["code"], []).append(event)
            assert event["type"]["code"] == "110100" and event["outcome"] == "0"
            assert event["agent"][0]["altId"] == "hw-fhir-worker"
            assert event["entity"][0]["what"] == {"reference": "Patient/pat-ava"}
            assert event["entity"][0]["role"]["code"] == "1"

        def refs(event):
            return [e["what"]["reference"] for e in event["entity"][1:]]

        failed = [t for t in iter_all(store, "Task", [("status", "failed")])]
        assert failed and sorted(refs(e)[0] for e in by_subtype["task-overdue"]) == sorted(
            f"Task/{t['id']}" for t in failed
        )
        assert all(e["action"] == "U" and len(refs(e)) == 1 for e in by_subtype["task-overdue"])
        [released] = by_subtype["pathway-release"]
        assert released["action"] == "U" and refs(released) == [pathway_ref]
        [completed] = by_subtype["plan-advanced"]
        assert refs(completed) == [f"CarePlan/{plan['id']}"]
        assert store.read("CarePlan", plan["id"]).resource["status"] == "completed"
        [made] = by_subtype["tasks-materialized"]  # the released step's Tasks: one transaction
        assert made["action"] == "C" and refs(made)[-1] == pathway_ref
        new_tasks = [t for t in tasks_of(store, pathway.plan["id"])
                     if t["id"] not in {x["id"] for x in pathway.tasks}]
        assert new_tasks and sorted(refs(made)[:-1]) == sorted(f"Task/{t['id']}" for t in new_tasks)
        text = orjson.dumps(events).decode()
        assert "Avaline" not in text and "Zyxwright" not in text and "description" not in text
        # nothing left to do: nothing written, nothing audited
        default_worker.plan_scheduler(services)
        assert len(worker_events()) == len(events)
    finally:
        services.close()


def test_the_worker_records_nothing_when_the_audit_is_off(tmp_path, monkeypatch):
    from reminder_support import make_services

    from hw_fhir import default_worker
    from hw_fhir.audit_query import search_events
    from hw_fhir.worker import Worker

    monkeypatch.setattr(default_worker, "SCHEDULER_EVERY_SECONDS", 0)
    services = make_services(tmp_path, audit=False)
    try:
        library.load_catalog(services.store)
        then = datetime.now(timezone.utc) - timedelta(days=5)
        plan_of(services.store, daily(start=then.date(), count=2), now=then, horizon=3)
        Worker(services, name="w-off")  # HW_FHIR_AUDIT=0 holds for the worker too
        assert default_worker.plan_scheduler(services) > 0
        assert search_events(services.store, [("altid", "hw-fhir-worker")]).events == ()
    finally:
        services.close()
