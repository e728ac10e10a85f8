"""Assigning one activity to one patient: a one-off Task, or a CarePlan with its first Tasks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from .. import catalog
from ..errors import AlreadyAssigned, BusinessRuleError, Conflict
from ..events import TASK_CREATED, Events, publish
from ..library import resolve_questionnaire
from ..store.base import Store
from .care_plans import new_plan, plan_activity, write_plan
from .details import HomeworkDetails
from .duplicates import (
    active_assignments_of,
    earlier_assignment,
    request_criteria,
    request_identifier,
    request_plan_id,
)
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
    refuse_duplicate: bool = False,
) -> AssignResult:
    """Assign one activity: a one-off Task, or a CarePlan plus its first Tasks.

    The activity must be an ``active`` Questionnaire. A one-off due time must lie
    ahead. A recurring plan is written with the Tasks of its occurrences due in the
    next ``horizon_days`` in one transaction; the materializer creates the rest later.
    Publishes ``task_created`` per Task and ``plan_created``.

    With ``refuse_duplicate`` an activity the patient has active already (any version,
    :func:`~.duplicates.active_assignments_of`) raises :class:`AlreadyAssigned` and
    nothing is written: the clinician pages ask before a second schedule. An assignment
    with an ``idempotency_key`` sent again, even at the same moment, gets the first
    one's result back and writes and publishes nothing more.
    """
    moment = utc_now(now)
    earlier = earlier_assignment(store, assignment)
    if earlier is not None:
        return earlier
    questionnaire = assignable(store, assignment.activity)
    canonical = catalog.canonical(questionnaire)
    if refuse_duplicate:
        existing = active_assignments_of(store, assignment.patient, questionnaire)
        if existing:
            name = questionnaire.get("title") or questionnaire.get("name") or canonical
            raise AlreadyAssigned(
                f"“{name}” is already assigned to this patient; assigning it again makes a "
                "second, separate schedule",
                existing=tuple(existing),
            )
    details = assignment.details
    schedule = assignment.schedule
    key = assignment.idempotency_key
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
            identifier=request_identifier(key) if key else None,
        )
        written = store.create(
            task, if_none_exist=urlencode(request_criteria(assignment)) if key else None
        )
        if written.created:
            publish(events, TASK_CREATED, store=store, task=written.resource)
        return AssignResult(tasks=(written.resource,), warnings=details.warnings)
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
    if key:  # a resend writes the same plan id, so its Tasks match the first ones
        plan.update(id=request_plan_id(assignment), identifier=[request_identifier(key)])
    try:
        stored_plan, tasks = write_plan(
            store, plan, now=moment, horizon_days=horizon_days, events=events
        )
    except Conflict:  # a resend at the same moment created the plan first
        earlier = earlier_assignment(store, assignment)
        if earlier is None:
            raise
        return earlier
    return AssignResult(tasks=tuple(tasks), plan=stored_plan, warnings=details.warnings)
