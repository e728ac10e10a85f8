"""The occurrences of a recurring CarePlan activity: its schedule, from when it is
materialized, each occurrence's window and identifier, and the Tasks of those due soon."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta, timezone
from typing import Any

from ..errors import InvalidInput
from ..schedule import Occurrence, Schedule
from .details import HomeworkDetails
from .extensions import extension, extension_value, without_extensions
from .instants import instant, parse_instant
from .task_builder import build_task
from .vocabulary import EXT_OCCURRENCES_FROM, TASK_OCCURRENCE_SYSTEM


def occurrence_identifier(plan_id: str, activity_index: int, occurrence_key: str) -> dict[str, str]:
    """Return the stable identifier of the Task of one plan occurrence."""
    return {
        "system": TASK_OCCURRENCE_SYSTEM,
        "value": f"{plan_id}/{activity_index}/{occurrence_key}",
    }


def activity_schedule(activity: Mapping[str, Any]) -> Schedule:
    """Return the Schedule of a CarePlan activity (its ``detail.scheduledTiming``)."""
    timing = (activity.get("detail") or {}).get("scheduledTiming")
    if not isinstance(timing, dict):
        raise InvalidInput("The CarePlan activity has no scheduledTiming")
    return Schedule.from_fhir_timing(timing)


def occurrences_from(activity: Mapping[str, Any]) -> datetime | None:
    """Return the instant before which an activity's occurrences are not materialized."""
    value = extension_value(activity, EXT_OCCURRENCES_FROM)
    return parse_instant(value) if value else None


def set_occurrences_from(activity: Mapping[str, Any], moment: datetime) -> dict[str, Any]:
    """Return a copy of a CarePlan activity whose occurrences start at ``moment``."""
    out = dict(activity)
    out["extension"] = without_extensions(activity, [EXT_OCCURRENCES_FROM]) + [
        extension(EXT_OCCURRENCES_FROM, "valueDateTime", instant(moment))
    ]
    return out


def _window_opens(
    schedule: Schedule, occurrence: Occurrence, released: datetime | None = None
) -> datetime:
    """Return when an occurrence's window opens: the previous occurrence's due time.

    The first occurrence opens at the start of its local day, or at the release of the
    activity (assignment) when that is earlier.
    """
    if occurrence.sequence == 1:
        midnight = datetime.combine(occurrence.local_date, time(0), tzinfo=schedule.zone)
        return min(midnight.astimezone(timezone.utc), released or midnight)
    span = 7 * schedule.interval + 2
    previous = None
    for earlier in schedule.iter_occurrences(occurrence.due - timedelta(days=span)):
        if earlier.due >= occurrence.due:
            break
        previous = earlier
    return previous.due if previous else occurrence.due - timedelta(days=1)


def occurrence_tasks(
    plan: Mapping[str, Any],
    activity_index: int,
    *,
    until: datetime,
    now: datetime,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Return the Tasks of one CarePlan activity's occurrences due before ``until``.

    Occurrences due before the activity's ``occurrences-from`` (and before ``since``,
    when given) are left out. The Tasks are not stored; each carries its occurrence
    identifier.
    """
    activity = plan["activity"][activity_index]
    detail = activity.get("detail") or {}
    schedule = activity_schedule(activity)
    released = occurrences_from(activity)
    start = max(filter(None, (released, since)), default=None)
    canonical = (detail.get("instantiatesCanonical") or [None])[0]
    if not canonical:
        raise InvalidInput(f"CarePlan/{plan.get('id')} activity {activity_index} names no activity")
    details = HomeworkDetails.from_detail(detail)
    encounter = (plan.get("encounter") or {}).get("reference")
    tasks = []
    for occurrence in schedule.iter_occurrences(start):
        if occurrence.due >= until:
            break
        tasks.append(
            build_task(
                canonical=canonical,
                patient=plan["subject"]["reference"],
                practitioner=plan["author"]["reference"],
                details=details,
                due=occurrence.due,
                opens=_window_opens(schedule, occurrence, released),
                now=now,
                based_on=f"CarePlan/{plan['id']}",
                identifier=occurrence_identifier(plan["id"], activity_index, occurrence.key),
                encounter=encounter,
            )
        )
    return tasks
