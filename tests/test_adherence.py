"""Adherence and review: counts, streaks, engagement, since-last-session and the panel."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any

import pytest

from hw_fhir import catalog, library
from hw_fhir.adherence import (
    Adherence,
    panel_summary,
    patient_adherence,
    plan_adherence,
    since_last_session,
    summarize_check_ins,
    summarize_tasks,
)
from hw_fhir.assignment import Assignment, assign, cancel_assignment, parse_instant
from hw_fhir.completion import submit_response
from hw_fhir.plans import sweep_overdue
from hw_fhir.responses import validate_response
from hw_fhir.schedule import Schedule
from hw_fhir.store import iter_all

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
REVIEW = datetime(2026, 3, 8, 5, 0, tzinfo=timezone.utc)
NY = "America/New_York"
MOOD_LOG = "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0"
CHECK_IN = f"{catalog.ENGAGEMENT_CHECK_IN_URL}|1.0.0"
LOINC = "http://loinc.org"


def mood(day: date) -> dict[str, Any]:
    return {
        "item": [
            {"linkId": "date", "answer": [{"valueDate": day.isoformat()}]},
            {"linkId": "mood", "answer": [{"valueInteger": 5}]},
        ]
    }


def due(task: dict[str, Any]) -> datetime:
    return parse_instant(task["restriction"]["period"]["end"])


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, 0, tzinfo=timezone.utc)


def check_in(
    store: Any,
    patient: str,
    authored: datetime,
    *,
    amount: str,
    as_agreed: bool | None = None,
    difficulty: int | None = None,
    helpfulness: int | None = None,
    minutes: int | None = None,
    reasons: tuple[str, ...] = (),
    other: str | None = None,
    plan: str | None = None,
) -> dict[str, Any]:
    """Store a valid engagement check-in filled in at a session."""
    items = [
        {
            "linkId": "amount-done",
            "answer": [{"valueCoding": {"system": catalog.AMOUNT_DONE_SYSTEM, "code": amount}}],
        }
    ]
    if as_agreed is not None:
        items.append({"linkId": "as-agreed", "answer": [{"valueBoolean": as_agreed}]})
    for link_id, value in (
        ("difficulty", difficulty),
        ("helpfulness", helpfulness),
        ("minutes-spent", minutes),
    ):
        if value is not None:
            items.append({"linkId": link_id, "answer": [{"valueInteger": value}]})
    if reasons:
        items.append(
            {
                "linkId": "reason-not-done",
                "answer": [
                    {"valueCoding": {"system": catalog.NON_COMPLETION_REASON_SYSTEM, "code": code}}
                    for code in reasons
                ],
            }
        )
    if other:
        items.append({"linkId": "reason-other", "answer": [{"valueString": other}]})
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": CHECK_IN,
        "status": "completed",
        "subject": {"reference": patient},
        "authored": authored.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "item": items,
    }
    if plan:
        response["basedOn"] = [{"reference": plan}]
    validate_response(library.resolve_questionnaire(store, CHECK_IN), response, final=True)
    return store.create(response).resource


def observation(
    store: Any, patient: str, code: str, display: str, value: float, when: datetime
) -> dict[str, Any]:
    return store.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "survey",
                        }
                    ]
                }
            ],
            "code": {
                "coding": [{"system": LOINC, "code": code, "display": display}],
                "text": display,
            },
            "subject": {"reference": patient},
            "effectiveDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "valueQuantity": {
                "value": value,
                "unit": "{score}",
                "system": "http://unitsofmeasure.org",
                "code": "{score}",
            },
        }
    ).resource


@pytest.fixture
def practice(sql_store):
    """A week of homework: Ava's daily mood log, Ben's done, Eve's missed, Carmen's none."""
    store = sql_store
    library.load_catalog(store)
    for pid, name in (
        ("pat-ava", "Ava Nguyen"),
        ("pat-ben", "Ben Schmidt"),
        ("pat-carmen", "Carmen Lopez"),
        ("pat-eve", "Eve Adams"),
    ):
        given, family = name.split()
        store.update(
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"given": [given], "family": family}],
                "generalPractitioner": [{"reference": "Practitioner/dr-rivera"}]
                if pid == "pat-carmen"
                else [],
            }
        )
    plan = assign(
        store,
        Assignment(
            patient="pat-ava",
            practitioner="dr-rivera",
            activity=MOOD_LOG,
            schedule=Schedule(
                frequency="daily",
                start=date(2026, 3, 2),
                time_of_day=time(20, 0),
                timezone=NY,
                count=7,
            ),
        ),
        now=NOW,
        horizon_days=10,
    )
    d1, d2, d3, d4, d5, d6, d7 = sorted(plan.tasks, key=due)
    submit_response(store, d1["id"], mood(date(2026, 3, 2)), patient="pat-ava", now=at(2, 20))
    submit_response(store, d2["id"], mood(date(2026, 3, 3)), patient="pat-ava", now=at(4, 3))
    submit_response(store, d4["id"], mood(date(2026, 3, 5)), patient="pat-ava", now=at(5, 20))
    submit_response(store, d5["id"], mood(date(2026, 3, 6)), patient="pat-ava", now=at(6, 20))
    once = Schedule(frequency="once", start=date(2026, 3, 4), time_of_day=time(18, 0), timezone=NY)
    dropped = assign(
        store,
        Assignment(patient="pat-ava", practitioner="dr-rivera", activity=MOOD_LOG, schedule=once),
        now=NOW,
    ).task
    cancel_assignment(store, f"Task/{dropped['id']}", now=NOW)
    ben = assign(
        store,
        Assignment(patient="pat-ben", practitioner="dr-rivera", activity=MOOD_LOG, schedule=once),
        now=NOW,
    ).task
    submit_response(store, ben["id"], mood(date(2026, 3, 4)), patient="pat-ben", now=at(3, 12))
    for day in (3, 4):
        assign(
            store,
            Assignment(
                patient="pat-eve",
                practitioner="dr-rivera",
                activity=MOOD_LOG,
                schedule=Schedule(
                    frequency="once", start=date(2026, 3, day), time_of_day=time(9, 0), timezone=NY
                ),
            ),
            now=NOW,
        )
    assign(
        store,
        Assignment(patient="pat-dev", practitioner="dr-okafor", activity=MOOD_LOG, schedule=once),
        now=NOW,
    )
    sweep_overdue(store, now=REVIEW, grace_hours=24)
    check_in(
        store,
        "Patient/pat-ava",
        at(7, 14),
        amount="some",
        as_agreed=False,
        difficulty=8,
        helpfulness=6,
        minutes=20,
        reasons=("lack-of-time", "forgot"),
    )
    check_in(
        store,
        "Patient/pat-ava",
        at(7, 15),
        amount="all",
        as_agreed=True,
        difficulty=4,
        helpfulness=8,
        minutes=40,
        plan=f"CarePlan/{plan.plan['id']}",
    )
    check_in(
        store,
        "Patient/pat-ava",
        at(1, 15),
        amount="none",
        reasons=("other",),
        other="Visitors all week",
    )  # before the session: not counted since then
    return {"store": store, "plan": plan.plan, "tasks": (d1, d2, d3, d4, d5, d6, d7)}


# -- counting -------------------------------------------------------------------------------


def test_patient_adherence_counts(practice):
    store = practice["store"]
    result = patient_adherence(store, "pat-ava", now=REVIEW, since=date(2026, 3, 2))
    assert (result.assigned, result.completed, result.on_time, result.late) == (6, 4, 3, 1)
    assert (result.missed, result.overdue, result.upcoming, result.cancelled) == (1, 1, 1, 1)
    assert result.completion_rate == pytest.approx(4 / 6)
    assert result.current_streak == 2  # 5 and 6 March done; 4 March missed; 7 March still open
    assert result.last_completed == "2026-03-06T20:00:00Z"
    engagement = result.engagement
    assert engagement.check_ins == 2
    assert engagement.amount_done == {"some": 1, "all": 1}
    assert (engagement.as_agreed, engagement.not_as_agreed) == (1, 1)
    assert engagement.mean_difficulty == 6.0 and engagement.mean_helpfulness == 7.0
    assert engagement.total_minutes == 60 and engagement.mean_minutes == 30.0
    assert engagement.reasons == {"lack-of-time": 1, "forgot": 1}
    assert list(engagement.reason_labels) == ["I forgot", "I didn't have the time"]
    everything = patient_adherence(store, "pat-ava", now=REVIEW)
    assert everything.engagement.check_ins == 3
    assert everything.engagement.other_reasons == ("Visitors all week",)


def test_a_period_limits_what_counts(practice):
    store = practice["store"]
    first_days = patient_adherence(
        store, "pat-ava", now=REVIEW, since=date(2026, 3, 2), until=date(2026, 3, 4)
    )
    assert (first_days.assigned, first_days.completed, first_days.late) == (1, 1, 0)
    assert (
        patient_adherence(
            store, "pat-ava", now=REVIEW, since=date(2026, 3, 3), until=date(2026, 3, 5)
        ).late
        == 1
    )
    nothing = patient_adherence(store, "pat-ava", now=REVIEW, since=date(2026, 4, 1))
    assert nothing.assigned == 0 and nothing.completion_rate is None


def test_plan_adherence_counts_only_the_plan(practice):
    store, plan = practice["store"], practice["plan"]
    result = plan_adherence(store, plan["id"], now=REVIEW)
    assert (result.assigned, result.completed, result.missed, result.cancelled) == (6, 4, 1, 0)
    assert result.engagement.check_ins == 1
    assert result.engagement.mean_helpfulness == 8.0


def test_summarize_tasks_streaks():
    def task(day: int, status: str, done: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": status,
            "restriction": {"period": {"end": f"2026-03-{day:02d}T12:00:00Z"}},
        }
        if done is not None:
            out["executionPeriod"] = {"end": f"2026-03-{done:02d}T11:00:00Z"}
        return out

    tasks = [
        task(1, "completed", 1),
        task(2, "failed"),
        task(3, "completed", 4),
        task(4, "completed", 4),
        task(5, "requested"),
        task(9, "requested"),
        task(6, "cancelled"),
    ]
    result = summarize_tasks(tasks, now=datetime(2026, 3, 6, tzinfo=timezone.utc))
    assert result == Adherence(
        assigned=5,
        completed=3,
        on_time=2,
        late=1,
        missed=1,
        overdue=1,
        upcoming=1,
        cancelled=1,
        current_streak=2,
        last_completed="2026-03-04T11:00:00Z",
    )
    assert summarize_tasks([], now=NOW).completion_rate is None
    assert summarize_tasks([task(1, "failed")], now=NOW).current_streak == 0


def test_summarize_check_ins_ignores_what_is_not_answered():
    empty = summarize_check_ins([{"resourceType": "QuestionnaireResponse", "item": []}])
    assert empty.check_ins == 1 and empty.mean_difficulty is None and empty.reasons == {}


# -- since the last session -----------------------------------------------------------------


def test_since_last_session(practice):
    store = practice["store"]
    observation(store, "Patient/pat-ava", "44261-6", "PHQ-9 total score", 15, at(1, 12))
    observation(store, "Patient/pat-ava", "44261-6", "PHQ-9 total score", 11, at(6, 12))
    observation(store, "Patient/pat-ava", "70274-6", "GAD-7 total score", 9, at(6, 12))
    store.create(
        {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "PHQ-9 item 9: thoughts of self-harm"},
            "subject": {"reference": "Patient/pat-ava"},
            "period": {"start": "2026-03-06T12:00:00Z"},
        }
    )
    summary = since_last_session(store, "pat-ava", date(2026, 3, 2), now=REVIEW)
    assert summary.patient == "Patient/pat-ava" and summary.since == "2026-03-02T00:00:00Z"
    assert len(summary.assigned) == 7
    assert {row.title for row in summary.assigned} == {"Daily mood log"}
    assert [row.outcome for row in summary.done] == ["on-time", "late", "on-time", "on-time"]
    assert all(
        row.response and row.response.startswith("QuestionnaireResponse/") for row in summary.done
    )
    assert [row.outcome for row in summary.not_done] == ["missed", "overdue"]
    assert summary.adherence.completed == 4 and summary.adherence.engagement.check_ins == 2
    kinds = [point.kind for point in summary.to_discuss]
    assert kinds[0] == "risk"
    assert "PHQ-9 item 9" in summary.to_discuss[0].text
    assert kinds.count("not-done") == 2
    reasons = [p.text for p in summary.to_discuss if p.kind == "reason"]
    assert reasons == ["Not done: I didn't have the time", "Not done: I forgot"]
    assert [p.kind for p in summary.to_discuss].count("difficulty") == 1
    measures = {m.code: m for m in summary.measures}
    phq9 = measures[f"{LOINC}|44261-6"]
    assert (phq9.before, phq9.latest, phq9.change, phq9.count_since) == (15, 11, -4, 1)
    gad7 = measures[f"{LOINC}|70274-6"]
    assert gad7.before is None and gad7.change is None
    assert any(p.kind == "measure" and "15 → 11 (-4)" in p.text for p in summary.to_discuss)


# -- the panel ------------------------------------------------------------------------------


def test_panel_puts_who_is_falling_behind_first(practice):
    rows = panel_summary(practice["store"], "dr-rivera", now=REVIEW)
    assert [row.patient for row in rows] == [
        "Patient/pat-eve",
        "Patient/pat-ava",
        "Patient/pat-ben",
        "Patient/pat-carmen",
    ]
    assert [row.name for row in rows] == ["Eve Adams", "Ava Nguyen", "Ben Schmidt", "Carmen Lopez"]
    eve, ava, ben, carmen = (row.adherence for row in rows)
    assert (eve.assigned, eve.missed, eve.completion_rate) == (2, 2, 0.0)
    assert ava.completion_rate == pytest.approx(4 / 6)
    assert ben.completion_rate == 1.0
    assert carmen.assigned == 0
    okafor = panel_summary(practice["store"], "Practitioner/dr-okafor", now=REVIEW)
    assert [row.patient for row in okafor] == ["Patient/pat-dev"]
    assert okafor[0].adherence.upcoming == 0 and okafor[0].adherence.overdue == 0
    assert okafor[0].adherence.missed == 1


def test_nothing_is_written_by_reading_adherence(practice):
    store = practice["store"]
    before = {(e.resource_type, e.id, e.version_id) for e in store.history(count=100000).entries}
    patient_adherence(store, "pat-ava", now=REVIEW)
    since_last_session(store, "pat-ava", date(2026, 3, 2), now=REVIEW)
    panel_summary(store, "dr-rivera", now=REVIEW)
    after = {(e.resource_type, e.id, e.version_id) for e in store.history(count=100000).entries}
    assert before == after
    assert len(iter_all(store, "Task", [("patient", "Patient/pat-ava")])) == 8


def test_panel_lists_a_patient_known_only_from_their_homework(practice):
    store = practice["store"]
    store.update(
        {
            "resourceType": "Task",
            "id": "ghost-task",
            "status": "requested",
            "intent": "order",
            "code": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/uv/sdc/CodeSystem/temp",
                        "code": "complete-questionnaire",
                    }
                ]
            },
            "for": {"reference": "Patient/pat-ghost"},
            "requester": {"reference": "Practitioner/dr-rivera"},
            "restriction": {"period": {"end": "2026-03-07T20:00:00Z"}},
        }
    )
    rows = {row.patient: row for row in panel_summary(store, "dr-rivera", now=REVIEW)}
    assert rows["Patient/pat-ghost"].name is None  # no Patient resource here: no name
    assert rows["Patient/pat-ghost"].adherence.overdue == 1
    assert rows["Patient/pat-ava"].name == "Ava Nguyen"  # the others are still named
