"""Template filters of the clinician pages: dates in the patient's time zone, numbers, bands."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask

from hw_fhir.adherence import ADHERENCE_DAYS

__all__ = ["local_when", "local_when_zone", "local_day", "percent", "severity_class", "init_app"]

_SEVERITY = {
    "minimal": 0,
    "negative screen": 0,
    "below the probable-ptsd threshold": 0,
    "mild": 1,
    "moderate": 2,
    "moderately severe": 3,
    "severe": 4,
    "positive screen": 3,
    "probable ptsd": 4,
}


def _parse(value: Any) -> datetime | date | None:
    if isinstance(value, (datetime, date)):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_when(value: Any, zone: str | None = None, *, weekday: bool = True) -> str:
    """``2026-03-03T19:00:00Z`` → ``Tue 3 Mar 2026, 14:00`` in the zone (empty when unknown)."""
    found = _parse(value)
    if found is None:
        return "" if value is None else str(value)
    if not isinstance(found, datetime):
        return local_day(found)
    local = found.astimezone(_zone(zone))
    day = f"{local:%a} {local.day} {local:%b %Y}" if weekday else f"{local.day} {local:%b %Y}"
    return f"{day}, {local:%H:%M}"


def local_when_zone(value: Any, zone: str | None = None) -> str:
    """Like :func:`local_when`, labelled with the zone: ``Tue 3 Mar 2026, 14:00 EST``."""
    text = local_when(value, zone)
    found = _parse(value)
    if not text or not isinstance(found, datetime):
        return text
    return f"{text} {found.astimezone(_zone(zone)).tzname() or zone or 'UTC'}"


def local_day(value: Any, zone: str | None = None) -> str:
    """Return the (local) calendar day of a date or instant: ``Tue 3 Mar 2026``."""
    found = _parse(value)
    if found is None:
        return "" if value is None else str(value)
    if isinstance(found, datetime):
        found = found.astimezone(_zone(zone)).date()
    return f"{found:%a} {found.day} {found:%b %Y}"


def percent(value: float | None) -> str:
    """0.75 → ``75%``; None → ``–``."""
    return "–" if value is None else f"{round(value * 100):d}%"


def severity_class(band: str | None) -> str:
    """Return the CSS class shading a severity band (``sev-0`` … ``sev-4``)."""
    return f"sev-{_SEVERITY.get((band or '').lower(), 2)}"


def init_app(app: Flask) -> None:
    """Register the filters."""
    app.add_template_filter(local_when, "local_when")
    app.add_template_filter(local_when_zone, "local_when_zone")
    app.add_template_global(ADHERENCE_DAYS, "adherence_days")
    app.add_template_filter(local_day, "local_day")
    app.add_template_filter(percent, "percent")
    app.add_template_filter(severity_class, "severity_class")
