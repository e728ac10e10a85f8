"""Since the last session: what was assigned, done and not done, and what to discuss
(:class:`SessionSummary`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .. import catalog
from ..assignment import parse_instant, reference, utc_now
from ..errors import InvalidInput, NotFound
from ..library import questionnaire_titles
from ..responses import flatten_answers
from ..store.base import Store, iter_all
from .counting import Adherence, summarize_tasks
from .engagement import (
    HIGH_DIFFICULTY,
    LOW_HELPFULNESS,
    check_ins_between,
    first_number,
    summarize_check_ins,
)
from .measures import MeasureChange, measure_changes
from .periods import period_moment, search_instant
from .task_facts import TaskFacts, in_period, patient_homework


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
        difficulty = first_number(answers.get("difficulty", []))
        if difficulty is not None and difficulty >= HIGH_DIFFICULTY:
            points.append(DiscussionPoint("difficulty", f"Found it hard ({difficulty:g}/10)", ref))
        helpfulness = first_number(answers.get("helpfulness", []))
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
    since = period_moment(session)
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
        if (in_period(t, since, None) or _authored_since(t, since))
        and t.outcome(moment) != "cancelled"
        and t.opened(moment)
    ]
    titles = _titles(store, (t.canonical for t in tasks))
    rows = sorted((_row(t, titles, moment) for t in tasks), key=lambda r: (r.due or "", r.task))
    check_ins = check_ins_between(store, patient_ref, since, None)
    measures = measure_changes(store, patient_ref, since)
    adherence = summarize_tasks(
        [t for t in tasks if in_period(t, since, None)],
        now=moment,
        engagement=summarize_check_ins(check_ins),
    )
    return SessionSummary(
        patient=patient_ref,
        since=search_instant(since),
        adherence=adherence,
        assigned=tuple(rows),
        done=tuple(r for r in rows if r.outcome in ("on-time", "late")),
        not_done=tuple(r for r in rows if r.outcome in ("missed", "overdue")),
        to_discuss=tuple(_discussion(store, patient_ref, since, rows, check_ins, measures)),
        measures=tuple(measures),
    )
