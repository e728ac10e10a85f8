"""The one definition of adherence on the clinician pages: the recent window.

The panel, the patient dashboard and session prep all show a patient's homework over the
same window, counted the same way, so they never contradict each other:

A homework Task counts when it is not cancelled and either

* it was **due** in the last :data:`ADHERENCE_DAYS` days (up to now), or
* it was **completed** in the last :data:`ADHERENCE_DAYS` days, whatever its due time —
  homework done early counts the moment it is done.

Tasks not due yet and not done are upcoming: they do not count. The counts themselves
(done, on time, missed, overdue, streak, last done) are :func:`hw_fhir.adherence.summarize_tasks`
over those Tasks; check-ins count when authored in the window. Every Task of the patient
counts, whichever clinician assigned it: adherence is the patient's, the panel only
chooses which patients a clinician sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..assignment import parse_instant, reference, utc_now
from ..store.base import Store
from .counting import Adherence, summarize_tasks
from .engagement import check_ins_of, summarize_check_ins
from .task_facts import TaskFacts, patient_homework

#: How far back the clinician pages count homework, in days.
ADHERENCE_DAYS = 28


@dataclass(frozen=True)
class AdherenceWindow:
    """The period homework counts in: due in it, or completed in it (see the module doc)."""

    end: datetime
    days: int = ADHERENCE_DAYS

    @classmethod
    def ending(cls, now: datetime | None = None, days: int = ADHERENCE_DAYS) -> "AdherenceWindow":
        """Return the window of the last ``days`` days up to ``now``."""
        return cls(end=utc_now(now), days=days)

    @property
    def start(self) -> datetime:
        """The window's first instant."""
        return self.end - timedelta(days=self.days)

    @property
    def label(self) -> str:
        """How the window reads on screen."""
        return f"due or done in the last {self.days} days"

    def _within(self, moment: datetime | None) -> bool:
        return moment is not None and self.start <= moment <= self.end

    def includes(self, task: TaskFacts) -> bool:
        """Whether a Task counts: due in the window, or completed in it; never cancelled."""
        outcome = task.outcome(self.end)
        if outcome == "cancelled":
            return False
        if outcome in ("on-time", "late") and task.finished:
            if self._within(parse_instant(task.finished)):
                return True
        return self._within(task.due)

    def check_in_counts(self, response: Mapping[str, Any]) -> bool:
        """Whether an engagement check-in was authored in the window."""
        authored = response.get("authored")
        return isinstance(authored, str) and self._within(parse_instant(authored))


def recent_adherence(
    tasks: Iterable[TaskFacts],
    check_ins: Iterable[Mapping[str, Any]],
    *,
    now: datetime | None = None,
    window: AdherenceWindow | None = None,
) -> Adherence:
    """Count a patient's homework and check-ins over the window ending now (pure: no store)."""
    window = window or AdherenceWindow.ending(now)
    counted = [t for t in tasks if t.homework and window.includes(t)]
    engagement = summarize_check_ins(r for r in check_ins if window.check_in_counts(r))
    return summarize_tasks(counted, now=window.end, engagement=engagement)


def patient_recent_adherence(
    store: Store,
    patient: str,
    *,
    now: datetime | None = None,
    window: AdherenceWindow | None = None,
    homework: Sequence[TaskFacts] | None = None,
) -> Adherence:
    """Return one patient's adherence over the window ending now, read from the store."""
    window = window or AdherenceWindow.ending(now)
    patient_ref = reference("Patient", patient)
    if homework is None:
        homework = [facts for facts, _ in patient_homework(store, patient_ref)]
    check_ins = check_ins_of(store, [patient_ref], window.start).get(patient_ref, [])
    return recent_adherence(homework, check_ins, window=window)
