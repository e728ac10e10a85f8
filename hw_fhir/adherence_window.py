"""The recent adherence window of the clinician pages: now :mod:`hw_fhir.adherence.window`
and :mod:`hw_fhir.adherence.panel`.

Kept as a re-export so imports from ``hw_fhir.adherence_window`` keep working; new code
imports from :mod:`hw_fhir.adherence`.
"""

from __future__ import annotations

from .adherence import (
    ADHERENCE_DAYS,
    AdherenceWindow,
    panel_summary,
    patient_recent_adherence,
    recent_adherence,
)

__all__ = [
    "ADHERENCE_DAYS",
    "AdherenceWindow",
    "recent_adherence",
    "patient_recent_adherence",
    "panel_summary",
]
