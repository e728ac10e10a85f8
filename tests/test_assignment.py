"""Assigning homework: one-off SDC Tasks, recurring CarePlans, edits and cancellation."""

from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hw_fhir import library
from hw_fhir.assignment import (
    BUSINESS_STATUS_SYSTEM,
    EXT_HOMEWORK_LABEL,
    EXT_NOTE_KIND,
    EXT_PATIENT_CONFIDENCE,
    EXT_REMINDER_CHANNEL,
    SDC_TASK_PROFILE,
    TASK_OCCURRENCE_SYSTEM,
    Assignment,
    AssignmentEdit,
    HomeworkDetails,
    assign,
    cancel_assignment,
    edit_assignment,
)
from hw_fhir.completion import submit_response
from hw_fhir.errors import AlreadyAssigned, BusinessRuleError, InvalidInput, NotFound
from hw_fhir.events import Events
from hw_fhir.models import validate
from hw_fhir.schedule import Schedule
from hw_fhir.store import iter_all

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
MOOD_LOG = "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0"
NY = "America/New_York"


def snapshot(store: Any) -> set[tuple[str, str, str]]:
    """Every stored version, as (type, id, version): equal snapshots = nothing written."""
    return {(e.resource_type, e.id, e.version_id) for e in store.history(count=100000).entries}


def every_resource_is_valid(store: Any) -> None:
    """Assert every stored version of every resource validates against the R4B models."""
    for entry in store.history(count=100000).entries:
        if not entry.deleted:
            validate(entry.resource)


@pytest.fixture
def store(sql_store):
    """A store with the shipped catalog loaded."""
    library.load_catalog(sql_store)
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


def once(day: date = date(2026, 3, 5), at: time = time(18, 0), zone: str = NY) -> Schedule:
    return Schedule(frequency="once", start=day, time_of_day=at, timezone=zone)


def mood_log(schedule: Schedule, **changes: Any) -> Assignment:
    values: dict[str, Any] = dict(
        patient="pat-ava",
        practitioner="Practitioner/dr-rivera",
        activity=MOOD_LOG,
        schedule=schedule,
        instructions="Log your mood each evening after dinner.",
        rationale="Seeing patterns helps us plan activities.",
        example="Mood 4: tired after work, better after a walk.",
        wording="skills practice",
        confidence=8,
        reminder_channel="email",
    )
    values.update(changes)
    return Assignment(**values)


def coding(concept: dict[str, Any]) -> tuple[str, str]:
    return concept["coding"][0]["system"], concept["coding"][0]["code"]


# -- one-off ---------------------------------------------------------------------------------


def test_one_off_assignment_is_one_sdc_task(store, events):
    result = assign(store, mood_log(once()), events=events, now=NOW)
    assert result.plan is None and len(result.tasks) == 1 and result.warnings == ()
    task = result.task
    assert validate(task) == task
    assert task["meta"]["profile"] == [SDC_TASK_PROFILE]
    assert task["status"] == "requested"
    assert task["intent"] == "order"
    assert coding(task["code"]) == (SDC_TEMP, "complete-questionnaire")
    assert "focus" not in task  # sdc-t1: complete-questionnaire uses the questionnaire input
    [entry] = task["input"]
    assert coding(entry["type"]) == (SDC_TEMP, "questionnaire")
    assert entry["valueCanonical"] == MOOD_LOG
    assert task["for"] == {"reference": "Patient/pat-ava"}
    assert task["owner"] == {"reference": "Patient/pat-ava"}
    assert task["requester"] == {"reference": "Practitioner/dr-rivera"}
    assert task["authoredOn"] == "2026-03-02T15:00:00Z"
    # 18:00 in New York on 5 March (EST, UTC-5) is 23:00 UTC
    assert task["restriction"]["period"]["end"] == "2026-03-05T23:00:00Z"
    assert task["restriction"]["period"]["start"] == "2026-03-02T15:00:00Z"
    assert task["description"] == "Log your mood each evening after dinner."
    notes = {n["extension"][0]["valueCode"]: n["text"] for n in task["note"]}
    assert notes == {
        "rationale": "Seeing patterns helps us plan activities.",
        "example": "Mood 4: tired after work, better after a walk.",
    }
    assert all(n["extension"][0]["url"] == EXT_NOTE_KIND for n in task["note"])
    extensions = {e["url"]: e for e in task["extension"]}
    assert extensions[EXT_HOMEWORK_LABEL]["valueString"] == "skills practice"
    assert extensions[EXT_PATIENT_CONFIDENCE]["valueInteger"] == 8
    assert extensions[EXT_REMINDER_CHANNEL]["valueCode"] == "email"
    assert HomeworkDetails.from_task(task) == mood_log(once()).details
    assert store.read("Task", task["id"]).resource == task
    assert [name for name, _ in events.log] == ["task_created"]
    assert events.log[0][1]["task"] == task and events.log[0][1]["store"] is store


@pytest.mark.parametrize(
    "confidence,warned", [(0, True), (6, True), (7, False), (10, False), (None, False)]
)
def test_low_confidence_comes_back_with_a_warning(store, confidence, warned):
    result = assign(store, mood_log(once(), confidence=confidence), now=NOW)
    assert bool(result.warnings) is warned
    if warned:
        assert f"{confidence}/10" in result.warnings[0]


@pytest.mark.parametrize(
    "field,value",
    [
        ("confidence", 11),
        ("confidence", -1),
        ("confidence", True),
        ("confidence", 7.5),
        ("reminder_channel", "SMS now!"),
        ("patient", "Practitioner/x"),
        ("patient", ""),
        ("activity", " "),
        ("wording", "x" * 61),
    ],
)
def test_invalid_assignments_are_refused(field, value):
    with pytest.raises(InvalidInput) as caught:
        mood_log(once(), **{field: value})
    assert any(i.expression == field for i in caught.value.issues)


def test_a_due_time_in_the_past_is_refused_and_nothing_is_stored(store):
    before = snapshot(store)
    with pytest.raises(BusinessRuleError, match="already passed"):
        assign(store, mood_log(once(day=date(2026, 3, 2), at=time(9, 0))), now=NOW)
    assert snapshot(store) == before


def test_drafts_and_retired_activities_cannot_be_assigned(store):
    clone = library.clone_questionnaire(store, MOOD_LOG, practitioner="dr-rivera", now=NOW)
    canonical = f"{clone['url']}|{clone['version']}"
    before = snapshot(store)
    with pytest.raises(BusinessRuleError, match="publish it first"):
        assign(store, mood_log(once(), activity=canonical), now=NOW)
    assert snapshot(store) == before
    library.publish(store, clone["id"])
    task = assign(store, mood_log(once(), activity=canonical), now=NOW).task
    assert task["input"][0]["valueCanonical"] == canonical
    library.retire(store, clone["id"])
    with pytest.raises(BusinessRuleError, match="retired"):
        assign(store, mood_log(once(), activity=canonical), now=NOW)
    with pytest.raises(NotFound):
        assign(store, mood_log(once(), activity="http://nowhere.example/Q|1"), now=NOW)


def test_a_bare_url_assigns_the_newest_active_version(store):
    clone = library.clone_questionnaire(store, MOOD_LOG, practitioner="dr-rivera", now=NOW)
    library.publish(store, clone["id"])
    draft = library.new_version(store, clone["id"])
    task = assign(store, mood_log(once(), activity=clone["url"]), now=NOW).task
    assert task["input"][0]["valueCanonical"] == f"{clone['url']}|1.0.0"  # the draft is not used
    library.publish(store, draft["id"])
    task = assign(store, mood_log(once(), activity=clone["url"]), now=NOW).task
    assert task["input"][0]["valueCanonical"] == f"{clone['url']}|1.1.0"


# -- recurring ------------------------------------------------------------------------------


def test_recurring_assignment_is_a_careplan_with_one_task_per_occurrence(store, events):
    schedule = Schedule(
        frequency="daily", start=date(2026, 3, 3), time_of_day=time(20, 0), timezone=NY, count=10
    )
    result = assign(
        store,
        mood_log(schedule, encounter="Encounter/session-1"),
        events=events,
        now=NOW,
        horizon_days=5,
    )
    plan = result.plan
    assert validate(plan) == plan
    assert plan["status"] == "active" and plan["intent"] == "plan"
    assert plan["subject"] == {"reference": "Patient/pat-ava"}
    assert plan["author"] == {"reference": "Practitioner/dr-rivera"}
    assert plan["encounter"] == {"reference": "Encounter/session-1"}
    assert plan["period"] == {"start": "2026-03-03", "end": "2026-03-12"}
    assert plan["title"] == "Skills practice: Daily mood log"
    [activity] = plan["activity"]
    detail = activity["detail"]
    assert detail["kind"] == "Task" and detail["status"] == "scheduled"
    assert detail["instantiatesCanonical"] == [MOOD_LOG]
    assert detail["scheduledTiming"] == schedule.to_fhir_timing()
    assert Schedule.from_fhir_timing(detail["scheduledTiming"]) == schedule
    assert detail["performer"] == [{"reference": "Patient/pat-ava"}]
    assert HomeworkDetails.from_detail(detail) == mood_log(schedule).details

    # occurrences due before now + 5 days: 3, 4, 5, 6 March at 20:00 New York
    tasks = sorted(result.tasks, key=lambda t: t["restriction"]["period"]["end"])
    assert [t["restriction"]["period"]["end"] for t in tasks] == [
        "2026-03-04T01:00:00Z",
        "2026-03-05T01:00:00Z",
        "2026-03-06T01:00:00Z",
        "2026-03-07T01:00:00Z",
    ]
    for n, task in enumerate(tasks, start=1):
        assert validate(task) == task
        assert task["basedOn"] == [{"reference": f"CarePlan/{plan['id']}"}]
        assert task["identifier"] == [
            {"system": TASK_OCCURRENCE_SYSTEM, "value": f"{plan['id']}/0/2026-03-0{n + 2}/{n}"}
        ]
        assert task["encounter"] == {"reference": "Encounter/session-1"}
        assert task["input"][0]["valueCanonical"] == MOOD_LOG
        assert coding(task["code"]) == (SDC_TEMP, "complete-questionnaire")
        assert task["description"] == "Log your mood each evening after dinner."
    # each window opens when the previous occurrence was due
    assert tasks[1]["restriction"]["period"]["start"] == tasks[0]["restriction"]["period"]["end"]
    names = [name for name, _ in events.log]
    assert names == ["task_created"] * 4 + ["plan_created"]
    assert {t["id"] for t in events.log[-1][1]["tasks"]} == {t["id"] for t in tasks}
    assert events.log[-1][1]["plan"] == plan


@pytest.mark.parametrize(
    "zone,spring_forward",
    [("America/New_York", date(2026, 3, 8)), ("Europe/Berlin", date(2026, 3, 29))],
)
def test_weekly_tasks_keep_their_local_time_across_daylight_saving(store, zone, spring_forward):
    start = spring_forward - timedelta(days=14)
    schedule = Schedule(
        frequency="weekly",
        start=start,
        time_of_day=time(19, 30),
        timezone=zone,
        days_of_week=("sun", "wed"),
        count=8,
    )
    now = datetime.combine(start, time(0), tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)
    result = assign(store, mood_log(schedule, patient="pat-ben"), now=now, horizon_days=40)
    dues = sorted(
        datetime.fromisoformat(t["restriction"]["period"]["end"].replace("Z", "+00:00"))
        for t in result.tasks
    )
    assert len(dues) == 8
    local = [d.astimezone(ZoneInfo(zone)) for d in dues]
    assert {(d.hour, d.minute) for d in local} == {(19, 30)}
    assert {d.strftime("%a") for d in local} == {"Sun", "Wed"}
    offsets = {d.utcoffset() for d in local}
    assert len(offsets) == 2  # the UTC offset changed, the wall-clock time did not
    before = [d for d in local if d.date() < spring_forward]
    after = [d for d in local if d.date() >= spring_forward]
    assert before and after
    assert before[0].utcoffset() < after[0].utcoffset()


def test_every_written_resource_validates(store):
    assign(store, mood_log(once()), now=NOW)
    assign(
        store,
        mood_log(
            Schedule(
                frequency="every-n-days",
                interval=3,
                start=date(2026, 3, 3),
                timezone=NY,
                until=date(2026, 4, 1),
            )
        ),
        now=NOW,
    )
    every_resource_is_valid(store)


# -- edit ------------------------------------------------------------------------------------


def test_edit_a_one_off_task(store):
    task = assign(store, mood_log(once()), now=NOW).task
    due = datetime(2026, 3, 6, 23, 0, tzinfo=timezone.utc)
    edited = edit_assignment(
        store,
        f"Task/{task['id']}",
        AssignmentEdit(instructions="Only on weekdays.", example="", confidence=5, due=due),
        now=NOW,
    )
    updated = edited.task
    assert updated["description"] == "Only on weekdays."
    assert [n["extension"][0]["valueCode"] for n in updated["note"]] == ["rationale"]
    assert updated["restriction"]["period"]["end"] == "2026-03-06T23:00:00Z"
    assert HomeworkDetails.from_task(updated).confidence == 5
    assert edited.warnings and "5/10" in edited.warnings[0]
    assert updated["meta"]["versionId"] == "2"
    assert validate(updated) == updated
    with pytest.raises(BusinessRuleError):
        edit_assignment(
            store, f"Task/{task['id']}", AssignmentEdit(due=NOW - timedelta(hours=1)), now=NOW
        )


def test_finished_homework_cannot_be_edited(store):
    task = assign(store, mood_log(once()), now=NOW).task
    submit_response(
        store,
        task["id"],
        {
            "item": [
                {"linkId": "date", "answer": [{"valueDate": "2026-03-03"}]},
                {"linkId": "mood", "answer": [{"valueInteger": 6}]},
            ]
        },
        patient="pat-ava",
        now=NOW,
    )
    before = snapshot(store)
    with pytest.raises(BusinessRuleError, match="only open homework"):
        edit_assignment(store, f"Task/{task['id']}", AssignmentEdit(instructions="x"), now=NOW)
    assert snapshot(store) == before


def test_edit_a_plan_updates_open_tasks_and_leaves_completed_ones(store):
    schedule = Schedule(
        frequency="daily", start=date(2026, 3, 2), time_of_day=time(20, 0), timezone=NY
    )
    result = assign(store, mood_log(schedule), now=NOW, horizon_days=4)
    first = min(result.tasks, key=lambda t: t["restriction"]["period"]["end"])
    done = submit_response(
        store,
        first["id"],
        {
            "item": [
                {"linkId": "date", "answer": [{"valueDate": "2026-03-02"}]},
                {"linkId": "mood", "answer": [{"valueInteger": 6}]},
            ]
        },
        patient="pat-ava",
        now=NOW,
    ).task
    edited = edit_assignment(
        store,
        f"CarePlan/{result.plan['id']}",
        AssignmentEdit(instructions="New words", reminder_channel="sms"),
        now=NOW,
    )
    detail = edited.plan["activity"][0]["detail"]
    assert detail["description"] == "New words"
    assert HomeworkDetails.from_detail(detail).reminder_channel == "sms"
    tasks = iter_all(store, "Task", [("based-on", f"CarePlan/{result.plan['id']}")])
    for task in tasks:
        if task["id"] == first["id"]:
            assert task == done  # completed work untouched
        else:
            assert task["description"] == "New words"
            assert HomeworkDetails.from_task(task).reminder_channel == "sms"


def test_rescheduling_a_plan_replaces_its_future_tasks(store, events):
    daily = Schedule(
        frequency="daily", start=date(2026, 3, 2), time_of_day=time(20, 0), timezone=NY, count=10
    )
    result = assign(store, mood_log(daily), now=NOW, horizon_days=6)
    plan_id = result.plan["id"]
    first = min(result.tasks, key=lambda t: t["restriction"]["period"]["end"])
    done = submit_response(
        store,
        first["id"],
        {
            "item": [
                {"linkId": "date", "answer": [{"valueDate": "2026-03-02"}]},
                {"linkId": "mood", "answer": [{"valueInteger": 6}]},
            ]
        },
        patient="pat-ava",
        now=NOW,
    ).task
    weekly = Schedule(
        frequency="weekly",
        start=date(2026, 3, 4),
        time_of_day=time(8, 0),
        timezone=NY,
        days_of_week=("wed", "sat"),
        count=4,
    )
    later = NOW + timedelta(hours=1)
    events.log.clear()
    edited = edit_assignment(
        store,
        f"CarePlan/{plan_id}",
        AssignmentEdit(schedule=weekly),
        events=events,
        now=later,
        horizon_days=6,
    )
    old, new = edited.plan["activity"]
    assert old["detail"]["status"] == "stopped"
    assert new["detail"]["status"] == "scheduled"
    assert new["detail"]["scheduledTiming"] == weekly.to_fhir_timing()
    assert edited.plan["period"]["end"] == "2026-03-14"
    tasks = iter_all(store, "Task", [("based-on", f"CarePlan/{plan_id}")])
    by_id = {t["id"]: t for t in tasks}
    assert by_id[first["id"]] == done
    cancelled = [t for t in tasks if t["status"] == "cancelled"]
    assert len(cancelled) == len(result.tasks) - 1
    assert all(
        t["businessStatus"]["coding"][0]
        == {
            "system": BUSINESS_STATUS_SYSTEM,
            "code": "rescheduled",
            "display": "Cancelled: the schedule was changed",
        }
        for t in cancelled
    )
    fresh = [t for t in tasks if t["status"] == "requested"]
    assert sorted(t["identifier"][0]["value"].split("/", 2)[2] for t in fresh) == [
        "2026-03-04/1",
        "2026-03-07/2",
    ]
    assert all(t["identifier"][0]["value"].split("/")[1] == "1" for t in fresh)
    names = [name for name, _ in events.log]
    assert names.count("task_status_changed") == len(cancelled)
    assert names.count("task_created") == 2


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_a_one_off_task_but_never_finished_work(store, events):
    task = assign(store, mood_log(once()), now=NOW).task
    cancelled = cancel_assignment(
        store, f"Task/{task['id']}", reason="Changed our plan", events=events, now=NOW
    ).task
    assert cancelled["status"] == "cancelled"
    assert cancelled["statusReason"] == {"text": "Changed our plan"}
    assert events.log[-1][0] == "task_status_changed"
    assert events.log[-1][1]["previous_status"] == "requested"
    before = snapshot(store)
    assert cancel_assignment(store, f"Task/{task['id']}", now=NOW).task == cancelled
    assert snapshot(store) == before

    other = assign(store, mood_log(once()), now=NOW).task
    submit_response(
        store,
        other["id"],
        {
            "item": [
                {"linkId": "date", "answer": [{"valueDate": "2026-03-03"}]},
                {"linkId": "mood", "answer": [{"valueInteger": 6}]},
            ]
        },
        patient="pat-ava",
        now=NOW,
    )
    after_submit = snapshot(store)
    assert cancel_assignment(store, f"Task/{other['id']}", now=NOW).task["status"] == "completed"
    assert snapshot(store) == after_submit


def test_cancel_a_recurring_assignment_revokes_the_plan(store):
    schedule = Schedule(frequency="daily", start=date(2026, 3, 3), timezone=NY, count=5)
    result = assign(store, mood_log(schedule), now=NOW)
    cancelled = cancel_assignment(store, f"CarePlan/{result.plan['id']}", now=NOW)
    assert cancelled.plan["status"] == "revoked"
    assert {t["status"] for t in cancelled.tasks} == {"cancelled"}
    assert len(cancelled.tasks) == len(result.tasks)
    with pytest.raises(InvalidInput):
        cancel_assignment(store, "Observation/1", now=NOW)


# -- the same activity again, the same request again ----------------------------------------


def daily() -> Schedule:
    return Schedule(
        frequency="daily", start=date(2026, 3, 3), time_of_day=time(20, 0), timezone=NY, count=10
    )


def test_refuse_duplicate_names_the_active_assignments_and_writes_nothing(store):
    plan = assign(store, mood_log(daily()), now=NOW).plan
    task = assign(store, mood_log(once()), now=NOW).task
    gad7 = "http://hw-fhir.org/fhir/Questionnaire/gad-7"
    assign(store, mood_log(daily(), activity=gad7), now=NOW)  # another activity is no duplicate
    before = snapshot(store)
    with pytest.raises(AlreadyAssigned) as caught:
        assign(store, mood_log(daily()), now=NOW, refuse_duplicate=True)
    assert set(caught.value.existing) == {f"CarePlan/{plan['id']}", f"Task/{task['id']}"}
    assert caught.value.status == 422 and "second, separate schedule" in caught.value.message
    assert snapshot(store) == before
    # callers that do not ask (the demo, scripts) assign a second one as before
    assert assign(store, mood_log(daily()), now=NOW).plan["id"] != plan["id"]


def test_ended_assignments_are_no_duplicates(store):
    plan = assign(store, mood_log(daily()), now=NOW).plan
    task = assign(store, mood_log(once()), now=NOW).task
    with pytest.raises(AlreadyAssigned):
        assign(store, mood_log(once()), now=NOW, refuse_duplicate=True)
    cancel_assignment(store, f"CarePlan/{plan['id']}", now=NOW)
    cancel_assignment(store, f"Task/{task['id']}", now=NOW)
    assert assign(store, mood_log(daily()), now=NOW, refuse_duplicate=True).plan is not None


@pytest.mark.parametrize("kind", ["once", "plan"])
def test_the_same_request_twice_writes_once(store, events, kind):
    schedule = once() if kind == "once" else daily()
    request = mood_log(schedule, idempotency_key="form-1")
    first = assign(store, request, events=events, now=NOW)
    after, announced = snapshot(store), len(events.log)
    again = assign(store, request, events=events, now=NOW + timedelta(seconds=2),
                   refuse_duplicate=True)
    assert snapshot(store) == after and len(events.log) == announced
    assert (again.plan or again.task)["id"] == (first.plan or first.task)["id"]
    assert sorted(t["id"] for t in again.tasks) == sorted(t["id"] for t in first.tasks)
    # another key, or the same key for another patient, is another assignment
    other = assign(store, mood_log(schedule, idempotency_key="form-2"), now=NOW)
    elsewhere = assign(store, mood_log(schedule, patient="pat-ben", idempotency_key="form-1"),
                       now=NOW)
    ids = {(r.plan or r.task)["id"] for r in (first, other, elsewhere)}
    assert len(ids) == 3


@pytest.mark.parametrize("kind", ["once", "plan"])
def test_the_same_request_at_the_same_moment_writes_once(store, kind):
    schedule = once() if kind == "once" else daily()
    announced: list[str] = []
    dispatcher = Events()
    dispatcher.subscribe("task_created", lambda task: announced.append(task["id"]))
    for n in range(4):
        request = mood_log(schedule, idempotency_key=f"race-{n}")
        barrier = threading.Barrier(2)
        results: list[Any] = []

        def send() -> None:
            barrier.wait()
            results.append(assign(store, request, events=dispatcher, now=NOW))

        threads = [threading.Thread(target=send) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == 2, "a resend failed"
        assert len({(r.plan or r.task)["id"] for r in results}) == 1
    tasks = iter_all(store, "Task")
    assert len(tasks) == (4 if kind == "once" else 40)
    assert len(iter_all(store, "CarePlan")) == (0 if kind == "once" else 4)
    assert sorted(announced) == sorted(t["id"] for t in tasks)  # each announced once
