"""Tailoring an assignment: the starting values of the assign form for an activity.

:func:`assign_defaults` chooses a schedule by the kind of activity (measures every two
weeks, logs and practice daily, reading and reflection once), a due time in the
patient's time zone, and instructions and rationale from the activity itself, so the
common case needs no change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .. import catalog
from ..schedule import Schedule
from .formatting import current_moment

__all__ = ["AssignDefaults", "MEASURE_INSTRUCTIONS", "assign_defaults"]


@dataclass(frozen=True)
class AssignDefaults:
    """The tailoring form's starting values, chosen so the common case needs no change."""

    frequency: str
    interval: int
    days_of_week: tuple[str, ...]
    start: date
    time_of_day: time
    count: int | None
    until: date | None
    instructions: str
    rationale: str
    example: str
    wording: str
    reminder_channel: str
    timezone: str

    def schedule(self) -> Schedule:
        """Return the default schedule."""
        return Schedule(
            frequency=self.frequency,
            start=self.start,
            timezone=self.timezone,
            time_of_day=self.time_of_day,
            interval=self.interval,
            days_of_week=self.days_of_week,
            count=self.count,
            until=self.until,
        )


#: Default instructions of a measure (its description is written for the clinician).
MEASURE_INSTRUCTIONS = (
    "Please answer these questions about how you have been feeling lately. It "
    "takes a few minutes, and there are no right or wrong answers."
)

_KIND_SCHEDULES: dict[str, tuple[str, int, int | None, int]] = {
    # kind: (frequency, interval, count, days until the first due date)
    "measure": ("every-n-days", 14, 6, 1),
    "self-monitoring": ("daily", 1, 14, 1),
    "skills-practice": ("daily", 1, 7, 1),
    "behavioral": ("daily", 1, 7, 1),
    "psychoeducation": ("once", 1, None, 3),
    "reflection": ("once", 1, None, 6),
    "check-in": ("once", 1, None, 6),
}


def assign_defaults(
    questionnaire: Mapping[str, Any],
    *,
    timezone_name: str,
    now: datetime | None = None,
    channel: str = "email",
) -> AssignDefaults:
    """Return sensible tailoring defaults for an activity and patient time zone.

    Measures repeat every 2 weeks (6 times), logs and practice daily for 1–2 weeks,
    reading and reflection once before the next session; due at 19:00 local time,
    starting tomorrow. Instructions and rationale come from the activity's
    ``description`` and ``purpose``.
    """
    moment = current_moment(now)
    kinds = catalog.tags(questionnaire).get("kind") or ["reflection"]
    instructions = str(questionnaire.get("description") or "")
    if kinds[0] == "measure":
        instructions = MEASURE_INSTRUCTIONS
    frequency, interval, count, offset = _KIND_SCHEDULES.get(kinds[0], ("once", 1, None, 6))
    local_today = moment.astimezone(ZoneInfo(timezone_name)).date()
    return AssignDefaults(
        frequency=frequency,
        interval=interval,
        days_of_week=(),
        start=local_today + timedelta(days=offset),
        time_of_day=time(19, 0),
        count=count,
        until=None,
        instructions=instructions,
        rationale=str(questionnaire.get("purpose") or ""),
        example="",
        wording="homework",
        reminder_channel=channel,
        timezone=timezone_name,
    )
