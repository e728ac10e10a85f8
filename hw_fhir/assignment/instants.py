"""FHIR instants: writing an aware datetime as one, reading one back, and "now" in UTC."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache

from ..errors import InvalidInput


def instant(moment: datetime) -> str:
    """Return an aware datetime as a FHIR instant in UTC (``2026-03-08T20:00:00Z``)."""
    if moment.tzinfo is None:
        raise InvalidInput(f"{moment.isoformat()} has no time zone")
    utc = moment.astimezone(timezone.utc)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


@lru_cache(maxsize=65536)
def parse_instant(value: str) -> datetime:
    """Parse a FHIR dateTime with a time and zone into an aware UTC datetime.

    Cached: the clinician pages parse the same due dates of a patient's Tasks many times,
    and a datetime is immutable.
    """
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def utc_now(now: datetime | None = None) -> datetime:
    """Return ``now`` in UTC (the current time when None); a naive datetime is refused."""
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise InvalidInput("now must be timezone-aware")
    return now.astimezone(timezone.utc)
