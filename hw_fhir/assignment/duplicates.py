"""What a patient already has of an activity, and an assignment submitted twice.

A patient's *active* assignments of an activity are the open one-off Tasks asking for
that Questionnaire and the homework CarePlans (``active`` or ``on-hold``) with a step of
it not ended yet; any version of the Questionnaire counts, since a second schedule of a
new version is still a second schedule.

An assignment made with an idempotency key carries the identifier
``http://hw-fhir.org/fhir/sid/assignment-request|<key>`` (on the one-off Task, or on the
CarePlan); the same request sent again finds it and gets the first result back.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from .. import catalog
from ..store.base import Store, iter_all
from .care_plans import plan_tasks
from .request import Assignment, AssignResult
from .task_fields import task_canonical
from .vocabulary import CARE_PLAN_CATEGORY_SYSTEM, LIVE_ACTIVITY_STATUSES, OPEN_STATUSES

__all__ = [
    "ASSIGNMENT_REQUEST_SYSTEM",
    "same_activity",
    "active_assignments_of",
    "request_identifier",
    "request_criteria",
    "request_plan_id",
    "earlier_assignment",
]

#: Identifier system of the request an assignment was made by (its idempotency key).
ASSIGNMENT_REQUEST_SYSTEM = f"{catalog.CANONICAL_BASE}/sid/assignment-request"


def same_activity(named: str | None, questionnaire: Mapping[str, Any]) -> bool:
    """Whether a canonical (any version) or ``Questionnaire/<id>`` names this Questionnaire."""
    if not named:
        return False
    if named == f"Questionnaire/{questionnaire.get('id')}":
        return True
    return bool(questionnaire.get("url")) and named.split("|", 1)[0] == questionnaire["url"]


def active_assignments_of(
    store: Store, patient: str, questionnaire: Mapping[str, Any]
) -> list[str]:
    """Return the references of a patient's active assignments of an activity (see above)."""
    tasks = iter_all(
        store, "Task", [("patient", patient), ("status", ",".join(sorted(OPEN_STATUSES)))]
    )
    refs = [
        f"Task/{task['id']}"
        for task in tasks
        if not any(
            str((b or {}).get("reference") or "").startswith("CarePlan/")
            for b in task.get("basedOn") or []
        )
        and same_activity(task_canonical(task), questionnaire)
    ]
    plans = iter_all(
        store,
        "CarePlan",
        [
            ("patient", patient),
            ("category", f"{CARE_PLAN_CATEGORY_SYSTEM}|homework"),
            ("status", "active,on-hold"),
        ],
    )
    refs += [
        f"CarePlan/{plan['id']}"
        for plan in plans
        if any(
            (a.get("detail") or {}).get("status") in LIVE_ACTIVITY_STATUSES
            and any(
                same_activity(c, questionnaire)
                for c in (a.get("detail") or {}).get("instantiatesCanonical") or []
            )
            for a in plan.get("activity") or []
        )
    ]
    return refs


def request_identifier(key: str) -> dict[str, str]:
    """Return the identifier that marks what an assignment request wrote."""
    return {"system": ASSIGNMENT_REQUEST_SYSTEM, "value": key}


def request_criteria(assignment: Assignment) -> list[tuple[str, str]]:
    """Return the search that finds what an assignment request (by its key) wrote."""
    return [
        ("identifier", f"{ASSIGNMENT_REQUEST_SYSTEM}|{assignment.idempotency_key}"),
        ("patient", assignment.patient),
    ]


def request_plan_id(assignment: Assignment) -> str:
    """Return the id of the CarePlan an assignment request writes: the same for a resend."""
    name = f"{ASSIGNMENT_REQUEST_SYSTEM}|{assignment.patient}|{assignment.idempotency_key}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def earlier_assignment(store: Store, assignment: Assignment) -> AssignResult | None:
    """Return what the same request (same idempotency key) wrote before, or None."""
    if not assignment.idempotency_key:
        return None
    criteria = request_criteria(assignment)
    warnings = assignment.details.warnings
    plans = iter_all(store, "CarePlan", criteria)
    if plans:
        tasks = plan_tasks(store, plans[0]["id"])
        return AssignResult(tasks=tuple(tasks), plan=plans[0], warnings=warnings)
    tasks = iter_all(store, "Task", criteria)
    return AssignResult(tasks=(tasks[0],), warnings=warnings) if tasks else None
