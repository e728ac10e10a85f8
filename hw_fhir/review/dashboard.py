"""The patient dashboard: what a clinician sees first about one patient.

:func:`patient_dashboard` returns active risk Flags, active assignments and plans
(status, next due, last reminder), adherence and engagement, measure scores with
severity, change labels and charts, the completion calendar and recent responses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .. import catalog
from ..adherence import Adherence, TaskFacts, TaskRow, patient_homework, recent_adherence
from ..assignment import (
    LIVE_ACTIVITY_STATUSES,
    OPEN_STATUSES,
    HomeworkDetails,
    active_assignments_of,
    activity_schedule,
    parse_instant,
    reference,
    task_canonical,
    task_due,
)
from ..charts import Chart, completion_calendar, instrument_chart
from ..errors import InvalidInput
from ..library import questionnaire_titles
from ..outcomes import MEASURES
from ..scoring import progress
from ..scoring.mbc import THRESHOLDS, worsening
from ..store.base import Store, Stored, iter_all
from .formatting import activity_title, change_labels, current_moment, rise_text
from .measures import FOLLOWED_MEASURES, band_name, measure_histories
from .summaries import (
    HOMEWORK_PLANS,
    FlagRow,
    ResponseSummary,
    flag_rows,
    responses_of_tasks,
)

__all__ = [
    "AssignmentRow",
    "MeasureRow",
    "PatientDashboard",
    "already_assigned",
    "patient_dashboard",
]


@dataclass(frozen=True)
class AssignmentRow:
    """One active assignment: a one-off Task or a recurring plan / pathway."""

    kind: str  # task | plan | pathway
    ref: str
    title: str
    status: str
    schedule: str
    next_due: str | None
    wording: str
    instructions: str
    channel: str | None
    last_reminder: str | None = None
    reminder_status: str | None = None
    done: int = 0
    assigned: int = 0
    steps: tuple[tuple[int, str, str], ...] = ()
    activity: str | None = None


@dataclass(frozen=True)
class MeasureRow:
    """A measure followed over time: latest score, severity, change labels and the chart."""

    instrument: str
    name: str
    latest: float
    latest_date: str
    band: str | None
    baseline: float
    change: float
    labels: tuple[str, ...]
    count: int
    chart: Chart
    #: Why it needs attention: a reliable rise since the first or the previous score, said.
    worsening: str = ""


@dataclass(frozen=True)
class PatientDashboard:
    """Everything on a patient's dashboard."""

    patient: str
    flags: tuple[FlagRow, ...]
    assignments: tuple[AssignmentRow, ...]
    adherence: Adherence
    measures: tuple[MeasureRow, ...]
    calendar: Chart
    responses: tuple[ResponseSummary, ...]
    recent: tuple[TaskRow, ...]

    @property
    def on_time_rate(self) -> float | None:
        """Completed on time / assigned (None when nothing was assigned)."""
        a = self.adherence
        return a.on_time / a.assigned if a.assigned else None


def _reminder_targets(
    one_off: list[dict[str, Any]], tasks_by_plan: Mapping[str, list[TaskFacts]], now: datetime
) -> list[str]:
    """Return the Tasks whose reminders the dashboard shows: open one-offs, each plan's latest."""
    refs = [f"Task/{t['id']}" for t in one_off]
    for tasks in tasks_by_plan.values():
        dated = sorted(
            ((t.due, t) for t in tasks if t.due is not None), key=lambda pair: pair[0]
        )
        past = [t for due, t in dated if due <= now][-2:]
        ahead = [t for due, t in dated if due > now][:1]
        refs += [t.ref for t in past + ahead]
    return refs


def _reminders(store: Store, targets: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Return Task ref → (sent, status) of the latest reminder Communication about it."""
    latest: dict[str, tuple[str, str]] = {}
    found: list[dict[str, Any]] = []
    for start in range(0, len(targets), 50):
        found += iter_all(
            store, "Communication", [("about", ",".join(targets[start : start + 50]))]
        )
    for comm in found:
        when = comm.get("sent") or ""
        for about in comm.get("about") or []:
            ref = about.get("reference")
            if (
                isinstance(ref, str)
                and ref.startswith("Task/")
                and (ref not in latest or when > latest[ref][0])
            ):
                latest[ref] = (when, str(comm.get("status") or ""))
    return latest


def _schedule_text(detail: Mapping[str, Any]) -> str:
    try:
        return activity_schedule({"detail": detail}).describe()
    except InvalidInput:
        return ""


def _plan_rows(
    plans: list[dict[str, Any]],
    tasks_by_plan: dict[str, list[TaskFacts]],
    titles: Mapping[str, dict[str, Any]],
    reminders: Mapping[str, tuple[str, str]],
    now: datetime,
) -> list[AssignmentRow]:
    rows = []
    for plan in plans:
        ref = f"CarePlan/{plan['id']}"
        tasks = tasks_by_plan.get(ref, [])
        activities = plan.get("activity") or []
        live = [
            (n, a.get("detail") or {})
            for n, a in enumerate(activities)
            if (a.get("detail") or {}).get("status") in LIVE_ACTIVITY_STATUSES
        ]
        first = live[0][1] if live else ((activities[0].get("detail") or {}) if activities else {})
        open_due = sorted(
            t.due for t in tasks if t.status in OPEN_STATUSES and t.due is not None and t.due > now
        )
        outcomes = [t.outcome(now) for t in tasks]
        done = sum(o in ("on-time", "late") for o in outcomes)
        assigned = sum(o in ("on-time", "late", "missed", "overdue") for o in outcomes)
        last = max((reminders[t.ref] for t in tasks if t.ref in reminders), default=None)
        details = HomeworkDetails.from_detail(first) if first else HomeworkDetails()
        pathway = bool(plan.get("instantiatesUri"))
        steps = (
            tuple(
                (
                    n,
                    activity_title(
                        titles.get(
                            ((a.get("detail") or {}).get("instantiatesCanonical") or [""])[0]
                        )
                    ),
                    str((a.get("detail") or {}).get("status") or ""),
                )
                for n, a in enumerate(activities)
            )
            if pathway
            else ()
        )
        canonical = (first.get("instantiatesCanonical") or [None])[0]
        next_due = open_due[0] if open_due else None
        if next_due is None and plan.get("status") == "active" and live:
            own = [t for t in tasks if t.activity == live[0][0]]
            next_due = _next_scheduled(first, own, now)
        rows.append(
            AssignmentRow(
                kind="pathway" if pathway else "plan",
                ref=ref,
                title=str(
                    plan.get("title")
                    if pathway or canonical not in titles
                    else activity_title(titles.get(canonical or ""))
                ),
                status=str(plan.get("status")),
                schedule=_schedule_text(first) if not pathway else f"{len(activities)} steps",
                next_due=next_due.isoformat() if next_due else None,
                wording=details.wording,
                instructions=details.instructions,
                channel=details.reminder_channel,
                last_reminder=last[0] if last else None,
                reminder_status=last[1] if last else None,
                done=done,
                assigned=assigned,
                steps=steps,
                activity=canonical,
            )
        )
    return rows


def _next_scheduled(
    detail: Mapping[str, Any], tasks: list[TaskFacts], now: datetime
) -> datetime | None:
    """Return the next due time of a plan activity after its latest materialized Task."""
    try:
        schedule = activity_schedule({"detail": detail})
    except InvalidInput:
        return None
    dues = [t.due for t in tasks if t.due is not None]
    after = max([now, *(d + timedelta(seconds=1) for d in dues)])
    found = schedule.next_occurrence(after)
    return found.due if found else None


def _due_text(task: Mapping[str, Any], due: datetime | None) -> str | None:
    """A Task's due time as an instant, or its due day as a date when no time was given."""
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    if isinstance(end, str) and "T" not in end:
        return end  # a date: shown as a day, never as midnight UTC
    return due.isoformat() if due else None


def _task_rows(
    tasks: list[dict[str, Any]],
    titles: Mapping[str, dict[str, Any]],
    reminders: Mapping[str, tuple[str, str]],
) -> list[AssignmentRow]:
    rows = []
    for task in tasks:
        ref = f"Task/{task['id']}"
        canonical = task_canonical(task)
        details = HomeworkDetails.from_task(task)
        due = task_due(task)
        last = reminders.get(ref)
        rows.append(
            AssignmentRow(
                kind="task",
                ref=ref,
                title=activity_title(titles.get(canonical or "")),
                status=str(task.get("status")),
                schedule="Once",
                next_due=_due_text(task, due),
                wording=details.wording,
                instructions=details.instructions,
                channel=details.reminder_channel,
                last_reminder=last[0] if last else None,
                reminder_status=last[1] if last else None,
                activity=canonical,
            )
        )
    return rows


def _measure_rows(store: Store, patient_ref: str, zone: ZoneInfo) -> list[MeasureRow]:
    rows = []
    histories = measure_histories(store, [patient_ref]).get(patient_ref, {})
    for key in FOLLOWED_MEASURES:
        history = histories.get(key)
        if not history:
            continue
        points = [
            (
                parse_instant(when).astimezone(zone).date()
                if "T" in when
                else date.fromisoformat(when[:10]),
                float(v),
            )
            for when, v in history
        ]
        name = MEASURES[key].name
        summary = progress(key, history) if key != "phq-2" else None
        latest_when, latest = points[-1]
        band = band_name(key, latest)
        rows.append(
            MeasureRow(
                instrument=key,
                name=name,
                latest=latest,
                latest_date=latest_when.isoformat(),
                band=band,
                baseline=points[0][1],
                change=latest - points[0][1],
                labels=change_labels(summary.labels if summary else ()),
                count=len(points),
                chart=instrument_chart(key, points, chart_id=f"chart-{key}"),
                worsening=rise_text(worsening(key, points), zone.key) if key in THRESHOLDS else "",
            )
        )
    return rows


def _assignment_rows(
    store: Store, patient_ref: str, pairs: list[tuple[TaskFacts, Stored]], moment: datetime
) -> list[AssignmentRow]:
    """Return the rows of "Active homework": open one-off Tasks, then active or paused plans."""
    plans = iter_all(
        store, "CarePlan", [("patient", patient_ref), HOMEWORK_PLANS, ("status", "active,on-hold")]
    )
    tasks_by_plan: dict[str, list[TaskFacts]] = {}
    one_off: list[dict[str, Any]] = []
    for facts, stored in pairs:
        if facts.plan:
            tasks_by_plan.setdefault(facts.plan, []).append(facts)
        elif facts.status in OPEN_STATUSES:
            one_off.append(stored.resource)
    refs = {task_canonical(t) or "" for t in one_off}
    refs |= {
        c
        for p in plans
        for a in p.get("activity") or []
        for c in (a.get("detail") or {}).get("instantiatesCanonical") or []
    }
    titles = questionnaire_titles(store, refs)
    reminders = _reminders(store, _reminder_targets(one_off, tasks_by_plan, moment))
    rows = _task_rows(
        sorted(one_off, key=lambda t: t.get("restriction", {}).get("period", {}).get("end", "")),
        titles,
        reminders,
    )
    return rows + _plan_rows(plans, tasks_by_plan, titles, reminders, moment)


def already_assigned(
    store: Store,
    patient: str,
    questionnaire: Mapping[str, Any],
    *,
    now: datetime | None = None,
) -> tuple[AssignmentRow, ...]:
    """Return a patient's active assignments of an activity, as "Active homework" lists them.

    Which ones count is :func:`hw_fhir.assignment.active_assignments_of` (what
    :func:`hw_fhir.assignment.assign` refuses to duplicate unless asked to).
    """
    patient_ref = reference("Patient", patient)
    wanted = set(active_assignments_of(store, patient_ref, questionnaire))
    if not wanted:
        return ()
    rows = _assignment_rows(
        store, patient_ref, patient_homework(store, patient_ref), current_moment(now)
    )
    return tuple(row for row in rows if row.ref in wanted)


def patient_dashboard(
    store: Store,
    patient: str,
    *,
    now: datetime | None = None,
    zone: str = "UTC",
    weeks: int = 12,
    responses: int = 8,
) -> PatientDashboard:
    """Return a patient's dashboard (see the module doc); reads each resource type once.

    ``zone`` is the patient's time zone. Every day of the patient's activity (score dates and
    the day of a worsening score, the calendar, last done, due days) is the patient's own
    calendar day, as on the panel (:func:`~.patient_panel.panel`) and in session prep, not
    the clinician's; times of day are for the page to give in the clinician's zone.
    """
    moment = current_moment(now)
    local = ZoneInfo(zone)
    patient_ref = reference("Patient", patient)
    pairs = patient_homework(store, patient_ref)
    tasks = [facts for facts, _ in pairs]
    assignments = _assignment_rows(store, patient_ref, pairs, moment)
    check_ins = [
        r
        for r in iter_all(
            store,
            "QuestionnaireResponse",
            [("patient", patient_ref), ("questionnaire", catalog.ENGAGEMENT_CHECK_IN_URL)],
        )
        if r.get("status") in ("completed", "amended")
    ]
    adherence = recent_adherence(tasks, check_ins, now=moment)
    dated = [(t, t.due, t.outcome(moment)) for t in tasks if t.due is not None]
    local_today = moment.astimezone(local).date()
    calendar = completion_calendar(
        [(due.astimezone(local).date(), outcome) for _, due, outcome in dated],
        end=local_today + timedelta(days=7),
        weeks=weeks,
        today=local_today,
        title="Homework by week",
    )
    soon = moment + timedelta(days=7)
    recent_tasks = sorted(
        ((t, due, o) for t, due, o in dated if o != "cancelled" and due <= soon),
        key=lambda item: item[1],
        reverse=True,
    )[:10]
    recent_titles = questionnaire_titles(store, (t.canonical or "" for t, _, _ in recent_tasks))
    recent = tuple(
        TaskRow(
            task=t.ref,
            activity=t.canonical,
            title=activity_title(recent_titles.get(t.canonical or "")),
            due=due.isoformat(),
            status=t.status,
            outcome=outcome,
            response=t.response,
        )
        for t, due, outcome in recent_tasks
    )
    return PatientDashboard(
        patient=patient_ref,
        flags=tuple(flag_rows(store, patient_ref)),
        assignments=tuple(assignments),
        adherence=adherence,
        measures=tuple(_measure_rows(store, patient_ref, local)),
        calendar=calendar,
        responses=tuple(responses_of_tasks(store, tasks, responses)),
        recent=recent,
    )
