"""Undelivered reminders: this module moved to :mod:`hw_fhir.reminders.retry` (kept for its importers)."""

from __future__ import annotations

from .reminders.retry import (
    LEGACY_CONFIGURATION_FAILURES,
    ReminderProblem,
    release_held,
    reminder_problems,
    retry_reminders,
)

__all__ = ["ReminderProblem", "reminder_problems", "retry_reminders", "release_held",
           "LEGACY_CONFIGURATION_FAILURES"]
