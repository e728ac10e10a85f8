"""Read the clinician forms into domain values, collecting every problem by field.

Nothing here writes: a form that has problems produces no value, and the view shows
the problems next to their fields. The rules the domain enforces (a schedule that ends
before it starts, a weekly schedule without days...) come back from the domain's own
checks; the rules of the page (instructions are required, the first due date cannot be
in the past) are checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from hw_fhir.assignment import HomeworkDetails
from hw_fhir.errors import HwFhirError
from hw_fhir.schedule import DAYS_OF_WEEK, Schedule

from .base import FieldErrors, field_errors

__all__ = [
    "FREQUENCIES",
    "CHANNELS",
    "ScheduleForm",
    "DetailsForm",
    "read_schedule",
    "read_details",
    "read_due",
    "schedule_values",
    "details_values",
]

#: The schedule choices offered, in order.
FREQUENCIES = (
    ("once", "Once"),
    ("daily", "Every day"),
    ("every-n-days", "Every N days"),
    ("weekly", "Weekly, on chosen days"),
)
#: Reminder channels offered (a plugin's channels are added by the view).
CHANNELS = (("email", "Email"), ("sms", "Text message (SMS)"), ("none", "No reminders"))
_ALIASES = {"days_of_week": "days", "time_of_day": "time", "reminder_channel": "channel"}
_MAX_TEXT = 2000


@dataclass(frozen=True)
class ScheduleForm:
    """A schedule read from a form (``schedule`` is None when there were problems)."""

    schedule: Schedule | None
    errors: FieldErrors = field(default_factory=dict)


@dataclass(frozen=True)
class DetailsForm:
    """The tailoring read from a form (``details`` is None when there were problems)."""

    details: HomeworkDetails | None
    errors: FieldErrors = field(default_factory=dict)


def _text(form: Mapping[str, Any], name: str) -> str:
    return str(form.get(name) or "").strip()


def _date(form: Mapping[str, Any], name: str, errors: FieldErrors, label: str) -> date | None:
    raw = _text(form, name)
    if not raw:
        errors.setdefault(name, []).append(f"Give the {label}.")
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors.setdefault(name, []).append(
            f"“{raw}” is not a date; use the date picker or YYYY-MM-DD."
        )
        return None


def _time(form: Mapping[str, Any], errors: FieldErrors) -> time | None:
    raw = _text(form, "time") or "19:00"
    try:
        return time.fromisoformat(raw)
    except ValueError:
        errors.setdefault("time", []).append(f"“{raw}” is not a time of day such as 19:00.")
        return None


def _whole(
    form: Mapping[str, Any], name: str, errors: FieldErrors, label: str, default: int | None = None
) -> int | None:
    raw = _text(form, name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        errors.setdefault(name, []).append(f"The {label} must be a whole number.")
        return None


def read_schedule(form: Mapping[str, Any], *, timezone: str, today: date) -> ScheduleForm:
    """Return the schedule of an assign form, or the problems by field.

    Fields: ``frequency``, ``interval``, ``days`` (list), ``start``, ``time``, ``end``
    (``count``, ``until`` or ``none``), ``count``, ``until``. ``today`` is the patient's
    local date: a first due date before it is refused.
    """
    errors: FieldErrors = {}
    frequency = _text(form, "frequency") or "once"
    start = _date(form, "start", errors, "first due date")
    at = _time(form, errors)
    interval = _whole(form, "interval", errors, "interval", 1)
    days = form.getlist("days") if hasattr(form, "getlist") else list(form.get("days") or [])
    # days only mean something weekly: ticked days left over from trying "weekly" are ignored
    days = [d for d in days if d in DAYS_OF_WEEK] if frequency == "weekly" else []
    end = _text(form, "end") or ("count" if frequency != "once" else "none")
    count = until = None
    if frequency != "once":
        if end == "count":
            count = _whole(form, "count", errors, "number of times")
            if count is None and "count" not in errors:
                errors["count"] = ["Say how many times, or choose another way to end."]
        elif end == "until":
            until = _date(form, "until", errors, "last day")
    if frequency in ("daily", "once"):
        interval = 1
    elif frequency == "every-n-days" and interval == 1 and not _text(form, "interval"):
        interval = 2
    if start is not None and start < today:
        errors.setdefault("start", []).append(
            f"The first due date ({start:%a} {start.day} {start:%b %Y}) is in the past. "
            "Choose today or a later day."
        )
    if errors or start is None or at is None or interval is None:
        return ScheduleForm(None, errors)
    try:
        schedule = Schedule(
            frequency=frequency,
            start=start,
            timezone=timezone,
            time_of_day=at,
            interval=interval,
            days_of_week=tuple(days),
            count=count,
            until=until,
        )
    except HwFhirError as exc:
        return ScheduleForm(None, field_errors(exc, _ALIASES, default="frequency"))
    return ScheduleForm(schedule)


def read_details(form: Mapping[str, Any], *, require_instructions: bool = True) -> DetailsForm:
    """Return the tailoring of an assign or edit form, or the problems by field.

    Fields: ``instructions`` (required), ``rationale``, ``example``, ``wording``,
    ``channel``, ``confidence`` (0–10, may be blank).
    """
    errors: FieldErrors = {}
    texts = {
        name: _text(form, name) for name in ("instructions", "rationale", "example", "wording")
    }
    if require_instructions and not texts["instructions"]:
        errors["instructions"] = [
            "Say what the patient will do — what, when, where, how often and "
            "for how long. Homework that is specified is done more often."
        ]
    for name, value in texts.items():
        if len(value) > _MAX_TEXT:
            errors.setdefault(name, []).append(f"Keep this under {_MAX_TEXT} characters.")
    confidence = _whole(form, "confidence", errors, "confidence rating")
    if confidence is not None and not 0 <= confidence <= 10:
        errors.setdefault("confidence", []).append("Confidence is rated from 0 to 10.")
    channel = _text(form, "channel") or None
    if errors:
        return DetailsForm(None, errors)
    try:
        details = HomeworkDetails(
            instructions=texts["instructions"],
            rationale=texts["rationale"],
            example=texts["example"],
            wording=texts["wording"] or "homework",
            confidence=confidence,
            reminder_channel=channel,
        )
    except HwFhirError as exc:
        return DetailsForm(None, field_errors(exc, _ALIASES))
    return DetailsForm(details)


def read_due(
    form: Mapping[str, Any], *, timezone: str, now: datetime
) -> tuple[datetime | None, FieldErrors]:
    """Return the new due instant (``due_date`` + ``time``, patient's zone); None: unchanged."""
    errors: FieldErrors = {}
    if not _text(form, "due_date"):
        return None, errors
    day = _date(form, "due_date", errors, "due date")
    at = _time(form, errors)
    if errors or day is None or at is None:
        return None, errors
    due = datetime.combine(day, at, tzinfo=ZoneInfo(timezone))
    if due <= now:
        errors["due_date"] = [
            f"The due time ({day:%a} {day.day} {day:%b %Y}, {at:%H:%M}) has already "
            "passed. Choose a later time."
        ]
        return None, errors
    return due, errors


def schedule_values(schedule: Schedule) -> dict[str, Any]:
    """Return form values showing a schedule."""
    return {
        "frequency": schedule.frequency,
        "interval": schedule.interval,
        "days": list(schedule.days_of_week),
        "start": schedule.start.isoformat(),
        "time": schedule.time_of_day.strftime("%H:%M"),
        # a one-off shows "after 7 times" (hidden until a repeating choice): switching to a
        # repeating schedule is then one choice
        "end": "until" if schedule.until else (
            "count" if schedule.count or schedule.frequency == "once" else "none"),
        "count": 7 if schedule.frequency == "once" else (schedule.count or ""),
        "until": schedule.until.isoformat() if schedule.until else "",
    }


def details_values(details: HomeworkDetails) -> dict[str, Any]:
    """Return form values showing homework details."""
    return {
        "instructions": details.instructions,
        "rationale": details.rationale,
        "example": details.example,
        "wording": details.wording,
        "channel": details.reminder_channel or "none",
        "confidence": "" if details.confidence is None else details.confidence,
    }
