"""Homework CarePlans: a new plan and its activities, writing a plan with its first Tasks,
and finding a plan's Tasks."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from ..events import PLAN_CREATED, TASK_CREATED, Events, publish
from ..schedule import Schedule
from ..store.base import Store, iter_all
from .details import HomeworkDetails
from .instants import instant
from .occurrences import occurrence_tasks, set_occurrences_from
from .transactions import create_entry, transact, was_created
from .vocabulary import HOMEWORK_CATEGORY


def plan_activity(
    canonical: str,
    schedule: Schedule,
    details: HomeworkDetails,
    moment: datetime,
    patient: str,
    *,
    status: str = "scheduled",
) -> dict[str, Any]:
    """Return a CarePlan.activity for a Questionnaire on a schedule (released at ``moment``)."""
    detail = {
        "kind": "Task",
        "instantiatesCanonical": [canonical],
        "status": status,
        "scheduledTiming": schedule.to_fhir_timing(),
        "performer": [{"reference": patient}],
    }
    activity = {"detail": details.apply_to_detail(detail)}
    return set_occurrences_from(activity, moment) if status == "scheduled" else activity


def new_plan(
    *,
    patient: str,
    practitioner: str,
    title: str,
    encounter: str | None,
    now: datetime,
    activities: list[dict[str, Any]],
    start: date,
    end: date | None,
    description: str | None = None,
    instantiates_uri: str | None = None,
) -> dict[str, Any]:
    """Return a new homework CarePlan (active, intent plan) with a fresh id, not stored yet."""
    plan: dict[str, Any] = {"resourceType": "CarePlan", "id": str(uuid.uuid4())}
    if instantiates_uri:
        plan["instantiatesUri"] = [instantiates_uri]
    plan.update(
        {
            "status": "active",
            "intent": "plan",
            "category": [copy.deepcopy(HOMEWORK_CATEGORY)],
            "title": title,
        }
    )
    if description:
        plan["description"] = description
    plan["subject"] = {"reference": patient}
    if encounter:
        plan["encounter"] = {"reference": encounter}
    period = {"start": start.isoformat()}
    if end is not None:
        period["end"] = end.isoformat()
    plan.update(
        {
            "period": period,
            "created": instant(now),
            "author": {"reference": practitioner},
            "activity": activities,
        }
    )
    return plan


def write_plan(
    store: Store, plan: dict[str, Any], *, now: datetime, horizon_days: int, events: Events | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Store a new CarePlan and the Tasks of its first ``horizon_days`` in one transaction.

    A plan whose id is stored already (the same assignment request sent twice) is written
    again; its Tasks match those written the first time, and nothing is announced.
    """
    until = now + timedelta(days=horizon_days)
    tasks = [
        task
        for index, activity in enumerate(plan["activity"])
        if (activity.get("detail") or {}).get("status") == "scheduled"
        for task in occurrence_tasks(plan, index, until=until, now=now)
    ]
    entries = [{"resource": plan, "request": {"method": "PUT", "url": f"CarePlan/{plan['id']}"}}]
    entries += [create_entry(task) for task in tasks]
    response = transact(store, entries)
    stored_plan = response[0]["resource"]
    stored_tasks = [entry["resource"] for entry in response[1:] if was_created(entry)]
    if not was_created(response[0]):
        return stored_plan, stored_tasks
    for task in stored_tasks:
        publish(events, TASK_CREATED, store=store, task=task)
    publish(events, PLAN_CREATED, store=store, plan=stored_plan, tasks=stored_tasks)
    return stored_plan, stored_tasks


def plan_tasks(store: Store, plan_id: str, statuses: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Return the Tasks of a CarePlan, optionally only those in some statuses."""
    params = [("based-on", f"CarePlan/{plan_id}")]
    wanted = ",".join(statuses)
    if wanted:
        params.append(("status", wanted))
    return iter_all(store, "Task", params)
