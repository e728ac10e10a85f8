"""A clinician's panel: their patients, those needing attention first.

:func:`panel` orders the patients by active risk flags, then worsening measure
scores, then missed and overdue homework, and says why each may need attention.
Days of a patient's activity are the patient's own calendar days, as on the dashboard
and in session prep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..adherence import Adherence, panel_summary
from ..scoring.mbc import THRESHOLDS, worsening
from ..store.base import Store, iter_all
from .formatting import current_moment, patient_zone, rise_text
from .measures import measure_histories

__all__ = ["PanelEntry", "panel"]


@dataclass(frozen=True)
class PanelEntry:
    """One patient of the panel and why they may need attention.

    ``zone`` is the patient's time zone: the days of their activity (last done, the day of a
    score) are said in it.
    """

    patient: str
    name: str | None
    adherence: Adherence
    flags: int
    worsening: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    zone: str = "UTC"


def panel(
    store: Store, practitioner: str, *, now: datetime | None = None, days: int = 28,
) -> list[PanelEntry]:
    """Return a clinician's patients: risk flags first, then worsening scores, then missed work.

    A score is worsening when the latest rose by the reliable change since the first score or
    the previous one (:func:`hw_fhir.scoring.mbc.worsening`); the reason says which and the
    day of that score. Every day of a patient's activity (that one, last done) is the
    patient's own calendar day, as on the dashboard and in session prep, not the clinician's:
    the same completion is the same day on every clinician page. Each entry carries the
    patient's ``zone`` (:func:`~.formatting.patient_zone` of the Patient that
    :func:`~hw_fhir.adherence.panel_summary` read: no read per patient).
    """
    moment = current_moment(now)
    rows = panel_summary(store, practitioner, now=moment, days=days)
    flagged: dict[str, int] = {}
    for flag in iter_all(store, "Flag", [("status", "active")]):
        subject = (flag.get("subject") or {}).get("reference")
        if isinstance(subject, str):
            flagged[subject] = flagged.get(subject, 0) + 1
    entries = []
    every_history = measure_histories(store, [row.patient for row in rows])
    for row in rows:
        zone = patient_zone(row.resource)
        histories = every_history.get(row.patient, {})
        worse = tuple(
            rise_text(rises, zone)
            for key, points in histories.items()
            if key in THRESHOLDS and (rises := worsening(key, points))
        )
        a = row.adherence
        reasons = []
        if flagged.get(row.patient):
            reasons.append(
                f"{flagged[row.patient]} active risk flag"
                + ("s" if flagged[row.patient] > 1 else "")
            )
        reasons += [f"Worse: {w}" for w in worse]
        if a.missed:
            reasons.append(f"{a.missed} missed")
        if a.overdue:
            reasons.append(f"{a.overdue} overdue")
        entries.append(
            PanelEntry(
                patient=row.patient,
                name=row.name,
                adherence=a,
                flags=flagged.get(row.patient, 0),
                worsening=worse,
                reasons=tuple(reasons),
                zone=zone,
            )
        )

    def key(entry: PanelEntry) -> tuple[Any, ...]:
        a = entry.adherence
        rate = a.completion_rate
        return (
            -entry.flags,
            -len(entry.worsening),
            -(a.missed + a.overdue),
            1.0 if rate is None else rate,
            a.assigned == 0,
            entry.name or entry.patient,
        )

    return sorted(entries, key=key)
