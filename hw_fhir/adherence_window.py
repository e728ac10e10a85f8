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

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .adherence import (
    Adherence,
    PanelRow,
    TaskFacts,
    check_ins_of,
    patient_homework,
    summarize_check_ins,
    summarize_tasks,
    task_facts,
)
from .assignment import COMPLETE_QUESTIONNAIRE, SDC_TEMP_SYSTEM, parse_instant, reference, utc_now
from .store.base import Store, every_match, iter_all

__all__ = [
    "ADHERENCE_DAYS",
    "AdherenceWindow",
    "recent_adherence",
    "patient_recent_adherence",
    "panel_summary",
]

#: How far back the clinician pages count homework, in days.
ADHERENCE_DAYS = 28
_CHUNK = 50
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


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


# -- a clinician's panel ------------------------------------------------------------------


def _patient_name(patient: Mapping[str, Any]) -> str | None:
    for name in patient.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("given") or []), name.get("family") or ""]
        if any(parts):
            return " ".join(p for p in parts if p)
    return None


def _behind_key(row: PanelRow) -> tuple[Any, ...]:
    a = row.adherence
    rate = a.completion_rate
    return (
        a.assigned == 0,
        1.0 if rate is None else rate,
        -(a.missed + a.overdue),
        a.current_streak,
        row.patient,
    )


def _homework_of(store: Store, patients: list[str]) -> dict[str, list[TaskFacts]]:
    """Every homework Task of many patients, one search per 50 patients."""
    out: dict[str, list[TaskFacts]] = {ref: [] for ref in patients}
    for start in range(0, len(patients), _CHUNK):
        chunk = ",".join(patients[start : start + _CHUNK])
        for facts, _ in task_facts(store, every_match(store, "Task", [("patient", chunk)])):
            if facts.homework and facts.subject in out:
                out[facts.subject].append(facts)
    return out


def _clinician_patients(store: Store, practitioner_ref: str, window: AdherenceWindow) -> set[str]:
    """Patients with homework from this clinician due in the window (or the next day), or
    due later and already done (homework done early)."""
    code = ("code", f"{SDC_TEMP_SYSTEM}|{COMPLETE_QUESTIONNAIRE}")
    soon = _iso(window.end + timedelta(days=1))
    searches = (
        [("due", f"ge{_iso(window.start)}"), ("due", f"lt{soon}")],
        [("due", f"ge{soon}"), ("status", "completed")],
    )
    found: set[str] = set()
    for extra in searches:
        matches = every_match(store, "Task", [("requester", practitioner_ref), code, *extra])
        for facts, _ in task_facts(store, matches):
            if isinstance(facts.subject, str) and facts.subject.startswith("Patient/"):
                found.add(facts.subject)
    return found


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def panel_summary(
    store: Store,
    practitioner: str,
    *,
    now: datetime | None = None,
    days: int = ADHERENCE_DAYS,
) -> list[PanelRow]:
    """Return a clinician's patients, the ones falling furthest behind first.

    Patients are those with homework from this clinician due in the window (or the next
    day) or done early, and those whose ``generalPractitioner`` is the clinician. Each patient's
    adherence is :func:`recent_adherence` — the same figures as the dashboard and session
    prep. Order: lowest completion rate, then most missed or overdue, then shortest
    streak; patients with nothing assigned last.
    """
    window = AdherenceWindow.ending(now, days)
    practitioner_ref = reference("Practitioner", practitioner)
    refs = _clinician_patients(store, practitioner_ref, window)
    names: dict[str, str | None] = {}
    for patient in iter_all(store, "Patient", [("general-practitioner", practitioner_ref)]):
        ref = f"Patient/{patient['id']}"
        refs.add(ref)
        names[ref] = _patient_name(patient)
    ordered = sorted(refs)
    unnamed = [
        rid
        for ref in ordered
        if ref not in names and _FHIR_ID.fullmatch(rid := ref.split("/", 1)[1])
    ]
    for start in range(0, len(unnamed), _CHUNK):
        chunk = unnamed[start : start + _CHUNK]
        for patient in store.search(
            "Patient", [("_id", ",".join(chunk)), ("_count", str(len(chunk)))]
        ).resources:
            names[f"Patient/{patient['id']}"] = _patient_name(patient)
    homework = _homework_of(store, ordered)
    check_ins = check_ins_of(store, ordered, window.start)
    rows = [
        PanelRow(
            patient=ref,
            name=names.get(ref),
            adherence=recent_adherence(homework[ref], check_ins.get(ref, []), window=window),
        )
        for ref in ordered
    ]
    return sorted(rows, key=_behind_key)
