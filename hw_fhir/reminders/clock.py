"""Instants and time zones of reminders: the job table's UTC text, FHIR instants, local times.

Wall-clock times are converted with :mod:`zoneinfo` (DST-safe: a time that does not
exist on a spring-forward day moves forward).
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["now_text", "parse_instant", "fhir_instant", "zone_named", "local_moment",
           "parse_time_of_day"]

_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_text(moment: datetime | None = None) -> str:
    """Return a moment as the fixed-width UTC text the job table orders by."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime(_FMT)


def parse_instant(value: str) -> datetime:
    """Read a FHIR dateTime/instant as a UTC moment (no zone: UTC)."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def fhir_instant(moment: datetime) -> str:
    """Return a moment as a FHIR instant in UTC, to the second."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def zone_named(name: str | None) -> ZoneInfo:
    """Return an IANA time zone; UTC when the name is missing or unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_moment(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Return the UTC instant of a local wall-clock time; a time skipped by DST moves forward."""
    naive = datetime.combine(day, at)
    for fold in (0, 1):
        candidate = naive.replace(tzinfo=zone, fold=fold)
        utc = candidate.astimezone(timezone.utc)
        if utc.astimezone(zone).replace(tzinfo=None) == naive:
            return utc
    # the wall-clock time does not exist (spring forward): fold=0 reads it with the
    # offset before the gap, which lands as far after the gap as it was into it
    return naive.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)


def parse_time_of_day(value: Any) -> time | None:
    """Read an ISO time of day (``HH:MM[:SS]``); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return time.fromisoformat(value)
    except ValueError:
        return None
