"""Reminder and link tables: moved to :mod:`hw_fhir.reminders.tables` and :mod:`hw_fhir.links.tables`.

Kept so that existing ``from hw_fhir.reminder_tables import …`` lines keep working.
"""

from __future__ import annotations

from .links.tables import patient_link
from .reminders.tables import reminder_job, reminder_state

__all__ = ["reminder_job", "reminder_state", "patient_link"]
