"""Counting homework into :class:`Adherence`: the rules of the package doc, for a patient
or for a plan over a period."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ..assignment import COMPLETE_QUESTIONNAIRE, SDC_TEMP_SYSTEM, parse_instant, reference, utc_now
from ..store.base import Store
from .engagement import Engagement, check_ins_between, summarize_check_ins
from .periods import period_moment, search_instant
from .task_facts import TaskFacts, in_period, search_facts

_CODE = ("code", f"{SDC_TEMP_SYSTEM}|{COMPLETE_QUESTIONNAIRE}")


@dataclass(frozen=True)
class Adherence:
    """Homework counts of one patient or plan over a period (see the package doc)."""

    assigned: int = 0
    completed: int = 0
    on_time: int = 0
    late: int = 0
    missed: int = 0
    overdue: int = 0
    upcoming: int = 0
    cancelled: int = 0
    current_streak: int = 0
    last_completed: str | None = None
    engagement: Engagement = field(default_factory=Engagement)

    @property
    def completion_rate(self) -> float | None:
        """Completed / assigned, or None when nothing was assigned."""
        return self.completed / self.assigned if self.assigned else None


def _facts(task: Mapping[str, Any] | TaskFacts) -> TaskFacts:
    return task if isinstance(task, TaskFacts) else TaskFacts.of(task)


def summarize_tasks(
    tasks: Iterable[Mapping[str, Any] | TaskFacts],
    *,
    now: datetime | None = None,
    engagement: Engagement | None = None,
) -> Adherence:
    """Count Tasks (resources or their :class:`TaskFacts`) into an :class:`Adherence`.

    Pure: no store.
    """
    moment = utc_now(now)
    counts: Counter[str] = Counter()
    counted: list[tuple[datetime, str]] = []
    last_completed: str | None = None
    last_moment: datetime | None = None
    for task in tasks:
        facts = _facts(task)
        outcome = facts.outcome(moment)
        counts[outcome] += 1
        if outcome in ("on-time", "late", "missed", "overdue"):
            counted.append((facts.moment, outcome))
        if outcome in ("on-time", "late") and facts.finished:
            finished = parse_instant(facts.finished)
            if last_moment is None or finished > last_moment:
                last_completed, last_moment = facts.finished, finished
    streak = 0
    for _, outcome in sorted(counted, key=lambda pair: pair[0], reverse=True):
        if outcome == "overdue":
            continue
        if outcome == "missed":
            break
        streak += 1
    completed = counts["on-time"] + counts["late"]
    return Adherence(
        assigned=completed + counts["missed"] + counts["overdue"],
        completed=completed,
        on_time=counts["on-time"],
        late=counts["late"],
        missed=counts["missed"],
        overdue=counts["overdue"],
        upcoming=counts["upcoming"],
        cancelled=counts["cancelled"],
        current_streak=streak,
        last_completed=last_completed,
        engagement=engagement or Engagement(),
    )


def _homework_tasks(
    store: Store, params: list[tuple[str, str]], since: datetime | None, until: datetime | None
) -> list[TaskFacts]:
    query = [*params, _CODE]
    if since is not None:
        query.append(("due", f"ge{search_instant(since)}"))
    return [t for t in search_facts(store, query) if in_period(t, since, until)]


def patient_adherence(
    store: Store,
    patient: str,
    *,
    now: datetime | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    requester: str | None = None,
) -> Adherence:
    """Return a patient's adherence over ``[since, until)`` (all time by default).

    ``requester`` limits it to the homework one clinician assigned.
    """
    patient_ref = reference("Patient", patient)
    start, end = period_moment(since), period_moment(until)
    params = [("patient", patient_ref)]
    if requester:
        params.append(("requester", reference("Practitioner", requester)))
    tasks = _homework_tasks(store, params, start, end)
    engagement = summarize_check_ins(check_ins_between(store, patient_ref, start, end))
    return summarize_tasks(tasks, now=now, engagement=engagement)


def plan_adherence(
    store: Store,
    plan_id: str,
    *,
    now: datetime | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
) -> Adherence:
    """Return the adherence of one CarePlan (recurring assignment or pathway)."""
    plan_ref = reference("CarePlan", plan_id)
    plan = store.read("CarePlan", plan_ref.split("/", 1)[1]).resource
    start, end = period_moment(since), period_moment(until)
    tasks = _homework_tasks(store, [("based-on", plan_ref)], start, end)
    patient = (plan.get("subject") or {}).get("reference", "")
    engagement = (
        summarize_check_ins(check_ins_between(store, patient, start, end, plan=plan_ref))
        if patient.startswith("Patient/")
        else Engagement()
    )
    return summarize_tasks(tasks, now=now, engagement=engagement)
