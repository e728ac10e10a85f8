"""Editing an assignment: new details or due time of a one-off Task, new details or a new
schedule of a recurring plan's activity."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ..errors import BusinessRuleError, InvalidInput, Issue, NotFound
from ..events import TASK_CREATED, TASK_STATUS_CHANGED, Events, publish
from ..schedule import Schedule
from ..store.base import Store
from .care_plans import plan_activity, plan_tasks
from .details import HomeworkDetails
from .instants import instant, parse_instant, utc_now
from .occurrences import occurrence_tasks
from .references import split_assignment_ref
from .request import AssignResult
from .task_fields import task_activity, task_due, with_business_status
from .transactions import create_entry, status_entry, transact, was_created
from .vocabulary import NOT_STARTED_STATUSES, OPEN_STATUSES


@dataclass(frozen=True, kw_only=True)
class AssignmentEdit:
    """Changes to an assignment; a field left None stays as it is ("" clears a text)."""

    instructions: str | None = None
    rationale: str | None = None
    example: str | None = None
    wording: str | None = None
    confidence: int | None = None
    reminder_channel: str | None = None
    due: datetime | None = None
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        if self.due is not None and (not isinstance(self.due, datetime) or self.due.tzinfo is None):
            raise InvalidInput(
                "due must be a timezone-aware datetime",
                issues=[Issue("due must be a timezone-aware datetime", expression="due")],
            )
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise InvalidInput("schedule must be a Schedule")

    def details(self, current: HomeworkDetails) -> HomeworkDetails:
        """Return the current details with this edit applied."""
        changes = {
            name: getattr(self, name)
            for name in (
                "instructions",
                "rationale",
                "example",
                "wording",
                "confidence",
                "reminder_channel",
            )
            if getattr(self, name) is not None
        }
        if changes.get("reminder_channel") == "":
            changes["reminder_channel"] = None
        return replace(current, **changes)


def edit_assignment(
    store: Store,
    ref: str,
    edit: AssignmentEdit,
    *,
    activity_index: int = 0,
    events: Events | None = None,
    now: datetime | None = None,
    horizon_days: int = 14,
) -> AssignResult:
    """Change a one-off Task (``Task/<id>``) or a recurring plan's activity (``CarePlan/<id>``).

    A Task must still be open; its due time may move (to the future). For a plan, the
    details are rewritten on the activity and on its Tasks not started yet; a new
    ``schedule`` stops the old activity (its future, not-started Tasks are cancelled)
    and adds the rescheduled one, whose Tasks are created at once. Completed work is
    never touched.
    """
    moment = utc_now(now)
    kind, rid = split_assignment_ref(ref)
    if kind == "Task":
        return _edit_task(store, rid, edit, moment, events)
    return _edit_plan(store, rid, edit, activity_index, moment, events, horizon_days)


def _edit_task(
    store: Store, rid: str, edit: AssignmentEdit, moment: datetime, events: Events | None
) -> AssignResult:
    task = store.read("Task", rid).resource
    if task.get("status") not in OPEN_STATUSES:
        raise BusinessRuleError(
            f"Task/{rid} is {task.get('status')}; only open homework can be edited"
        )
    if edit.schedule is not None:
        raise BusinessRuleError("A single Task has no schedule; give a new due time instead")
    details = edit.details(HomeworkDetails.from_task(task))
    updated = details.apply_to_task(task)
    if edit.due is not None:
        if edit.due <= moment:
            raise BusinessRuleError("The new due time has already passed")
        period = dict((task.get("restriction") or {}).get("period") or {})
        period["end"] = instant(edit.due)
        if period.get("start") and parse_instant(period["start"]) > edit.due:
            period["start"] = instant(moment)
        updated["restriction"] = {"period": period}
    updated["lastModified"] = instant(moment)
    stored = transact(store, [status_entry(updated)])[0]["resource"]
    return AssignResult(tasks=(stored,), warnings=details.warnings)


def _edit_plan(
    store: Store,
    rid: str,
    edit: AssignmentEdit,
    index: int,
    moment: datetime,
    events: Events | None,
    horizon_days: int,
) -> AssignResult:
    plan = store.read("CarePlan", rid).resource
    if plan.get("status") not in ("active", "on-hold"):
        raise BusinessRuleError(f"CarePlan/{rid} is {plan.get('status')} and cannot be edited")
    activities = list(plan.get("activity") or [])
    if not 0 <= index < len(activities):
        raise NotFound(f"CarePlan/{rid} has no activity {index}")
    activity = activities[index]
    detail = activity.get("detail") or {}
    if detail.get("status") in ("completed", "cancelled", "stopped"):
        raise BusinessRuleError(f"Activity {index} of CarePlan/{rid} is {detail.get('status')}")
    details = edit.details(HomeworkDetails.from_detail(detail))
    open_tasks = [
        t for t in plan_tasks(store, rid, NOT_STARTED_STATUSES) if task_activity(t) == index
    ]
    entries: list[dict[str, Any]] = []
    changed: list[tuple[dict[str, Any], str]] = []
    if edit.schedule is not None:
        if plan.get("instantiatesUri"):
            raise BusinessRuleError("A pathway step keeps the pathway's schedule; skip it instead")
        activities[index] = dict(activity, detail=dict(detail, status="stopped"))
        activities.append(
            plan_activity(
                detail["instantiatesCanonical"][0],
                edit.schedule,
                details,
                moment,
                plan["subject"]["reference"],
            )
        )
        for task in open_tasks:
            due = task_due(task)
            if due is None or due > moment:
                cancelled = with_business_status(
                    dict(
                        task,
                        status="cancelled",
                        statusReason={"text": "Rescheduled"},
                        lastModified=instant(moment),
                    ),
                    "rescheduled",
                )
                entries.append(status_entry(cancelled))
                changed.append((cancelled, task["status"]))
    else:
        activities[index] = dict(activity, detail=details.apply_to_detail(detail))
        for task in open_tasks:
            updated = details.apply_to_task(task)
            updated["lastModified"] = instant(moment)
            entries.append(status_entry(updated))
    changed_plan = dict(plan, activity=activities)
    if edit.schedule is not None:
        period = {
            "start": (plan.get("period") or {}).get("start") or edit.schedule.start.isoformat()
        }
        last = edit.schedule.last_date
        if last is not None:
            period["end"] = last.isoformat()
        changed_plan["period"] = period
    response = transact(store, [status_entry(changed_plan), *entries])
    stored_plan = response[0]["resource"]
    for (_, previous), entry in zip(changed, response[1 : 1 + len(changed)], strict=True):
        publish(
            events,
            TASK_STATUS_CHANGED,
            store=store,
            task=entry["resource"],
            previous_status=previous,
        )
    created: list[dict[str, Any]] = []
    if edit.schedule is not None and stored_plan.get("status") == "active":
        until = moment + timedelta(days=horizon_days)
        new_tasks = occurrence_tasks(stored_plan, len(activities) - 1, until=until, now=moment)
        for entry in transact(store, [create_entry(t) for t in new_tasks]):
            if was_created(entry):
                created.append(entry["resource"])
                publish(events, TASK_CREATED, store=store, task=entry["resource"])
    return AssignResult(tasks=tuple(created), plan=stored_plan, warnings=details.warnings)
