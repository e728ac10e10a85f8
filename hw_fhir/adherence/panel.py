"""A clinician's panel: their patients, each with :func:`~.window.recent_adherence`, the
ones falling furthest behind first (:func:`panel_summary`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..assignment import COMPLETE_QUESTIONNAIRE, SDC_TEMP_SYSTEM, reference
from ..store.base import Store, every_match, iter_all
from .counting import Adherence
from .engagement import check_ins_of
from .task_facts import TaskFacts, task_facts
from .window import ADHERENCE_DAYS, AdherenceWindow, recent_adherence

_CHUNK = 50
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class PanelRow:
    """One patient of a clinician's panel and how their homework is going.

    ``resource`` is the Patient as the panel read it (None when it could not be read), so
    that a screen needs no further read for, say, the patient's time zone.
    """

    patient: str
    name: str | None
    adherence: Adherence
    resource: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


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


def _homework_of(
    store: Store, patients: list[str], window: AdherenceWindow
) -> dict[str, list[TaskFacts]]:
    """The homework Tasks of many patients that may count in the window: two searches per
    50 patients, those due since the window's start and those done (executionPeriod) since
    then. A day's margin keeps date-only values in; :func:`recent_adherence` decides. A
    patient's older history (two years of it, say) is neither read nor parsed."""
    out: dict[str, list[TaskFacts]] = {ref: [] for ref in patients}
    since = f"ge{_iso(window.start - timedelta(days=1))}"
    seen: set[str] = set()
    for start in range(0, len(patients), _CHUNK):
        chunk = ",".join(patients[start : start + _CHUNK])
        for when in ("due", "period"):
            found = every_match(store, "Task", [("patient", chunk), (when, since)])
            for facts, _ in task_facts(store, found):
                if facts.homework and facts.subject in out and facts.id not in seen:
                    seen.add(facts.id)
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
    # the window's ends as written by isoformat (microseconds kept), unlike periods.search_instant
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
    patients: dict[str, Mapping[str, Any]] = {}
    for patient in iter_all(store, "Patient", [("general-practitioner", practitioner_ref)]):
        ref = f"Patient/{patient['id']}"
        refs.add(ref)
        names[ref] = _patient_name(patient)
        patients[ref] = patient
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
            patients[f"Patient/{patient['id']}"] = patient
    homework = _homework_of(store, ordered, window)
    check_ins = check_ins_of(store, ordered, window.start)
    rows = [
        PanelRow(
            patient=ref,
            name=names.get(ref),
            adherence=recent_adherence(homework[ref], check_ins.get(ref, []), window=window),
            resource=patients.get(ref),
        )
        for ref in ordered
    ]
    return sorted(rows, key=_behind_key)
