"""What the review screens share: the clock, the patient's time zone, titles and labels.

Small pure helpers used by several screens of :mod:`hw_fhir.review` (dashboard, session
prep, panel, compare, tailoring): none of them reads the store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "TIMEZONE_EXTENSION",
    "current_moment",
    "outcome_label",
    "change_labels",
    "patient_zone",
    "activity_title",
    "rise_text",
    "day_text",
]

if TYPE_CHECKING:
    from ..scoring.mbc import Rise

TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"

_OUTCOME_LABELS = {
    "on-time": "Done on time",
    "late": "Done late",
    "missed": "Missed",
    "overdue": "Overdue",
    "upcoming": "Due later",
    "cancelled": "Cancelled",
}
_MBC_LABELS = {
    "response": "Response",
    "remission": "Remission",
    "reliable-improvement": "Reliable improvement",
    "deterioration": "Deterioration",
    "no-reliable-change": "No reliable change",
}


def current_moment(now: datetime | None) -> datetime:
    """Return ``now`` (a naive time taken as UTC), or the current time in UTC."""
    moment = now or datetime.now(timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def outcome_label(outcome: str) -> str:
    """Return the clinician-facing words of a Task outcome (``on-time`` → ``Done on time``)."""
    return _OUTCOME_LABELS.get(outcome, outcome.replace("-", " ").capitalize())


def patient_zone(patient: Mapping[str, Any] | None, default: str = "UTC") -> str:
    """Return the patient's IANA time zone (the ``timezone`` extension), else ``default``."""
    for ext in (patient or {}).get("extension") or []:
        if ext.get("url") == TIMEZONE_EXTENSION and isinstance(ext.get("valueCode"), str):
            try:
                ZoneInfo(ext["valueCode"])
            except (ZoneInfoNotFoundError, ValueError):
                continue
            return str(ext["valueCode"])
    return default


def change_labels(labels: Iterable[str]) -> tuple[str, ...]:
    """Return the clinician-facing words of measurement-based-care change labels."""
    return tuple(_MBC_LABELS.get(label, label) for label in labels)


_ACRONYM = re.compile(r"\(([A-Z][A-Z0-9-]{1,11})\)\s*$")


def activity_title(questionnaire: Mapping[str, Any] | None) -> str:
    """Return an activity's title, shortened to its acronym when it ends with one (PHQ-9)."""
    q = questionnaire or {}
    title = str(q.get("title") or q.get("name") or "Activity")
    found = _ACRONYM.search(title)
    return found.group(1) if found and len(title) > 24 else title


def day_text(when: date | datetime | str, zone: str = "UTC") -> str:
    """Return the calendar day of a date or instant in ``zone``: ``Sun 8 Nov 2026``.

    A date (``2026-11-08``) is that day, whatever the zone; an instant is the day it was in
    ``zone``.
    """
    if isinstance(when, str):
        moment: date | datetime = (
            datetime.fromisoformat(when.replace("Z", "+00:00")) if "T" in when
            else date.fromisoformat(when[:10]))
    else:
        moment = when
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        moment = aware.astimezone(ZoneInfo(zone)).date()
    return f"{moment:%a} {moment.day} {moment:%b %Y}"


def rise_text(rises: "Sequence[Rise]", zone: str = "UTC") -> str:
    """Say why a measure is worsening: ``PHQ-9 up 14 since first score on Sun 8 Nov 2026 (3 → 17)``.

    The first rise is said in full; a second (since the previous score) in parentheses.
    """
    parts = [f"up {r.rise:g} since {r.since} score on {day_text(r.point.when, zone)}"
             for r in rises]
    if not parts:
        return ""
    first = rises[0]
    text = f"{first.instrument.upper()} {parts[0]} ({first.point.value:g} → {first.latest.value:g})"
    return text + "".join(f"; {p}" for p in parts[1:])
