"""How reminders are scheduled and retried: :class:`ReminderPolicy` (config table ``[reminders]``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import time
from typing import Any

from .clock import parse_time_of_day

__all__ = ["ReminderPolicy", "HELD_RETRY_SECONDS"]

#: Seconds between two attempts of a held job (:mod:`hw_fhir.reminders.retry` retries at once).
HELD_RETRY_SECONDS = 900.0


@dataclass(frozen=True)
class ReminderPolicy:
    """How reminders are scheduled and retried (config table ``[reminders]``)."""

    before_due_hours: float = 3.0
    overdue_after_hours: float = 2.0
    max_per_day: int = 2
    min_gap_minutes: int = 60
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    max_tries: int = 6
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 3600.0
    alert_retry_cap_seconds: float = 900.0
    lease_seconds: int = 120
    batch: int = 20
    discovery_batch: int = 500
    discovery_lag_seconds: float = 30.0
    grace_hours: int = 24

    @classmethod
    def from_settings(cls, settings: Any) -> "ReminderPolicy":
        """Read the ``[reminders]`` table of the config file (and ``overdue_grace_hours``)."""
        raw = dict(((getattr(settings, "extra", None) or {}).get("reminders") or {}))
        values: dict[str, Any] = {"grace_hours": getattr(settings, "overdue_grace_hours", 24)}
        kinds = {f.name: f.type for f in fields(cls)}
        for key, value in raw.items():
            name = key.replace("-", "_")
            if name not in kinds:
                continue
            default = getattr(cls, name)
            if isinstance(default, time):
                values[name] = parse_time_of_day(value) or default
            elif isinstance(default, bool):
                values[name] = bool(value)
            elif isinstance(default, int):
                values[name] = int(value)
            else:
                values[name] = float(value)
        return cls(**values)
