"""Fields of a homework Task read or marked in one place: businessStatus, the Questionnaire
asked for, the due time, and the plan activity an occurrence belongs to."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .instants import parse_instant
from .vocabulary import BUSINESS_STATUS_SYSTEM, SDC_TEMP_SYSTEM, TASK_OCCURRENCE_SYSTEM


def business_status(task: Mapping[str, Any]) -> str | None:
    """Return the Task's businessStatus code in the hw-fhir system, if any."""
    for coding in (task.get("businessStatus") or {}).get("coding") or []:
        if coding.get("system") == BUSINESS_STATUS_SYSTEM and coding.get("code"):
            return str(coding["code"])
    return None


_BUSINESS_DISPLAY = {
    "on-time": "Completed on time",
    "late": "Completed late",
    "missed": "Missed: the due window passed unfinished",
    "paused": "Cancelled: the plan was paused",
    "plan-cancelled": "Cancelled with its plan",
    "step-skipped": "Cancelled: the pathway step was skipped",
    "rescheduled": "Cancelled: the schedule was changed",
    "assignment-cancelled": "Cancelled by the clinician",
}


def with_business_status(task: Mapping[str, Any], code: str) -> dict[str, Any]:
    """Return a copy of the Task with this hw-fhir businessStatus code."""
    coding: dict[str, Any] = {"system": BUSINESS_STATUS_SYSTEM, "code": code}
    if code in _BUSINESS_DISPLAY:
        coding["display"] = _BUSINESS_DISPLAY[code]
    return dict(task, businessStatus={"coding": [coding], "text": coding.get("display", code)})


def task_canonical(task: Mapping[str, Any]) -> str | None:
    """Return the Questionnaire a Task asks for: the ``questionnaire`` input, or ``focus``.

    The value is a canonical (``url|version``) or, for a Task made elsewhere that points
    at a Questionnaire by reference, ``Questionnaire/<id>``.
    """
    for entry in task.get("input") or []:
        codes = {
            (c.get("system"), c.get("code")) for c in (entry.get("type") or {}).get("coding") or []
        }
        if (SDC_TEMP_SYSTEM, "questionnaire") not in codes:
            continue
        if entry.get("valueCanonical"):
            return str(entry["valueCanonical"])
        ref = (entry.get("valueReference") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Questionnaire/"):
            return ref
    ref = (task.get("focus") or {}).get("reference")
    if isinstance(ref, str) and (ref.startswith("Questionnaire/") or "/Questionnaire/" in ref):
        return ref
    return None


def task_due(task: Mapping[str, Any]) -> datetime | None:
    """Return when the Task is due (``restriction.period.end``), or None."""
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    return parse_instant(end) if end else None


def task_activity(task: Mapping[str, Any]) -> int | None:
    """Return which CarePlan activity a plan occurrence Task belongs to (None: not one)."""
    for ident in task.get("identifier") or []:
        if ident.get("system") == TASK_OCCURRENCE_SYSTEM:
            parts = str(ident.get("value", "")).split("/")
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None
