"""Assigning one activity to one patient: a one-off Task, or a CarePlan with its first Tasks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .. import catalog
from ..errors import BusinessRuleError
from ..events import TASK_CREATED, Events, publish
from ..library import resolve_questionnaire
from ..store.base import Store
from .care_plans import new_plan, plan_activity, write_plan
from .details import HomeworkDetails
from .instants import utc_now
from .request import Assignment, AssignResult
from .task_builder import build_task


def assignable(store: Store, activity: str) -> dict[str, Any]:
    """Return the Questionnaire an assignment names; BusinessRuleError unless it is active."""
    questionnaire = resolve_questionnaire(store, activity)
    status = questionnaire.get("status")
    if status != "active":
        hint = "publish it first" if status == "draft" else "choose a current activity"
        raise BusinessRuleError(
            f"{catalog.canonical(questionnaire)} is {status} and cannot be assigned; {hint}"
        )
    return questionnaire


def _plan_title(questionnaire: Mapping[str, Any], details: HomeworkDetails) -> str:
    name = questionnaire.get("title") or questionnaire.get("name") or "activity"
    return f"{details.wording[:1].upper()}{details.wording[1:]}: {name}"


def assign(
    store: Store,
    assignment: Assignment,
    *,
    events: Events | None = None,
    now: datetime | None = None,
    horizon_days: int = 14,
) -> AssignResult:
    """Assign one activity: a one-off Task, or a CarePlan plus its first Tasks.

    The activity must be an ``active`` Questionnaire. A one-off due time must lie
    ahead. A recurring plan is written with the Tasks of its occurrences due in the
    next ``horizon_days`` in one transaction; the materializer creates the rest later.
    Publishes ``task_created`` per Task and ``plan_created``.
    """
    moment = utc_now(now)
    questionnaire = assignable(store, assignment.activity)
    canonical = catalog.canonical(questionnaire)
    details = assignment.details
    schedule = assignment.schedule
    if schedule.frequency == "once":
        due = schedule.due_on(schedule.start)
        if due <= moment:
            raise BusinessRuleError(
                f"The due time {due.isoformat()} has already passed; choose a later one"
            )
        task = build_task(
            canonical=canonical,
            patient=assignment.patient,
            practitioner=assignment.practitioner,
            details=details,
            due=due,
            opens=moment,
            now=moment,
            encounter=assignment.encounter,
        )
        stored = store.create(task).resource
        publish(events, TASK_CREATED, store=store, task=stored)
        return AssignResult(tasks=(stored,), warnings=details.warnings)
    plan = new_plan(
        patient=assignment.patient,
        practitioner=assignment.practitioner,
        title=assignment.title or _plan_title(questionnaire, details),
        encounter=assignment.encounter,
        now=moment,
        activities=[plan_activity(canonical, schedule, details, moment, assignment.patient)],
        start=schedule.start,
        end=schedule.last_date,
    )
    stored_plan, tasks = write_plan(
        store, plan, now=moment, horizon_days=horizon_days, events=events
    )
    return AssignResult(tasks=tuple(tasks), plan=stored_plan, warnings=details.warnings)
