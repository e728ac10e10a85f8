"""What counting and the review pages read of a homework Task (:class:`TaskFacts`), read
once per stored version, and the searches that return them."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..assignment import (
    COMPLETE_QUESTIONNAIRE,
    OPEN_STATUSES,
    SDC_TEMP_SYSTEM,
    business_status,
    parse_instant,
    task_activity,
    task_canonical,
    task_due,
)
from ..store.base import Store, Stored, every_match

_CLOSED_BAD = frozenset({"failed"})
_IGNORED = frozenset({"cancelled", "entered-in-error", "rejected"})


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """What counting and the review pages need of one Task, read from it once.

    A stored version never changes, so :func:`task_facts` keeps these per version and a
    page showing a patient's 1 000 Tasks again parses only the ones that changed.
    """

    id: str
    status: str
    homework: bool
    subject: str | None = None  # Task.for
    due: datetime | None = None
    business: str | None = None
    finished: str | None = None  # executionPeriod.end
    authored: str | None = None
    modified: str | None = None
    plan: str | None = None  # CarePlan/<id> of basedOn
    canonical: str | None = None
    response: str | None = None  # first output reference
    activity: int | None = None  # the plan activity it is an occurrence of
    due_text: str | None = None  # restriction.period.end as written
    opens: str | None = None  # restriction.period.start as written
    based: bool = False  # has a basedOn (a plan's occurrence or another request's)

    @classmethod
    def of(cls, task: Mapping[str, Any]) -> "TaskFacts":
        """Read the facts of one Task resource.

        Plain loops, no generator expressions: a worker's first dashboard reads a patient's
        1 000 Tasks here, and each generator step is one more Python call.
        """
        plan = None
        for based in task.get("basedOn") or ():
            ref = based.get("reference")
            if isinstance(ref, str) and ref.startswith("CarePlan/"):
                plan = ref
                break
        response = None
        for out in task.get("output") or ():
            ref = (out.get("valueReference") or {}).get("reference")
            if isinstance(ref, str):
                response = ref
                break
        homework = False
        for c in (task.get("code") or {}).get("coding") or ():
            if c.get("system") == SDC_TEMP_SYSTEM and c.get("code") == COMPLETE_QUESTIONNAIRE:
                homework = True
                break
        period = (task.get("restriction") or {}).get("period") or {}
        return cls(
            id=str(task.get("id", "")),
            status=str(task.get("status", "")),
            subject=(task.get("for") or {}).get("reference"),
            homework=homework,
            due=task_due(task),
            business=business_status(task),
            finished=(task.get("executionPeriod") or {}).get("end"),
            authored=task.get("authoredOn"),
            modified=task.get("lastModified"),
            plan=plan,
            canonical=task_canonical(task),
            response=response,
            activity=task_activity(task),
            due_text=period.get("end"),
            opens=period.get("start"),
            based=bool(task.get("basedOn")),
        )

    @property
    def ref(self) -> str:
        """``Task/<id>``."""
        return f"Task/{self.id}"

    def outcome(self, now: datetime) -> str:
        """Return on-time | late | missed | overdue | upcoming | cancelled."""
        status = self.status
        if status in _IGNORED:
            return "cancelled"
        if status == "completed":
            if self.business in ("late", "on-time"):
                return self.business
            end = self.finished
            return "late" if self.due and end and parse_instant(end) > self.due else "on-time"
        if status in _CLOSED_BAD:
            return "missed"
        if self.due is not None and self.due <= now:
            return "overdue"
        return "upcoming"

    def opened(self, now: datetime) -> bool:
        """Whether the Task's window has opened (Tasks materialized ahead are not yet)."""
        if self.status not in OPEN_STATUSES:
            return True
        return not self.opens or parse_instant(self.opens) <= now

    @property
    def moment(self) -> datetime:
        """When it counts: due time, else when finished or authored."""
        if self.due is not None:
            return self.due
        end = self.finished or self.authored
        return parse_instant(end) if end else _EARLIEST


_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
#: Per store: (Task id, version) → its facts. Versions are immutable, so entries never go
#: stale; the table is emptied when it grows past ``_FACTS_LIMIT`` entries.
_FACTS: "weakref.WeakKeyDictionary[Any, dict[tuple[str, str], TaskFacts]]" = (
    weakref.WeakKeyDictionary()
)
_FACTS_LIMIT = 50_000  # about 1 kB each


def clear_task_facts() -> None:
    """Forget every kept :class:`TaskFacts` (they are read again on next use)."""
    _FACTS.clear()


def task_facts(store: Store, stored: Iterable[Stored]) -> list[tuple[TaskFacts, Stored]]:
    """Return the facts of stored Task versions, parsing only versions not seen before."""
    try:
        cache = _FACTS.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced: no cache
        cache = {}
    if len(cache) > _FACTS_LIMIT:
        cache.clear()
    out = []
    for item in stored:
        key = (item.id, item.version_id)
        facts = cache.get(key) if item.version_id else None
        if facts is None:
            facts = TaskFacts.of(item.resource)
            if item.version_id:
                cache[key] = facts
        out.append((facts, item))
    return out


def in_period(task: TaskFacts, since: datetime | None, until: datetime | None) -> bool:
    """Whether the Task counts in ``[since, until)`` (by :attr:`TaskFacts.moment`; None: open)."""
    moment = task.moment
    return (since is None or moment >= since) and (until is None or moment < until)


def patient_homework(store: Store, patient_ref: str) -> list[tuple[TaskFacts, Stored]]:
    """Return a patient's homework Tasks: one search driven by the patient, filtered here.

    The code is checked in Python rather than as a second search parameter, which keeps
    the query to the patient index alone. Each Task version is parsed once per process
    (:func:`task_facts`); the resource itself stays unparsed.
    """
    found = every_match(store, "Task", [("patient", patient_ref)])
    return [pair for pair in task_facts(store, found) if pair[0].homework]


def search_facts(store: Store, params: list[tuple[str, str]]) -> list[TaskFacts]:
    """Return the facts of every Task matching a search (parsed once per version)."""
    return [facts for facts, _ in task_facts(store, every_match(store, "Task", params))]
