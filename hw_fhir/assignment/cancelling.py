"""Cancelling an assignment: one Task, or a whole plan with its future Tasks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..events import TASK_STATUS_CHANGED, Events, publish
from ..store.base import Store
from .care_plans import plan_tasks
from .instants import instant, utc_now
from .references import split_assignment_ref
from .request import AssignResult
from .task_fields import task_due, with_business_status
from .transactions import status_entry, transact
from .vocabulary import NOT_STARTED_STATUSES, TERMINAL_STATUSES


def cancel_assignment(
    store: Store,
    ref: str,
    *,
    reason: str = "Cancelled by the clinician",
    events: Events | None = None,
    now: datetime | None = None,
) -> AssignResult:
    """Cancel a Task (unless it is finished already) or a whole plan (see plans.cancel_plan).

    Completed, failed and cancelled Tasks are left as they are.
    """
    moment = utc_now(now)
    kind, rid = split_assignment_ref(ref)
    if kind == "CarePlan":
        plan, tasks = cancel_plan_tasks(store, rid, reason=reason, now=moment, events=events)
        return AssignResult(tasks=tuple(tasks), plan=plan)
    task = store.read("Task", rid).resource
    if task.get("status") in TERMINAL_STATUSES:
        return AssignResult(tasks=(task,))
    cancelled = with_business_status(
        dict(task, status="cancelled", statusReason={"text": reason}, lastModified=instant(moment)),
        "assignment-cancelled",
    )
    stored = transact(store, [status_entry(cancelled)])[0]["resource"]
    publish(events, TASK_STATUS_CHANGED, store=store, task=stored, previous_status=task["status"])
    return AssignResult(tasks=(stored,))


def cancel_plan_tasks(
    store: Store,
    plan_id: str,
    *,
    reason: str,
    now: datetime,
    events: Events | None,
    plan_status: str = "revoked",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """End a CarePlan and cancel its future, not-started Tasks, in one transaction.

    Return the stored plan and the Tasks cancelled. Tasks in progress, finished, or
    whose due time has passed (the overdue sweep decides those) are left alone.
    """
    plan = store.read("CarePlan", plan_id).resource
    if plan.get("status") in ("revoked", "completed", "entered-in-error"):
        return plan, []
    activities = []
    for activity in plan.get("activity") or []:
        detail = dict(activity.get("detail") or {})
        if detail.get("status") == "not-started":
            detail["status"] = "cancelled"
        elif detail.get("status") in ("scheduled", "in-progress", "on-hold"):
            detail["status"] = "stopped"
        activities.append(dict(activity, detail=detail))
    ended = dict(plan, status=plan_status, activity=activities)
    period = dict(plan.get("period") or {})
    local_end = now.date().isoformat()
    if not period.get("end") or period["end"] > local_end:
        period["end"] = max(local_end, period.get("start", local_end))
    ended["period"] = period
    ended["note"] = list(plan.get("note") or []) + [{"time": instant(now), "text": reason}]
    future = [
        t
        for t in plan_tasks(store, plan_id, NOT_STARTED_STATUSES)
        if (task_due(t) or now + timedelta(seconds=1)) > now
    ]
    cancelled = [
        with_business_status(
            dict(t, status="cancelled", statusReason={"text": reason}, lastModified=instant(now)),
            "plan-cancelled",
        )
        for t in future
    ]
    response = transact(store, [status_entry(ended), *map(status_entry, cancelled)])
    stored = [entry["resource"] for entry in response[1:]]
    for task, before in zip(stored, future, strict=True):
        publish(
            events, TASK_STATUS_CHANGED, store=store, task=task, previous_status=before["status"]
        )
    return response[0]["resource"], stored
