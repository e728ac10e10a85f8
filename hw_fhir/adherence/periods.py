"""The period adherence is asked for: its bounds as datetimes and as search values."""

from __future__ import annotations

from datetime import date, datetime, time, timezone


def search_instant(moment: datetime) -> str:
    """Return a moment as a UTC search value to the second (``2026-03-08T20:00:00Z``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def period_moment(value: date | datetime | None) -> datetime | None:
    """Return a period bound as an aware datetime (a date: its UTC midnight; naive: UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.combine(value, time(0), tzinfo=timezone.utc)
