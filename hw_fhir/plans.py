"""Recurring plans and pathways: the scheduler that keeps CarePlans' Tasks coming.

One scheduler pass (:func:`run_scheduler`) does, in order:

1. :func:`sweep_overdue` — a Task whose due time plus the grace period
   (``overdue_grace_hours``) has passed while it is still open becomes ``failed``
   with businessStatus ``missed``;
2. :func:`advance_plan` on every active homework CarePlan — an activity whose last
   occurrence has a Task and no Task of it is still open is ``completed``; a pathway
   step that starts ``afterPrevious`` is released when the step before it has ended
   (completed, skipped or stopped); a plan whose activities have all ended is
   ``completed``;
3. :func:`materialize` — the Tasks of every scheduled activity's occurrences due in
   the next ``materialize_horizon_days`` are created. Each Task has the identifier
   ``http://hw-fhir.org/fhir/sid/task-occurrence|<careplan-id>/<activity-index>/<key>``
   and is written with a conditional create, so running it twice (or on two
   machines at once) creates nothing new. Occurrences due more than the horizon in the
   past (a scheduler that was down for longer) are not created.

Pathways
--------
:func:`assign_pathway` turns a pathway template (:func:`hw_fhir.catalog.get_pathway`)
into one CarePlan (``instantiatesUri`` ``http://hw-fhir.org/fhir/pathway/<id>``) with one
activity per step, in order. A step's ``pathway-step`` extension on
``CarePlan.activity`` (``http://hw-fhir.org/fhir/StructureDefinition/pathway-step``,
complex) records ``sequence`` (valueInteger, 1-based), either ``delayDays``
(valueInteger) or ``afterPrevious`` (valueBoolean), ``required`` (valueBoolean) and,
once released, ``releasedAt`` (valueDateTime). A ``delayDays`` step is scheduled at
once from the pathway start plus the delay; an ``afterPrevious`` step waits
(``detail.status`` ``not-started``, its Timing's start a placeholder) and is released by
the scheduler with its schedule starting on the release day (the next day when the
due time of the release day has passed).

A clinician can :func:`pause_plan` (plan ``on-hold``; future Tasks not started go
``on-hold``), :func:`resume_plan` (back to ``active``; held Tasks still ahead return to
``requested``, those whose time passed are cancelled; occurrences during the pause
are not created), :func:`skip_step` and :func:`cancel_plan` (``revoked``: only future,
not-started Tasks are cancelled; completed work and drafts in progress stay).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from . import catalog
from .assignment import (
    COMPLETE_QUESTIONNAIRE,
    NOT_STARTED_STATUSES,
    OPEN_STATUSES,
    SDC_TEMP_SYSTEM,
    STRUCTURE_BASE,
    TASK_OCCURRENCE_SYSTEM,
    AssignResult,
    HomeworkDetails,
    activity_schedule,
    assignable,
    cancel_plan_tasks,
    create_entry,
    encounter_reference,
    instant,
    new_plan,
    occurrence_identifier,
    occurrence_tasks,
    occurrences_from,
    parse_instant,
    plan_activity,
    plan_tasks,
    reference,
    set_occurrences_from,
    status_entry,
    task_activity,
    task_due,
    transact,
    utc_now,
    with_business_status,
    without_extensions,
    write_plan,
)
from .config import Settings
from .errors import BusinessRuleError, InvalidInput, NotFound, VersionConflict
from .events import TASK_CREATED, TASK_STATUS_CHANGED, Events, publish
from .schedule import Schedule
from .store.base import Store, iter_all

__all__ = [
    "PATHWAY_BASE",
    "EXT_PATHWAY_STEP",
    "SchedulerRun",
    "run_scheduler",
    "materialize",
    "materialize_plan",
    "advance_plan",
    "completion_listener",
    "release_after_completion",
    "sweep_overdue",
    "assign_pathway",
    "pause_plan",
    "resume_plan",
    "skip_step",
    "cancel_plan",
    "stop_plan",
    "pathway_step",
]

#: ``CarePlan.instantiatesUri`` of a pathway is ``<PATHWAY_BASE>/<pathway id>``.
PATHWAY_BASE = f"{catalog.CANONICAL_BASE}/pathway"
EXT_PATHWAY_STEP = f"{STRUCTURE_BASE}/pathway-step"
_ENDED = frozenset({"completed", "cancelled", "stopped", "entered-in-error"})
_ACTIVE_PLAN_PARAMS = (
    ("status", "active"),
    ("category", f"{catalog.CODE_SYSTEM_BASE}/care-plan-category|homework"),
)


@dataclass(frozen=True)
class SchedulerRun:
    """What one scheduler pass did."""

    failed: tuple[dict[str, Any], ...] = ()
    released: tuple[str, ...] = ()
    completed_plans: tuple[str, ...] = ()
    created: tuple[dict[str, Any], ...] = ()
    problems: tuple[str, ...] = ()
    """Plans that could not be processed (e.g. a Timing this scheduler cannot express)."""
    plans: tuple[dict[str, Any], ...] = ()
    """The CarePlans this pass updated (activities completed, steps released), as stored."""


def _plan_ids(store: Store, params: tuple[tuple[str, str], ...], batch: int = 200) -> list[str]:
    """Return the ids of matching CarePlans (ids only, so memory stays small)."""
    ids: list[str] = []
    offset = 0
    while True:
        page = store.search(
            "CarePlan",
            [*params, ("_sort", "_id"), ("_count", str(batch)), ("_offset", str(offset))],
        )
        ids.extend(m.id for m in page.matches)
        if not page.has_more or not page.matches:
            return ids
        offset += len(page.matches)


def _active_plans(store: Store, plan_id: str | None) -> Iterator[dict[str, Any]]:
    ids = [plan_id] if plan_id else _plan_ids(store, _ACTIVE_PLAN_PARAMS)
    for rid in ids:
        try:
            plan = store.read("CarePlan", rid).resource
        except NotFound:
            continue
        if plan.get("status") == "active":
            yield plan


def run_scheduler(
    store: Store,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
    events: Events | None = None,
    horizon_days: int | None = None,
    grace_hours: int | None = None,
) -> SchedulerRun:
    """Sweep overdue Tasks, advance plans and pathways, then materialize Tasks ahead."""
    moment = utc_now(now)
    horizon = (
        horizon_days
        if horizon_days is not None
        else (settings.materialize_horizon_days if settings else 14)
    )
    grace = (
        grace_hours
        if grace_hours is not None
        else (settings.overdue_grace_hours if settings else 24)
    )
    failed = sweep_overdue(store, now=moment, grace_hours=grace, events=events)
    released: list[str] = []
    completed: list[str] = []
    created: list[dict[str, Any]] = []
    problems: list[str] = []
    updated: list[dict[str, Any]] = []
    for plan in _active_plans(store, None):
        try:
            advanced, steps = _advance(store, plan, moment)
            created.extend(
                materialize_plan(store, advanced, now=moment, horizon_days=horizon, events=events)
            )
        except VersionConflict:
            continue  # changed meanwhile: the next pass looks again
        except InvalidInput as exc:  # one broken plan must not stop the others
            problems.append(f"CarePlan/{plan['id']}: {exc.message}")
            continue
        released.extend(steps)
        if advanced is not plan:
            updated.append(advanced)
        if advanced.get("status") == "completed":
            completed.append(advanced["id"])
    return SchedulerRun(
        failed=tuple(failed),
        released=tuple(released),
        completed_plans=tuple(completed),
        created=tuple(created),
        problems=tuple(problems),
        plans=tuple(updated),
    )


# -- materializer -------------------------------------------------------------------------


def materialize(
    store: Store,
    *,
    now: datetime | None = None,
    horizon_days: int = 14,
    events: Events | None = None,
    plan_id: str | None = None,
) -> list[dict[str, Any]]:
    """Create the missing Tasks of every active homework plan (or one plan) up to the horizon.

    Idempotent: return only the Tasks created by this call.
    """
    moment = utc_now(now)
    created: list[dict[str, Any]] = []
    for plan in _active_plans(store, plan_id):
        try:
            created.extend(
                materialize_plan(store, plan, now=moment, horizon_days=horizon_days, events=events)
            )
        except VersionConflict:
            continue  # changed meanwhile: the next run looks again
    return created


def materialize_plan(
    store: Store,
    plan: Mapping[str, Any],
    *,
    now: datetime | None = None,
    horizon_days: int = 14,
    events: Events | None = None,
) -> list[dict[str, Any]]:
    """Create the missing Tasks of one active plan's scheduled activities; return them."""
    moment = utc_now(now)
    if plan.get("status") != "active":
        return []
    since = moment - timedelta(days=horizon_days)
    until = moment + timedelta(days=horizon_days)
    known = {
        ident.get("value")
        for task in iter_all(
            store, "Task", [("based-on", f"CarePlan/{plan['id']}"), ("due", f"ge{instant(since)}")]
        )
        for ident in task.get("identifier") or []
        if ident.get("system") == TASK_OCCURRENCE_SYSTEM
    }
    missing = []
    for index, activity in enumerate(plan.get("activity") or []):
        if (activity.get("detail") or {}).get("status") not in ("scheduled", "in-progress"):
            continue
        for task in occurrence_tasks(plan, index, until=until, now=moment, since=since):
            if task["identifier"][0]["value"] not in known:
                missing.append(task)
    created = [
        entry["resource"]
        for entry in transact(store, [create_entry(t) for t in missing])
        if str(entry["response"]["status"]).startswith("201")
    ]
    for task in created:
        publish(events, TASK_CREATED, store=store, task=task)
    return created


# -- overdue sweep ------------------------------------------------------------------------


def sweep_overdue(
    store: Store,
    *,
    now: datetime | None = None,
    grace_hours: int = 24,
    events: Events | None = None,
    batch: int = 200,
) -> list[dict[str, Any]]:
    """Mark open homework Tasks ``failed`` (businessStatus ``missed``) once due + grace passed.

    Tasks on hold (a paused plan) are left alone. A Task changed meanwhile (the patient
    submitting it right now) is skipped. Each match is checked again here, so a remote
    server that does not know the ``due`` search parameter cannot make it fail Tasks
    that are not overdue. Return the Tasks marked failed.
    """
    moment = utc_now(now)
    cutoff = moment - timedelta(hours=grace_hours)
    statuses = ",".join(sorted(OPEN_STATUSES - {"on-hold", "draft"}))
    params = [
        ("code", f"{SDC_TEMP_SYSTEM}|{COMPLETE_QUESTIONNAIRE}"),
        ("status", statuses),
        ("due", f"eb{instant(cutoff)}"),
        ("_sort", "_id"),
        ("_count", str(batch)),
    ]
    failed: list[dict[str, Any]] = []
    skipped = 0
    while True:
        page = store.search("Task", [*params, ("_offset", str(skipped))])
        if not page.matches:
            return failed
        for task in page.resources:
            due = task_due(task)
            if due is None or due >= cutoff or task.get("status") not in OPEN_STATUSES:
                skipped += 1  # a server that ignored a search parameter: never fail these
                continue
            marked = with_business_status(
                dict(
                    task,
                    status="failed",
                    statusReason={"text": "The due time passed before it was completed"},
                    lastModified=instant(moment),
                ),
                "missed",
            )
            try:
                stored = transact(store, [status_entry(marked)])[0]["resource"]
            except VersionConflict:
                skipped += 1
                continue
            failed.append(stored)
            publish(
                events,
                TASK_STATUS_CHANGED,
                store=store,
                task=stored,
                previous_status=task["status"],
            )
        if not page.has_more:
            return failed


# -- advancing plans and pathways ---------------------------------------------------------


def pathway_step(activity: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return a pathway activity's step facts (sequence, delayDays/afterPrevious, required...)."""
    for ext in activity.get("extension") or []:
        if ext.get("url") != EXT_PATHWAY_STEP:
            continue
        out: dict[str, Any] = {}
        for part in ext.get("extension") or []:
            for key, value in part.items():
                if key.startswith("value"):
                    out[part["url"]] = value
        return out
    return None


def _step_extension(
    sequence: int, start: Mapping[str, Any], required: bool, released: datetime | None = None
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "sequence", "valueInteger": sequence}]
    if "afterPrevious" in start:
        parts.append({"url": "afterPrevious", "valueBoolean": True})
    else:
        parts.append({"url": "delayDays", "valueInteger": int(start["delayDays"])})
    parts.append({"url": "required", "valueBoolean": bool(required)})
    if released is not None:
        parts.append({"url": "releasedAt", "valueDateTime": instant(released)})
    return {"url": EXT_PATHWAY_STEP, "extension": parts}


def _mark_released(activity: Mapping[str, Any], moment: datetime) -> dict[str, Any]:
    step = pathway_step(activity) or {}
    start = (
        {"afterPrevious": True}
        if step.get("afterPrevious")
        else {"delayDays": step.get("delayDays", 0)}
    )
    out = dict(activity)
    out["extension"] = without_extensions(activity, [EXT_PATHWAY_STEP]) + [
        _step_extension(
            int(step.get("sequence", 0)), start, bool(step.get("required", True)), moment
        )
    ]
    return out


def _first_day(day: date, schedule_for: Callable[[date], Schedule], moment: datetime) -> date:
    """Return ``day``, or the next day whose due time is still ahead when ``day`` has passed."""
    zone_today = moment.astimezone(schedule_for(day).zone).date()
    day = max(day, zone_today)
    if schedule_for(day).due_on(day) <= moment:
        day += timedelta(days=1)
    return day


def _rescheduled(schedule: Schedule, start: date) -> Schedule:
    return Schedule(
        frequency=schedule.frequency,
        start=start,
        timezone=schedule.timezone,
        time_of_day=schedule.time_of_day,
        interval=schedule.interval,
        days_of_week=schedule.days_of_week,
        count=schedule.count,
        until=schedule.until,
    )


def _release(activity: Mapping[str, Any], moment: datetime) -> dict[str, Any]:
    """Return a not-started pathway step scheduled to start now (the release)."""
    template = activity_schedule(activity)
    start = _first_day(moment.date(), lambda d: _rescheduled(template, d), moment)
    schedule = _rescheduled(template, start)
    detail = dict(
        activity.get("detail") or {}, status="scheduled", scheduledTiming=schedule.to_fhir_timing()
    )
    released = _mark_released(dict(activity, detail=detail), moment)
    return set_occurrences_from(released, moment)


def _activity_ended(
    store: Store, plan: Mapping[str, Any], index: int, open_tasks: list[dict[str, Any]]
) -> bool:
    """Whether a scheduled activity is over: its last occurrence exists and nothing is open."""
    activity = plan["activity"][index]
    schedule = activity_schedule(activity)
    last_date = schedule.last_date
    if last_date is None:
        return False
    if any(task_activity(t) == index for t in open_tasks):
        return False
    last = next(schedule.iter_occurrences(schedule.due_on(last_date)), None)
    start = occurrences_from(activity)
    if last is None or (start is not None and last.due < start):
        return True
    ident = occurrence_identifier(plan["id"], index, last.key)
    found = store.search("Task", [("identifier", f"{ident['system']}|{ident['value']}")])
    return bool(found.matches)


def _advance(
    store: Store, plan: dict[str, Any], moment: datetime
) -> tuple[dict[str, Any], list[str]]:
    activities = copy.deepcopy(list(plan.get("activity") or []))
    open_tasks = plan_tasks(store, plan["id"], OPEN_STATUSES)
    changed = False
    released: list[str] = []
    for index, activity in enumerate(activities):
        detail = activity.get("detail") or {}
        if detail.get("status") == "scheduled" and _activity_ended(
            store, dict(plan, activity=activities), index, open_tasks
        ):
            activities[index] = dict(activity, detail=dict(detail, status="completed"))
            changed = True
        elif detail.get("status") == "not-started":
            previous = activities[index - 1] if index else None
            step = pathway_step(activity) or {}
            prev_status = ((previous or {}).get("detail") or {}).get("status")
            if not step.get("afterPrevious") or prev_status in _ENDED:
                activities[index] = _release(activity, moment)
                released.append(f"CarePlan/{plan['id']}#{index}")
                changed = True
    if not changed:
        return plan, []
    updated = dict(plan, activity=activities)
    if all((a.get("detail") or {}).get("status") in _ENDED for a in activities):
        updated["status"] = "completed"
    stored = transact(store, [status_entry(updated)])[0]["resource"]
    return stored, released


def advance_plan(
    store: Store,
    plan_id: str,
    *,
    now: datetime | None = None,
    horizon_days: int = 14,
    events: Events | None = None,
) -> dict[str, Any]:
    """Complete ended activities, release due pathway steps, create their Tasks; return the plan."""
    moment = utc_now(now)
    plan = store.read("CarePlan", plan_id).resource
    if plan.get("status") != "active":
        return plan
    plan, _ = _advance(store, plan, moment)
    materialize_plan(store, plan, now=moment, horizon_days=horizon_days, events=events)
    return plan


def release_after_completion(
    store: Store,
    task: Mapping[str, Any],
    *,
    amended: bool = False,
    horizon_days: int = 14,
    events: Events | None = None,
) -> None:
    """Advance the plan of a Task just completed, so its next pathway step is released at once.

    The built-in plugin :mod:`hw_fhir.default_plans` calls it on ``response_completed``:
    the next step is released, and its Tasks created (announced on ``events``), as soon
    as the previous step is done, instead of at the next scheduler pass. The
    completion time (``Task.executionPeriod.end``) is the moment of release. An
    amendment, or a Task that is not completed, changes nothing.
    """
    if amended or task.get("status") != "completed":
        return
    end = (task.get("executionPeriod") or {}).get("end")
    moment = parse_instant(end) if end else utc_now()
    for ref in task.get("basedOn") or []:
        target = str(ref.get("reference", ""))
        if not target.startswith("CarePlan/"):
            continue
        try:
            advance_plan(store, target.split("/", 1)[1], now=moment, horizon_days=horizon_days,
                         events=events)
        except VersionConflict:
            return  # changed meanwhile: the scheduler advances it


def completion_listener(
    events: Events | None = None, *, horizon_days: int = 14
) -> Callable[..., None]:
    """Return a ``response_completed`` listener calling :func:`release_after_completion`.

    For a publisher without the built-in plugins (``Events()``); ``services.events``
    already releases through :mod:`hw_fhir.default_plans`.
    """

    def listener(store: Store, task: Mapping[str, Any], amended: bool) -> None:
        release_after_completion(store, task, amended=amended, horizon_days=horizon_days,
                                 events=events)

    return listener


# -- pathways -----------------------------------------------------------------------------


def assign_pathway(
    store: Store,
    pathway: str | Mapping[str, Any],
    *,
    patient: str,
    practitioner: str,
    start: date,
    timezone: str,
    time_of_day: time | None = None,
    wording: str = "homework",
    reminder_channel: str | None = None,
    encounter: str | None = None,
    events: Events | None = None,
    now: datetime | None = None,
    horizon_days: int = 14,
) -> AssignResult:
    """Assign a pathway template (a catalog id or a template dict) as one CarePlan.

    Every step's activity must be an active Questionnaire in the store. Steps that
    start after a delay are scheduled at once; steps that start after the previous one
    wait to be released. The Tasks due within the horizon are created with the plan.
    """
    moment = utc_now(now)
    template = (
        catalog.get_pathway(pathway)
        if isinstance(pathway, str)
        else catalog.check_pathway(dict(pathway))
    )
    patient_ref = reference("Patient", patient)
    practitioner_ref = reference("Practitioner", practitioner)
    if isinstance(start, datetime) or not isinstance(start, date):
        raise InvalidInput(f"start must be a date (got {start!r})")
    activities = []
    for sequence, step in enumerate(template["steps"], start=1):
        questionnaire = assignable(store, step["activity"])
        canonical = catalog.canonical(questionnaire)
        details = HomeworkDetails(
            instructions=step.get("instructions", ""),
            rationale=step.get("rationale", ""),
            wording=wording,
            reminder_channel=reminder_channel,
        )

        def schedule_for(day: date, step: Mapping[str, Any] = step) -> Schedule:
            return catalog.step_schedule(
                step, start=day, timezone=timezone, time_of_day=time_of_day
            )

        if "afterPrevious" in step["start"]:
            activity = plan_activity(
                canonical, schedule_for(start), details, moment, patient_ref, status="not-started"
            )
            released = None
        else:
            day = start + timedelta(days=step["start"]["delayDays"])
            if schedule_for(day).due_on(day) <= moment:
                day = _first_day(day, schedule_for, moment)
            activity = plan_activity(canonical, schedule_for(day), details, moment, patient_ref)
            released = moment
        activity["extension"] = list(activity.get("extension") or []) + [
            _step_extension(sequence, step["start"], step.get("required", True), released)
        ]
        activities.append(activity)
    plan = new_plan(
        patient=patient_ref,
        practitioner=practitioner_ref,
        title=template["title"],
        description=template.get("description"),
        encounter=encounter and encounter_reference(encounter),
        now=moment,
        activities=activities,
        start=start,
        end=None,
        instantiates_uri=f"{PATHWAY_BASE}/{template['id']}",
    )
    stored_plan, tasks = write_plan(
        store, plan, now=moment, horizon_days=horizon_days, events=events
    )
    return AssignResult(tasks=tuple(tasks), plan=stored_plan)


# -- pause, resume, skip, stop ------------------------------------------------------------


def _change_tasks(
    store: Store,
    plan: dict[str, Any],
    tasks: list[tuple[dict[str, Any], str]],
    events: Events | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Write a plan and changed Tasks (with their previous status) in one transaction."""
    response = transact(store, [status_entry(plan), *(status_entry(t) for t, _ in tasks)])
    stored = [entry["resource"] for entry in response[1:]]
    for task, (_, previous) in zip(stored, tasks, strict=True):
        if task.get("status") != previous:
            publish(events, TASK_STATUS_CHANGED, store=store, task=task, previous_status=previous)
    return response[0]["resource"], stored


def pause_plan(
    store: Store,
    plan_id: str,
    *,
    reason: str = "Paused by the clinician",
    now: datetime | None = None,
    events: Events | None = None,
) -> dict[str, Any]:
    """Put an active plan ``on-hold``: no new Tasks, and its future not-started Tasks wait."""
    moment = utc_now(now)
    plan = store.read("CarePlan", plan_id).resource
    if plan.get("status") == "on-hold":
        return plan
    if plan.get("status") != "active":
        raise BusinessRuleError(f"CarePlan/{plan_id} is {plan.get('status')} and cannot be paused")
    held = []
    for task in plan_tasks(store, plan_id, NOT_STARTED_STATUSES - {"on-hold"}):
        due = task_due(task)
        if due is None or due > moment:
            held.append(
                (
                    dict(
                        task,
                        status="on-hold",
                        statusReason={"text": reason},
                        lastModified=instant(moment),
                    ),
                    task["status"],
                )
            )
    paused = dict(
        plan,
        status="on-hold",
        note=list(plan.get("note") or []) + [{"time": instant(moment), "text": reason}],
    )
    stored, _ = _change_tasks(store, paused, held, events)
    return stored


def resume_plan(
    store: Store,
    plan_id: str,
    *,
    now: datetime | None = None,
    horizon_days: int = 14,
    events: Events | None = None,
) -> dict[str, Any]:
    """Make a paused plan ``active`` again and create its upcoming Tasks.

    Held Tasks still ahead go back to ``requested``; held Tasks whose due time passed
    during the pause are cancelled (businessStatus ``paused``). Occurrences due during
    the pause are not created.
    """
    moment = utc_now(now)
    plan = store.read("CarePlan", plan_id).resource
    if plan.get("status") == "active":
        return plan
    if plan.get("status") != "on-hold":
        raise BusinessRuleError(f"CarePlan/{plan_id} is {plan.get('status')}, not paused")
    changes = []
    for task in plan_tasks(store, plan_id, ["on-hold"]):
        due = task_due(task)
        if due is None or due > moment:
            back = {k: v for k, v in task.items() if k != "statusReason"}
            changes.append(
                (dict(back, status="requested", lastModified=instant(moment)), "on-hold")
            )
        else:
            changes.append(
                (
                    with_business_status(
                        dict(
                            task,
                            status="cancelled",
                            statusReason={"text": "Due while the plan was paused"},
                            lastModified=instant(moment),
                        ),
                        "paused",
                    ),
                    "on-hold",
                )
            )
    activities = [
        set_occurrences_from(a, moment)
        if (a.get("detail") or {}).get("status") == "scheduled"
        else a
        for a in plan.get("activity") or []
    ]
    resumed = dict(plan, status="active", activity=activities)
    stored, _ = _change_tasks(store, resumed, changes, events)
    materialize_plan(store, stored, now=moment, horizon_days=horizon_days, events=events)
    return stored


def skip_step(
    store: Store,
    plan_id: str,
    step_index: int,
    *,
    reason: str = "Skipped by the clinician",
    now: datetime | None = None,
    horizon_days: int = 14,
    events: Events | None = None,
) -> dict[str, Any]:
    """Skip a step (activity) of a plan: cancel its not-started Tasks and release the next."""
    moment = utc_now(now)
    plan = store.read("CarePlan", plan_id).resource
    if plan.get("status") not in ("active", "on-hold"):
        raise BusinessRuleError(f"CarePlan/{plan_id} is {plan.get('status')}")
    activities = list(plan.get("activity") or [])
    if not 0 <= step_index < len(activities):
        raise NotFound(f"CarePlan/{plan_id} has no step {step_index}")
    detail = dict(activities[step_index].get("detail") or {})
    if detail.get("status") in _ENDED:
        raise BusinessRuleError(f"Step {step_index} of CarePlan/{plan_id} is {detail['status']}")
    detail["status"] = "cancelled" if detail.get("status") == "not-started" else "stopped"
    detail["statusReason"] = {"text": reason}
    activities[step_index] = dict(activities[step_index], detail=detail)
    changes = [
        (
            with_business_status(
                dict(
                    t,
                    status="cancelled",
                    statusReason={"text": reason},
                    lastModified=instant(moment),
                ),
                "step-skipped",
            ),
            t["status"],
        )
        for t in plan_tasks(store, plan_id, NOT_STARTED_STATUSES)
        if task_activity(t) == step_index
    ]
    stored, _ = _change_tasks(store, dict(plan, activity=activities), changes, events)
    if stored.get("status") == "active":
        stored = advance_plan(store, plan_id, now=moment, horizon_days=horizon_days, events=events)
    return stored


def cancel_plan(
    store: Store,
    plan_id: str,
    *,
    reason: str = "Stopped by the clinician",
    now: datetime | None = None,
    events: Events | None = None,
) -> dict[str, Any]:
    """Stop a plan or pathway (``revoked``); cancel only its future, not-started Tasks."""
    plan, _ = cancel_plan_tasks(store, plan_id, reason=reason, now=utc_now(now), events=events)
    return plan


#: Stopping a pathway is cancelling its plan.
stop_plan = cancel_plan
