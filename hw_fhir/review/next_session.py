"""Session prep: everything since the last session, with prompts for the homework review.

:func:`session_prep` summarises the homework since the last session (guessed by
:func:`default_session_date` unless given) and fills the five parts of the review
conversation (:data:`REVIEW_PROMPTS`: a win, what was done, what was hard, what was
learned, what next) with what the data suggests to raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from ..adherence import (
    Adherence,
    SessionSummary,
    TaskFacts,
    patient_homework,
    patient_recent_adherence,
    since_last_session,
)
from ..assignment import parse_instant, reference
from ..errors import InvalidInput
from ..store.base import Store
from .formatting import current_moment, outcome_label
from .summaries import HOMEWORK_PLANS, FlagRow, ResponseSummary, flag_rows, response_summaries

__all__ = ["REVIEW_PROMPTS", "Prompt", "SessionPrep", "default_session_date", "session_prep"]

#: The structure of the homework review at the next session (DOMAIN.md).
REVIEW_PROMPTS: tuple[tuple[str, str], ...] = (
    ("A win", "What went well since we last met, however small?"),
    ("What was done", "Which practice did you do, and how did it go?"),
    ("What was hard", "What got in the way, or what did not get done — and why?"),
    ("What was learned", "What did you notice or learn from doing it (or from not doing it)?"),
    ("What next", "What will you practice before next time: what, when, where, how often?"),
)


@dataclass(frozen=True)
class Prompt:
    """One part of the review conversation, with what the data suggests to raise."""

    heading: str
    question: str
    points: tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionPrep:
    """The session-prep page: the summary since the last session and the review prompts."""

    summary: SessionSummary
    since: date
    prompts: tuple[Prompt, ...]
    responses: tuple[ResponseSummary, ...] = ()
    flags: tuple[FlagRow, ...] = ()
    recent: Adherence | None = None  # the window shared with the panel and dashboard


def default_session_date(
    store: Store,
    patient: str,
    *,
    now: datetime | None = None,
    fallback_days: int = 7,
    homework: Sequence[TaskFacts] | None = None,
) -> date:
    """Guess the last session: the latest day homework was assigned, else a week ago.

    Homework is usually agreed in session, so the newest ``authoredOn`` of a one-off
    Task or ``created`` of a homework CarePlan before today is the best guess.
    ``homework`` is the patient's :func:`~hw_fhir.adherence.patient_homework`, when the
    caller has read it.
    """
    moment = current_moment(now)
    patient_ref = reference("Patient", patient)
    if homework is None:
        homework = [facts for facts, _ in patient_homework(store, patient_ref)]
    today = datetime.combine(moment.date(), time(0), tzinfo=timezone.utc)
    days: list[date] = []
    # one-off Tasks (no basedOn) authored before today: the newest is it
    authored = [
        when
        for t in homework
        if not t.based and t.authored and (when := parse_instant(t.authored)) < today
    ]
    if authored:
        days.append(max(authored).date())
    for plan in store.search(
        "CarePlan", [("patient", patient_ref), HOMEWORK_PLANS, ("_count", "50")]
    ).resources:
        if plan.get("created"):
            days.append(parse_instant(plan["created"]).date())
    earlier = [d for d in days if d < moment.date()]
    return max(earlier) if earlier else moment.date() - timedelta(days=fallback_days)


def _day_text(value: str | None, zone: str) -> str:
    """``2026-03-03T00:30:00Z`` → ``Mon 2 Mar`` in the patient's zone."""
    if not value:
        return "?"
    try:
        day = (
            parse_instant(value).astimezone(ZoneInfo(zone)).date()
            if "T" in value
            else date.fromisoformat(value[:10])
        )
    except ValueError:
        return value[:10]
    return f"{day:%a} {day.day} {day:%b}"


def _prompts(
    summary: SessionSummary, flags: Sequence[FlagRow] = (), zone: str = "UTC"
) -> tuple[Prompt, ...]:
    a = summary.adherence
    win: list[str] = []
    if a.completed:
        win.append(
            f"{a.completed} of {a.assigned} done" + (f", {a.on_time} on time" if a.on_time else "")
        )
    if a.current_streak >= 2:
        win.append(f"{a.current_streak} in a row completed")
    for change in summary.measures:
        if change.change is not None and change.change < 0:
            win.append(
                f"{change.display or change.code} down {abs(change.change):g} "
                f"({change.before:g} → {change.latest:g})"
            )
    done = [
        f"{r.title or r.activity or 'Homework'} — due {_day_text(r.due, zone)} "
        f"({outcome_label(r.outcome).lower()})"
        for r in summary.done
    ]
    hard = [
        f"{r.title or r.activity or 'Homework'} — {outcome_label(r.outcome).lower()}, due "
        f"{_day_text(r.due, zone)}"
        for r in summary.not_done
    ]
    hard += [
        p.text for p in summary.to_discuss if p.kind in ("reason", "difficulty", "helpfulness")
    ]
    learned = [p.text for p in summary.to_discuss if p.kind == "measure"]
    if a.engagement.mean_helpfulness is not None:
        learned.append(f"Rated helpfulness {a.engagement.mean_helpfulness:g}/10 on average")
    nxt = []
    if a.missed + a.overdue:
        nxt.append("Consider a smaller step the patient is at least 7/10 confident about")
    if flags or any(p.kind == "risk" for p in summary.to_discuss):
        nxt.insert(0, "Review the safety plan first: a risk flag was raised")
    nxt.append("Agree what, when, where, how often and how long; check understanding")
    points = (win, done, hard, learned, nxt)
    return tuple(
        Prompt(heading, question, tuple(p))
        for (heading, question), p in zip(REVIEW_PROMPTS, points, strict=True)
    )


def session_prep(
    store: Store,
    patient: str,
    since: date | None = None,
    *,
    now: datetime | None = None,
    zone: str = "UTC",
) -> SessionPrep:
    """Return the session-prep page: homework since ``since`` (default: the last session).

    ``zone`` is the patient's time zone, for the days named in the prompts.
    """
    moment = current_moment(now)
    homework = [facts for facts, _ in patient_homework(store, reference("Patient", patient))]
    day = since or default_session_date(store, patient, now=moment, homework=homework)
    if day > moment.date():
        raise InvalidInput("The last session cannot be in the future")
    summary = since_last_session(store, patient, day, now=moment, homework=homework)
    responses = [
        r
        for r in response_summaries(store, reference("Patient", patient), 20)
        if r.authored and r.authored[:10] >= day.isoformat()
    ]
    flags = tuple(flag_rows(store, reference("Patient", patient)))
    return SessionPrep(
        summary=summary,
        since=day,
        prompts=_prompts(summary, flags, zone),
        responses=tuple(responses),
        flags=flags,
        recent=patient_recent_adherence(store, patient, now=moment, homework=homework),
    )
