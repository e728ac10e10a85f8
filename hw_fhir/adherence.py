"""Adherence and review: what was assigned, what was done, and why not — ready for the session.

Counting rules (for :class:`Adherence`), over homework Tasks (SDC ``complete-questionnaire``)
whose due time (``restriction.period.end``) falls in the period asked for:

``assigned``
    Tasks that are due by now, or already completed; cancelled Tasks never count.
``completed`` = ``on_time`` + ``late``
    ``late`` when submitted after the due time (businessStatus ``late``, or
    ``executionPeriod.end`` after the due time).
``missed``
    Tasks the overdue sweep closed (``failed``).
``overdue``
    Open Tasks past their due time, still inside the grace period (they may still be done).
``upcoming``
    Open Tasks not due yet (not part of ``assigned``).
``completion_rate``
    ``completed / assigned`` (None when nothing was assigned).
``current_streak``
    How many of the latest assigned Tasks, by due time, were completed in a row
    (Tasks still overdue neither count nor break the streak).

Engagement comes from the ``engagement-check-in`` Questionnaire's responses of the
patient (linkIds ``amount-done``, ``as-agreed``, ``difficulty``, ``helpfulness``,
``minutes-spent``, ``reason-not-done``, ``reason-other``); for a plan, the check-ins
``basedOn`` that plan.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import Any

from . import catalog
from .assignment import (
    COMPLETE_QUESTIONNAIRE,
    OPEN_STATUSES,
    SDC_TEMP_SYSTEM,
    TASK_OCCURRENCE_SYSTEM,
    business_status,
    parse_instant,
    reference,
    task_canonical,
    task_due,
    utc_now,
)
from .errors import InvalidInput, NotFound
from .library import questionnaire_titles
from .responses import flatten_answers
from .store.base import Store, Stored, every_match, iter_all

__all__ = [
    "Engagement",
    "Adherence",
    "TaskRow",
    "MeasureChange",
    "DiscussionPoint",
    "SessionSummary",
    "PanelRow",
    "TaskFacts",
    "task_facts",
    "clear_task_facts",
    "summarize_tasks",
    "summarize_check_ins",
    "patient_adherence",
    "plan_adherence",
    "since_last_session",
    "patient_homework",
    "check_ins_of",
]

_CODE = ("code", f"{SDC_TEMP_SYSTEM}|{COMPLETE_QUESTIONNAIRE}")
_CLOSED_BAD = frozenset({"failed"})
_IGNORED = frozenset({"cancelled", "entered-in-error", "rejected"})
#: Check-in ratings (0–10) worth raising at the session.
HIGH_DIFFICULTY = 7
LOW_HELPFULNESS = 3


# -- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Engagement:
    """Engagement check-ins summarized: ratings, time, and reasons for not doing homework."""

    check_ins: int = 0
    amount_done: Mapping[str, int] = field(default_factory=dict)
    as_agreed: int = 0
    not_as_agreed: int = 0
    mean_difficulty: float | None = None
    mean_helpfulness: float | None = None
    total_minutes: int = 0
    mean_minutes: float | None = None
    reasons: Mapping[str, int] = field(default_factory=dict)
    other_reasons: tuple[str, ...] = ()

    @property
    def reason_labels(self) -> dict[str, int]:
        """The reasons with the patient-facing wording, most frequent first."""
        return {
            catalog.NON_COMPLETION_REASONS.get(code, code): n
            for code, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        }


@dataclass(frozen=True)
class Adherence:
    """Homework counts of one patient or plan over a period (see the module doc)."""

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


@dataclass(frozen=True)
class TaskRow:
    """One Task as a line of a review: what, when due, what happened."""

    task: str
    activity: str | None
    title: str | None
    due: str | None
    status: str
    outcome: str
    response: str | None = None


@dataclass(frozen=True)
class MeasureChange:
    """A score (Observation code) before the session date and its latest value since."""

    code: str
    display: str | None
    before: float | None
    latest: float | None
    unit: str | None
    count_since: int

    @property
    def change(self) -> float | None:
        """latest − before, when both are known."""
        if self.before is None or self.latest is None:
            return None
        return self.latest - self.before


@dataclass(frozen=True)
class DiscussionPoint:
    """Something worth raising at the session, with the resource it comes from."""

    kind: str
    text: str
    reference: str | None = None


@dataclass(frozen=True)
class SessionSummary:
    """Everything since the last session: assigned, done, not done, points, measures."""

    patient: str
    since: str
    adherence: Adherence
    assigned: tuple[TaskRow, ...]
    done: tuple[TaskRow, ...]
    not_done: tuple[TaskRow, ...]
    to_discuss: tuple[DiscussionPoint, ...]
    measures: tuple[MeasureChange, ...]


@dataclass(frozen=True)
class PanelRow:
    """One patient of a clinician's panel and how their homework is going."""

    patient: str
    name: str | None
    adherence: Adherence


# -- task counting ------------------------------------------------------------------------


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
        """Read the facts of one Task resource."""
        plan = next(
            (
                ref
                for based in task.get("basedOn") or []
                if isinstance(ref := based.get("reference"), str) and ref.startswith("CarePlan/")
            ),
            None,
        )
        response = next(
            (
                ref
                for out in task.get("output") or []
                if isinstance(ref := (out.get("valueReference") or {}).get("reference"), str)
            ),
            None,
        )
        activity = None
        for ident in task.get("identifier") or []:
            if ident.get("system") == TASK_OCCURRENCE_SYSTEM:
                parts = str(ident.get("value", "")).split("/")
                if len(parts) >= 2 and parts[1].isdigit():
                    activity = int(parts[1])
                    break
        period = (task.get("restriction") or {}).get("period") or {}
        return cls(
            id=str(task.get("id", "")),
            status=str(task.get("status", "")),
            subject=(task.get("for") or {}).get("reference"),
            homework=any(
                c.get("system") == SDC_TEMP_SYSTEM and c.get("code") == COMPLETE_QUESTIONNAIRE
                for c in (task.get("code") or {}).get("coding") or []
            ),
            due=task_due(task),
            business=business_status(task),
            finished=(task.get("executionPeriod") or {}).get("end"),
            authored=task.get("authoredOn"),
            modified=task.get("lastModified"),
            plan=plan,
            canonical=task_canonical(task),
            response=response,
            activity=activity,
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


def _in_period(task: TaskFacts, since: datetime | None, until: datetime | None) -> bool:
    moment = task.moment
    return (since is None or moment >= since) and (until is None or moment < until)


def _homework_tasks(
    store: Store, params: list[tuple[str, str]], since: datetime | None, until: datetime | None
) -> list[TaskFacts]:
    query = [*params, _CODE]
    if since is not None:
        query.append(("due", f"ge{_iso(since)}"))
    return [t for t in _search_facts(store, query) if _in_period(t, since, until)]


def patient_homework(store: Store, patient_ref: str) -> list[tuple[TaskFacts, Stored]]:
    """Return a patient's homework Tasks: one search driven by the patient, filtered here.

    The code is checked in Python rather than as a second search parameter, which keeps
    the query to the patient index alone. Each Task version is parsed once per process
    (:func:`task_facts`); the resource itself stays unparsed.
    """
    found = every_match(store, "Task", [("patient", patient_ref)])
    return [pair for pair in task_facts(store, found) if pair[0].homework]


def _search_facts(store: Store, params: list[tuple[str, str]]) -> list[TaskFacts]:
    """Return the facts of every Task matching a search (parsed once per version)."""
    return [facts for facts, _ in task_facts(store, every_match(store, "Task", params))]


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(value: date | datetime | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.combine(value, time(0), tzinfo=timezone.utc)


# -- engagement check-ins -----------------------------------------------------------------


def _number(values: list[Any]) -> float | None:
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def summarize_check_ins(responses: Iterable[Mapping[str, Any]]) -> Engagement:
    """Summarize engagement check-in QuestionnaireResponses (pure: no store)."""
    count = 0
    amount: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    agreed = not_agreed = 0
    difficulty: list[float] = []
    helpfulness: list[float] = []
    minutes: list[float] = []
    other: list[str] = []
    for response in responses:
        count += 1
        answers = flatten_answers(response)
        for coding in answers.get("amount-done", []):
            if isinstance(coding, dict) and coding.get("code"):
                amount[coding["code"]] += 1
        for value in answers.get("as-agreed", []):
            if value is True:
                agreed += 1
            elif value is False:
                not_agreed += 1
        for name, bucket in (
            ("difficulty", difficulty),
            ("helpfulness", helpfulness),
            ("minutes-spent", minutes),
        ):
            number = _number(answers.get(name, []))
            if number is not None:
                bucket.append(number)
        for coding in answers.get("reason-not-done", []):
            if isinstance(coding, dict) and coding.get("code"):
                reasons[coding["code"]] += 1
        other.extend(
            v.strip() for v in answers.get("reason-other", []) if isinstance(v, str) and v.strip()
        )

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 2) if values else None

    return Engagement(
        check_ins=count,
        amount_done=dict(amount),
        as_agreed=agreed,
        not_as_agreed=not_agreed,
        mean_difficulty=mean(difficulty),
        mean_helpfulness=mean(helpfulness),
        total_minutes=int(sum(minutes)),
        mean_minutes=mean(minutes),
        reasons=dict(reasons),
        other_reasons=tuple(other),
    )


def _check_ins(
    store: Store,
    patient: str,
    since: datetime | None,
    until: datetime | None,
    plan: str | None = None,
) -> list[dict[str, Any]]:
    params = [
        ("patient", patient),
        ("questionnaire", catalog.ENGAGEMENT_CHECK_IN_URL),
        ("status", "completed,amended"),
    ]
    if plan:
        params.append(("based-on", plan))
    if since is not None:
        params.append(("authored", f"ge{_iso(since)}"))
    out = []
    for response in iter_all(store, "QuestionnaireResponse", params):
        authored = response.get("authored")
        if until is not None and authored and parse_instant(authored) >= until:
            continue
        out.append(response)
    return out


def check_ins_of(
    store: Store, patients: list[str], since: datetime | None
) -> dict[str, list[dict[str, Any]]]:
    """:func:`_check_ins` of many patients (no end), with one search per 50 patients."""
    out: dict[str, list[dict[str, Any]]] = {}
    refs = sorted(set(patients))
    for start in range(0, len(refs), 50):
        params = [
            ("patient", ",".join(refs[start : start + 50])),
            ("questionnaire", catalog.ENGAGEMENT_CHECK_IN_URL),
            ("status", "completed,amended"),
        ]
        if since is not None:
            params.append(("authored", f"ge{_iso(since)}"))
        for response in iter_all(store, "QuestionnaireResponse", params):
            subject = (response.get("subject") or {}).get("reference")
            if isinstance(subject, str):
                out.setdefault(subject, []).append(response)
    return out


# -- per patient, per plan ----------------------------------------------------------------


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
    start, end = _moment(since), _moment(until)
    params = [("patient", patient_ref)]
    if requester:
        params.append(("requester", reference("Practitioner", requester)))
    tasks = _homework_tasks(store, params, start, end)
    engagement = summarize_check_ins(_check_ins(store, patient_ref, start, end))
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
    start, end = _moment(since), _moment(until)
    tasks = _homework_tasks(store, [("based-on", plan_ref)], start, end)
    patient = (plan.get("subject") or {}).get("reference", "")
    engagement = (
        summarize_check_ins(_check_ins(store, patient, start, end, plan=plan_ref))
        if patient.startswith("Patient/")
        else Engagement()
    )
    return summarize_tasks(tasks, now=now, engagement=engagement)


# -- since the last session ---------------------------------------------------------------


def _titles(store: Store, canonicals: Iterable[str | None]) -> dict[str, str | None]:
    refs = {ref for ref in canonicals if ref}
    known = questionnaire_titles(store, refs)
    titles: dict[str, str | None] = {}
    for ref in refs:
        brief = known.get(ref) or known.get(ref.partition("|")[0]) if "://" in ref else None
        resource: Mapping[str, Any] | None = brief
        if resource is None and ref.startswith("Questionnaire/"):
            try:
                resource = store.read("Questionnaire", ref.split("/", 1)[1]).resource
            except NotFound:
                resource = None
        titles[ref] = (resource or {}).get("title") or (resource or {}).get("name")
    return titles


def _row(task: TaskFacts, titles: Mapping[str, str | None], now: datetime) -> TaskRow:
    return TaskRow(
        task=task.ref,
        activity=task.canonical,
        title=titles.get(task.canonical or ""),
        due=task.due_text,
        status=task.status,
        outcome=task.outcome(now),
        response=task.response,
    )


def _observation_value(observation: Mapping[str, Any]) -> tuple[float, str | None] | None:
    quantity = observation.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), (int, float)):
        return float(quantity["value"]), quantity.get("unit") or quantity.get("code")
    if isinstance(observation.get("valueInteger"), int):
        return float(observation["valueInteger"]), None
    return None


def _measures(store: Store, patient: str, since: datetime) -> list[MeasureChange]:
    observations = iter_all(
        store,
        "Observation",
        [
            ("patient", patient),
            ("category", "http://terminology.hl7.org/CodeSystem/observation-category|survey"),
        ],
    )
    series: dict[str, list[tuple[datetime, float, str | None, str | None]]] = {}
    for observation in observations:
        if observation.get("status") in ("cancelled", "entered-in-error"):
            continue
        value = _observation_value(observation)
        when = observation.get("effectiveDateTime") or observation.get("issued")
        codings = (observation.get("code") or {}).get("coding") or []
        if value is None or not when or not codings:
            continue
        code = f"{codings[0].get('system', '')}|{codings[0].get('code', '')}"
        display = (observation.get("code") or {}).get("text") or codings[0].get("display")
        series.setdefault(code, []).append((parse_instant(when), value[0], value[1], display))
    changes = []
    for code, points in sorted(series.items()):
        points.sort(key=lambda p: p[0])
        before = [p for p in points if p[0] < since]
        after = [p for p in points if p[0] >= since]
        if not after:
            continue
        latest = after[-1]
        changes.append(
            MeasureChange(
                code=code,
                display=latest[3],
                before=before[-1][1] if before else None,
                latest=latest[1],
                unit=latest[2],
                count_since=len(after),
            )
        )
    return changes


def _discussion(
    store: Store,
    patient: str,
    since: datetime,
    rows: list[TaskRow],
    check_ins: list[dict[str, Any]],
    measures: list[MeasureChange],
) -> list[DiscussionPoint]:
    points: list[DiscussionPoint] = []
    for flag in iter_all(store, "Flag", [("patient", patient), ("status", "active")]):
        started = (flag.get("period") or {}).get("start")
        if started and parse_instant(started) < since:
            continue
        text = (flag.get("code") or {}).get("text") or "A risk flag was raised"
        points.append(DiscussionPoint("risk", text, f"Flag/{flag['id']}"))
    for row in rows:
        if row.outcome in ("missed", "overdue"):
            label = row.title or row.activity or "Homework"
            points.append(
                DiscussionPoint("not-done", f"{label} ({row.outcome}, due {row.due})", row.task)
            )
    for response in check_ins:
        answers = flatten_answers(response)
        ref = f"QuestionnaireResponse/{response['id']}"
        for coding in answers.get("reason-not-done", []):
            if isinstance(coding, dict) and coding.get("code"):
                label = catalog.NON_COMPLETION_REASONS.get(coding["code"], coding["code"])
                points.append(DiscussionPoint("reason", f"Not done: {label}", ref))
        for text in answers.get("reason-other", []):
            if isinstance(text, str) and text.strip():
                points.append(DiscussionPoint("reason", f"Not done: {text.strip()}", ref))
        difficulty = _number(answers.get("difficulty", []))
        if difficulty is not None and difficulty >= HIGH_DIFFICULTY:
            points.append(DiscussionPoint("difficulty", f"Found it hard ({difficulty:g}/10)", ref))
        helpfulness = _number(answers.get("helpfulness", []))
        if helpfulness is not None and helpfulness <= LOW_HELPFULNESS:
            points.append(
                DiscussionPoint(
                    "helpfulness", f"Found it not very helpful ({helpfulness:g}/10)", ref
                )
            )
    for change in measures:
        if change.change:
            name = change.display or change.code
            points.append(
                DiscussionPoint(
                    "measure", f"{name}: {change.before:g} → {change.latest:g} ({change.change:+g})"
                )
            )
    return points


def _authored_since(task: TaskFacts, since: datetime) -> bool:
    authored = task.authored
    return isinstance(authored, str) and parse_instant(authored) >= since


def since_last_session(
    store: Store,
    patient: str,
    session: date | datetime,
    *,
    now: datetime | None = None,
    homework: Sequence[TaskFacts] | None = None,
) -> SessionSummary:
    """Summarize a patient's homework since the last session (a date or an instant).

    Assigned = Tasks due since then or authored since then; done, not done (missed or
    overdue), points to discuss (risk flags, reasons and ratings from check-ins, missed
    work, changed scores) and each measure's latest value against the one before.
    ``homework`` is the patient's :func:`patient_homework`, when the caller has read it.
    """
    moment = utc_now(now)
    patient_ref = reference("Patient", patient)
    since = _moment(session)
    if since is None:
        raise InvalidInput("The date of the last session is required")
    # a Task counts from its due time, else when it was finished or authored; the
    # patient's whole homework comes from one patient-driven search, each Task version
    # read once per process (task_facts)
    if homework is None:
        homework = [facts for facts, _ in patient_homework(store, patient_ref)]
    tasks = [
        t
        for t in homework
        if (_in_period(t, since, None) or _authored_since(t, since))
        and t.outcome(moment) != "cancelled"
        and t.opened(moment)
    ]
    titles = _titles(store, (t.canonical for t in tasks))
    rows = sorted((_row(t, titles, moment) for t in tasks), key=lambda r: (r.due or "", r.task))
    check_ins = _check_ins(store, patient_ref, since, None)
    measures = _measures(store, patient_ref, since)
    adherence = summarize_tasks(
        [t for t in tasks if _in_period(t, since, None)],
        now=moment,
        engagement=summarize_check_ins(check_ins),
    )
    return SessionSummary(
        patient=patient_ref,
        since=_iso(since),
        adherence=adherence,
        assigned=tuple(rows),
        done=tuple(r for r in rows if r.outcome in ("on-time", "late")),
        not_done=tuple(r for r in rows if r.outcome in ("missed", "overdue")),
        to_discuss=tuple(_discussion(store, patient_ref, since, rows, check_ins, measures)),
        measures=tuple(measures),
    )
