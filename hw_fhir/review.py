"""What a clinician looks at: view models for the dashboard, review, session prep and library.

Pure read-side logic over FHIR JSON and the store; no web framework. The clinician pages
(:mod:`smart_app.clinician`) render these values and call the domain modules for writes.

* :func:`patient_dashboard` — active risk Flags, active assignments and plans (status,
  next due, last reminder), adherence and engagement, measure scores with severity,
  change labels and charts, recent responses.
* :func:`response_view` — a completed response readably: question and answer side by
  side, calculated scores, the band, answers that raised a risk highlighted.
* :func:`compare_responses` — two completions of the same activity side by side.
* :func:`session_prep` — everything since the last session, with prompts for the review
  conversation (a win, what was done, what was hard, what was learned, what next).
* :func:`panel` — a clinician's patients, those needing attention first.
* :func:`library_entries`, :func:`filter_library`, :func:`assign_defaults` — browse the
  library and tailor an assignment with sensible defaults.
* :func:`preview_rows` — a Questionnaire's items as the patient will meet them.
* :func:`editor_rows`, :func:`apply_item_editor` — the simple item editor of a clinician's
  own draft (text, type, required, help text, answer options; add, move, remove); the
  result is checked and stored by :func:`hw_fhir.library.edit_draft`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import catalog
from .adherence import (
    Adherence,
    SessionSummary,
    TaskFacts,
    TaskRow,
    patient_homework,
    since_last_session,
)
from .adherence_window import panel_summary, patient_recent_adherence, recent_adherence
from .assignment import (
    OPEN_STATUSES,
    HomeworkDetails,
    activity_schedule,
    parse_instant,
    reference,
    task_canonical,
    task_due,
)
from .charts import Chart, completion_calendar, instrument_chart
from .errors import InvalidInput, Issue
from .library import questionnaire_titles
from .schedule import Schedule
from .scoring import ScoreResult, score_response
from .scoring.instruments import band_for
from .scoring.items import answer_value
from .scoring.weights import answer_weight
from .store.base import Store, iter_all

__all__ = [
    "TIMEZONE_EXTENSION",
    "REVIEW_PROMPTS",
    "MEASURE_INSTRUCTIONS",
    "FlagRow",
    "AssignmentRow",
    "MeasureRow",
    "ResponseSummary",
    "PatientDashboard",
    "AnswerRow",
    "ResponseView",
    "CompareRow",
    "Comparison",
    "Prompt",
    "SessionPrep",
    "PanelEntry",
    "LibraryEntry",
    "AssignDefaults",
    "PreviewRow",
    "SHARE_SCORES_EXTENSION",
    "patient_zone",
    "scores_shared",
    "share_scores",
    "patient_dashboard",
    "response_view",
    "compare_responses",
    "session_prep",
    "default_session_date",
    "panel",
    "library_entries",
    "filter_library",
    "assign_defaults",
    "preview_rows",
    "answer_text",
    "outcome_label",
    "EDITABLE_TYPES",
    "editor_rows",
    "apply_item_editor",
]

TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"
_CALCULATED = (
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
)
_ITEM_CONTROL = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"
_FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
_HOMEWORK_PLANS = ("category", f"{catalog.CODE_SYSTEM_BASE}/care-plan-category|homework")


_MEASURES = ("phq-9", "gad-7", "pcl-5", "phq-2")
_OUTCOME_LABELS = {
    "on-time": "Done on time",
    "late": "Done late",
    "missed": "Missed",
    "overdue": "Overdue",
    "upcoming": "Due later",
    "cancelled": "Cancelled",
}
_MBC_LABELS = {
    "response": "Response",
    "remission": "Remission",
    "reliable-improvement": "Reliable improvement",
    "deterioration": "Deterioration",
    "no-reliable-change": "No reliable change",
}

#: The structure of the homework review at the next session (DOMAIN.md).
REVIEW_PROMPTS: tuple[tuple[str, str], ...] = (
    ("A win", "What went well since we last met, however small?"),
    ("What was done", "Which practice did you do, and how did it go?"),
    ("What was hard", "What got in the way, or what did not get done — and why?"),
    ("What was learned", "What did you notice or learn from doing it (or from not doing it)?"),
    ("What next", "What will you practice before next time: what, when, where, how often?"),
)


def _now(now: datetime | None) -> datetime:
    moment = now or datetime.now(timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def outcome_label(outcome: str) -> str:
    """Return the clinician-facing words of a Task outcome (``on-time`` → ``Done on time``)."""
    return _OUTCOME_LABELS.get(outcome, outcome.replace("-", " ").capitalize())


def patient_zone(patient: Mapping[str, Any] | None, default: str = "UTC") -> str:
    """Return the patient's IANA time zone (the ``timezone`` extension), else ``default``."""
    for ext in (patient or {}).get("extension") or []:
        if ext.get("url") == TIMEZONE_EXTENSION and isinstance(ext.get("valueCode"), str):
            try:
                ZoneInfo(ext["valueCode"])
            except (ZoneInfoNotFoundError, ValueError):
                continue
            return str(ext["valueCode"])
    return default


#: On the Patient: ``valueBoolean`` true when the clinician shares measure scores with the
#: patient (the patient's progress page then shows their trend).
SHARE_SCORES_EXTENSION = "http://hw-fhir.org/fhir/StructureDefinition/share-scores-with-patient"


def scores_shared(patient: Mapping[str, Any] | None) -> bool:
    """Whether the clinician shares measure scores with this patient (off by default)."""
    return any(
        e.get("url") == SHARE_SCORES_EXTENSION and e.get("valueBoolean") is True
        for e in (patient or {}).get("extension") or []
    )


def share_scores(store: Store, patient: str, shared: bool) -> dict[str, Any]:
    """Share (or stop sharing) measure scores with a patient; return the stored Patient.

    Written with If-Match on the version read, so a concurrent change of the Patient
    (preferences saved by the patient, say) is never overwritten: VersionConflict then.
    """
    patient_ref = reference("Patient", patient)
    stored = store.read("Patient", patient_ref.split("/", 1)[1])
    resource = dict(stored.resource)
    extensions = [
        e for e in resource.get("extension") or [] if e.get("url") != SHARE_SCORES_EXTENSION
    ]
    extensions.append({"url": SHARE_SCORES_EXTENSION, "valueBoolean": bool(shared)})
    resource["extension"] = extensions
    return store.update(resource, if_match=stored.version_id).stored.resource


_ACRONYM = re.compile(r"\(([A-Z][A-Z0-9-]{1,11})\)\s*$")


def _title(questionnaire: Mapping[str, Any] | None) -> str:
    """Return an activity's title, shortened to its acronym when it ends with one (PHQ-9)."""
    q = questionnaire or {}
    title = str(q.get("title") or q.get("name") or "Activity")
    found = _ACRONYM.search(title)
    return found.group(1) if found and len(title) > 24 else title


# -- the patient dashboard ----------------------------------------------------------------


@dataclass(frozen=True)
class FlagRow:
    """An active risk Flag: what, since when, and the response that raised it."""

    id: str
    text: str
    category: str
    raised: str | None
    response: str | None


@dataclass(frozen=True)
class AssignmentRow:
    """One active assignment: a one-off Task or a recurring plan / pathway."""

    kind: str  # task | plan | pathway
    ref: str
    title: str
    status: str
    schedule: str
    next_due: str | None
    wording: str
    instructions: str
    channel: str | None
    last_reminder: str | None = None
    reminder_status: str | None = None
    done: int = 0
    assigned: int = 0
    steps: tuple[tuple[int, str, str], ...] = ()
    activity: str | None = None


@dataclass(frozen=True)
class MeasureRow:
    """A measure followed over time: latest score, severity, change labels and the chart."""

    instrument: str
    name: str
    latest: float
    latest_date: str
    band: str | None
    baseline: float
    change: float
    labels: tuple[str, ...]
    count: int
    chart: Chart


@dataclass(frozen=True)
class ResponseSummary:
    """A submitted response in a list: what, when, its score, and the one before it."""

    id: str
    title: str
    authored: str | None
    questionnaire: str
    score: float | None = None
    band: str | None = None
    previous: str | None = None


@dataclass(frozen=True)
class PatientDashboard:
    """Everything on a patient's dashboard."""

    patient: str
    flags: tuple[FlagRow, ...]
    assignments: tuple[AssignmentRow, ...]
    adherence: Adherence
    measures: tuple[MeasureRow, ...]
    calendar: Chart
    responses: tuple[ResponseSummary, ...]
    recent: tuple[TaskRow, ...]

    @property
    def on_time_rate(self) -> float | None:
        """Completed on time / assigned (None when nothing was assigned)."""
        a = self.adherence
        return a.on_time / a.assigned if a.assigned else None


def _flag_rows(store: Store, patient_ref: str) -> list[FlagRow]:
    rows = []
    for flag in iter_all(store, "Flag", [("patient", patient_ref), ("status", "active")]):
        response = None
        for ext in flag.get("extension") or []:
            if ext.get("url") == _FLAG_DETAIL:
                ref = (ext.get("valueReference") or {}).get("reference")
                if isinstance(ref, str) and ref.startswith("QuestionnaireResponse/"):
                    response = ref
        code = flag.get("code") or {}
        category = next(
            (
                c.get("display") or c.get("code")
                for cat in flag.get("category") or []
                for c in cat.get("coding") or []
                if c.get("system") != "http://terminology.hl7.org/CodeSystem/flag-category"
            ),
            "Risk",
        )
        text = code.get("text") or next(
            (c.get("display") for c in code.get("coding") or [] if c.get("display")),
            "A risk was raised",
        )
        rows.append(
            FlagRow(
                id=flag["id"],
                text=str(text),
                category=str(category),
                raised=(flag.get("period") or {}).get("start"),
                response=response,
            )
        )
    return sorted(rows, key=lambda r: r.raised or "", reverse=True)


def _reminder_targets(
    one_off: list[dict[str, Any]], tasks_by_plan: Mapping[str, list[TaskFacts]], now: datetime
) -> list[str]:
    """Return the Tasks whose reminders the dashboard shows: open one-offs, each plan's latest."""
    refs = [f"Task/{t['id']}" for t in one_off]
    for tasks in tasks_by_plan.values():
        dated = sorted(
            ((t.due, t) for t in tasks if t.due is not None), key=lambda pair: pair[0]
        )
        past = [t for due, t in dated if due <= now][-2:]
        ahead = [t for due, t in dated if due > now][:1]
        refs += [t.ref for t in past + ahead]
    return refs


def _reminders(store: Store, targets: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Return Task ref → (sent, status) of the latest reminder Communication about it."""
    latest: dict[str, tuple[str, str]] = {}
    found: list[dict[str, Any]] = []
    for start in range(0, len(targets), 50):
        found += iter_all(
            store, "Communication", [("about", ",".join(targets[start : start + 50]))]
        )
    for comm in found:
        when = comm.get("sent") or ""
        for about in comm.get("about") or []:
            ref = about.get("reference")
            if (
                isinstance(ref, str)
                and ref.startswith("Task/")
                and (ref not in latest or when > latest[ref][0])
            ):
                latest[ref] = (when, str(comm.get("status") or ""))
    return latest


def _schedule_text(detail: Mapping[str, Any]) -> str:
    try:
        return activity_schedule({"detail": detail}).describe()
    except InvalidInput:
        return ""


def _plan_rows(
    plans: list[dict[str, Any]],
    tasks_by_plan: dict[str, list[TaskFacts]],
    titles: Mapping[str, dict[str, Any]],
    reminders: Mapping[str, tuple[str, str]],
    now: datetime,
) -> list[AssignmentRow]:
    rows = []
    for plan in plans:
        ref = f"CarePlan/{plan['id']}"
        tasks = tasks_by_plan.get(ref, [])
        activities = plan.get("activity") or []
        live = [
            (n, a.get("detail") or {})
            for n, a in enumerate(activities)
            if (a.get("detail") or {}).get("status")
            in ("scheduled", "in-progress", "not-started", "on-hold")
        ]
        first = live[0][1] if live else ((activities[0].get("detail") or {}) if activities else {})
        open_due = sorted(
            t.due for t in tasks if t.status in OPEN_STATUSES and t.due is not None and t.due > now
        )
        outcomes = [t.outcome(now) for t in tasks]
        done = sum(o in ("on-time", "late") for o in outcomes)
        assigned = sum(o in ("on-time", "late", "missed", "overdue") for o in outcomes)
        last = max((reminders[t.ref] for t in tasks if t.ref in reminders), default=None)
        details = HomeworkDetails.from_detail(first) if first else HomeworkDetails()
        pathway = bool(plan.get("instantiatesUri"))
        steps = (
            tuple(
                (
                    n,
                    _title(
                        titles.get(
                            ((a.get("detail") or {}).get("instantiatesCanonical") or [""])[0]
                        )
                    ),
                    str((a.get("detail") or {}).get("status") or ""),
                )
                for n, a in enumerate(activities)
            )
            if pathway
            else ()
        )
        canonical = (first.get("instantiatesCanonical") or [None])[0]
        next_due = open_due[0] if open_due else None
        if next_due is None and plan.get("status") == "active" and live:
            own = [t for t in tasks if t.activity == live[0][0]]
            next_due = _next_scheduled(first, own, now)
        rows.append(
            AssignmentRow(
                kind="pathway" if pathway else "plan",
                ref=ref,
                title=str(
                    plan.get("title")
                    if pathway or canonical not in titles
                    else _title(titles.get(canonical or ""))
                ),
                status=str(plan.get("status")),
                schedule=_schedule_text(first) if not pathway else f"{len(activities)} steps",
                next_due=next_due.isoformat() if next_due else None,
                wording=details.wording,
                instructions=details.instructions,
                channel=details.reminder_channel,
                last_reminder=last[0] if last else None,
                reminder_status=last[1] if last else None,
                done=done,
                assigned=assigned,
                steps=steps,
                activity=canonical,
            )
        )
    return rows


def _next_scheduled(
    detail: Mapping[str, Any], tasks: list[TaskFacts], now: datetime
) -> datetime | None:
    """Return the next due time of a plan activity after its latest materialized Task."""
    try:
        schedule = activity_schedule({"detail": detail})
    except InvalidInput:
        return None
    dues = [t.due for t in tasks if t.due is not None]
    after = max([now, *(d + timedelta(seconds=1) for d in dues)])
    found = schedule.next_occurrence(after)
    return found.due if found else None


def _task_rows(
    tasks: list[dict[str, Any]],
    titles: Mapping[str, dict[str, Any]],
    reminders: Mapping[str, tuple[str, str]],
) -> list[AssignmentRow]:
    rows = []
    for task in tasks:
        ref = f"Task/{task['id']}"
        canonical = task_canonical(task)
        details = HomeworkDetails.from_task(task)
        due = task_due(task)
        last = reminders.get(ref)
        rows.append(
            AssignmentRow(
                kind="task",
                ref=ref,
                title=_title(titles.get(canonical or "")),
                status=str(task.get("status")),
                schedule="Once",
                next_due=due.isoformat() if due else None,
                wording=details.wording,
                instructions=details.instructions,
                channel=details.reminder_channel,
                last_reminder=last[0] if last else None,
                reminder_status=last[1] if last else None,
                activity=canonical,
            )
        )
    return rows


_ASSERTED = ("final", "amended", "corrected")


def _histories(store: Store, patient_ref: str) -> dict[str, list[tuple[str, float]]]:
    """Return each followed instrument's ``(effective, total)`` points, oldest first.

    One Observation search for every instrument's total code (the same Observations
    :func:`hw_fhir.outcomes.measure_history` reads: asserted ones with a value and a time).
    """
    return _histories_of(store, [patient_ref]).get(patient_ref, {})


def _histories_of(
    store: Store, patient_refs: Sequence[str]
) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """:func:`_histories` of many patients, with one search per 50 patients."""
    from .outcomes import MEASURES

    by_code = {
        (system, code): key for key in _MEASURES for system, code in MEASURES[key].total_codes
    }
    codes = ",".join(f"{system}|{code}" for system, code in by_code)
    out: dict[str, dict[str, list[tuple[datetime, str, float]]]] = {}
    refs = sorted(set(patient_refs))
    found: list[dict[str, Any]] = []
    for start in range(0, len(refs), 50):
        found += iter_all(
            store, "Observation", [("subject", ",".join(refs[start : start + 50])), ("code", codes)]
        )
    for obs in found:
        subject = (obs.get("subject") or {}).get("reference")
        if obs.get("status") not in _ASSERTED or not isinstance(subject, str):
            continue
        key = next(
            (
                by_code[(c.get("system"), c.get("code"))]
                for c in (obs.get("code") or {}).get("coding") or []
                if (c.get("system"), c.get("code")) in by_code
            ),
            None,
        )
        quantity = obs.get("valueQuantity") or {}
        value = quantity.get("value", obs.get("valueInteger"))
        when = (
            obs.get("effectiveDateTime")
            or (obs.get("effectivePeriod") or {}).get("start")
            or obs.get("issued")
        )
        if (
            key is None
            or isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not isinstance(when, str)
            or len(when) < 10
        ):
            continue
        try:
            moment = (
                parse_instant(when)
                if "T" in when
                else datetime.fromisoformat(when[:10]).replace(tzinfo=timezone.utc)
            )
        except ValueError:
            continue
        out.setdefault(subject, {}).setdefault(key, []).append((moment, when, float(value)))
    return {
        subject: {
            key: [(when, value) for _, when, value in sorted(points, key=lambda p: p[0])]
            for key, points in series.items()
        }
        for subject, series in out.items()
    }


def _measure_rows(store: Store, patient_ref: str, zone: ZoneInfo) -> list[MeasureRow]:
    from .outcomes import MEASURES
    from .scoring import progress

    rows = []
    histories = _histories(store, patient_ref)
    for key in _MEASURES:
        history = histories.get(key)
        if not history:
            continue
        points = [
            (
                parse_instant(when).astimezone(zone).date()
                if "T" in when
                else date.fromisoformat(when[:10]),
                float(v),
            )
            for when, v in history
        ]
        name = MEASURES[key].name
        summary = progress(key, history) if key != "phq-2" else None
        latest_when, latest = points[-1]
        band = _band_name(key, latest)
        rows.append(
            MeasureRow(
                instrument=key,
                name=name,
                latest=latest,
                latest_date=latest_when.isoformat(),
                band=band,
                baseline=points[0][1],
                change=latest - points[0][1],
                labels=tuple(
                    _MBC_LABELS.get(label, label) for label in (summary.labels if summary else ())
                ),
                count=len(points),
                chart=instrument_chart(key, points, chart_id=f"chart-{key}"),
            )
        )
    return rows


def _band_name(instrument: str, value: float) -> str | None:
    from .scoring import gad7, pcl5, phq2, phq9

    known = {i.key: i for i in (phq9.INSTRUMENT, gad7.INSTRUMENT, phq2.INSTRUMENT, pcl5.INSTRUMENT)}
    found = known.get(instrument)
    band = band_for(found, int(round(value))) if found else None
    return band.display if band else None


def _response_summaries(store: Store, patient_ref: str, limit: int) -> list[ResponseSummary]:
    found = store.search(
        "QuestionnaireResponse",
        [
            ("patient", patient_ref),
            ("status", "completed,amended"),
            ("_sort", "-authored"),
            ("_count", str(limit * 3)),
        ],
    ).resources
    found = [
        r
        for r in found
        if (r.get("questionnaire") or "").split("|")[0] != catalog.ENGAGEMENT_CHECK_IN_URL
    ]
    titles = questionnaire_titles(store, (r.get("questionnaire") or "" for r in found))
    out: list[ResponseSummary] = []
    for n, response in enumerate(found[:limit]):
        ref = response.get("questionnaire") or ""
        url = ref.split("|")[0]
        previous = next(
            (
                r["id"]
                for r in found[n + 1 :]
                if (r.get("questionnaire") or "").split("|")[0] == url
            ),
            None,
        )
        score, band = _total_of(response)
        out.append(
            ResponseSummary(
                id=response["id"],
                title=_title(titles.get(ref) or titles.get(url)),
                authored=response.get("authored"),
                questionnaire=ref,
                score=score,
                band=band,
                previous=previous,
            )
        )
    return out


def _responses_of_tasks(
    store: Store, tasks: Sequence[TaskFacts], limit: int
) -> list[ResponseSummary]:
    """Return the latest responses of completed Tasks, each with the one before it.

    The Tasks are at hand already: their ``output`` names the responses, so only those
    few responses are read (by id), and "the one before" is found however far back it is.
    """
    done: list[tuple[str, str, str]] = []  # (finished, canonical, response id)
    for task in tasks:
        if task.status != "completed":
            continue
        ref = task.response or ""
        canonical = task.canonical or ""
        if (
            not ref.startswith("QuestionnaireResponse/")
            or canonical.split("|")[0] == catalog.ENGAGEMENT_CHECK_IN_URL
        ):
            continue
        finished = task.finished or task.modified or ""
        done.append((str(finished), canonical, ref.split("/", 1)[1]))
    done.sort(key=lambda item: item[0], reverse=True)
    top = done[:limit]
    if not top:
        return []
    found = {
        r["id"]: r
        for r in store.search(
            "QuestionnaireResponse",
            [("_id", ",".join(rid for _, _, rid in top)), ("_count", str(len(top)))],
        ).resources
    }
    titles = questionnaire_titles(store, (canonical for _, canonical, _ in top))
    out = []
    for n, (finished, canonical, rid) in enumerate(top):
        response = found.get(rid)
        if response is None:
            continue
        url = canonical.split("|")[0]
        previous = next((other for _, c, other in done[n + 1 :] if c.split("|")[0] == url), None)
        score, band = _total_of(response)
        out.append(
            ResponseSummary(
                id=rid,
                title=_title(titles.get(canonical) or titles.get(url)),
                authored=response.get("authored") or finished,
                questionnaire=canonical,
                score=score,
                band=band,
                previous=previous,
            )
        )
    return out


def _total_of(response: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """Return a stored response's calculated total (filled in by scoring) and its band."""
    url = (response.get("questionnaire") or "").split("|")[0]
    key = url.rsplit("/", 1)[-1]
    if key not in _MEASURES:
        return None, None
    total_ids = {f"{key.replace('-', '')}-total"}
    for item in _walk_response(response.get("item") or []):
        if item.get("linkId") in total_ids:
            for answer in item.get("answer") or []:
                found = answer_value(answer)
                if found and isinstance(found[1], (int, float)):
                    return float(found[1]), _band_name(key, float(found[1]))
                if (
                    found
                    and isinstance(found[1], dict)
                    and isinstance(found[1].get("value"), (int, float))
                ):
                    return float(found[1]["value"]), _band_name(key, float(found[1]["value"]))
    return None, None


def _walk_response(items: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for item in items:
        yield item
        yield from _walk_response(item.get("item") or [])
        for answer in item.get("answer") or []:
            yield from _walk_response(answer.get("item") or [])


def patient_dashboard(
    store: Store,
    patient: str,
    *,
    now: datetime | None = None,
    zone: str = "UTC",
    weeks: int = 12,
    responses: int = 8,
) -> PatientDashboard:
    """Return a patient's dashboard (see the module doc); reads each resource type once.

    ``zone`` is the patient's time zone: calendar days and score dates are the patient's.
    """
    moment = _now(now)
    local = ZoneInfo(zone)
    patient_ref = reference("Patient", patient)
    pairs = patient_homework(store, patient_ref)
    tasks = [facts for facts, _ in pairs]
    plans = [
        p
        for p in iter_all(
            store,
            "CarePlan",
            [("patient", patient_ref), _HOMEWORK_PLANS, ("status", "active,on-hold")],
        )
    ]
    tasks_by_plan: dict[str, list[TaskFacts]] = {}
    one_off: list[dict[str, Any]] = []
    for facts, stored in pairs:
        if facts.plan:
            tasks_by_plan.setdefault(facts.plan, []).append(facts)
        elif facts.status in OPEN_STATUSES:
            one_off.append(stored.resource)
    refs = {task_canonical(t) or "" for t in one_off}
    refs |= {
        c
        for p in plans
        for a in p.get("activity") or []
        for c in (a.get("detail") or {}).get("instantiatesCanonical") or []
    }
    titles = questionnaire_titles(store, refs)
    reminders = _reminders(store, _reminder_targets(one_off, tasks_by_plan, moment))
    assignments = _task_rows(
        sorted(one_off, key=lambda t: t.get("restriction", {}).get("period", {}).get("end", "")),
        titles,
        reminders,
    )
    assignments += _plan_rows(plans, tasks_by_plan, titles, reminders, moment)
    check_ins = [
        r
        for r in iter_all(
            store,
            "QuestionnaireResponse",
            [("patient", patient_ref), ("questionnaire", catalog.ENGAGEMENT_CHECK_IN_URL)],
        )
        if r.get("status") in ("completed", "amended")
    ]
    adherence = recent_adherence(tasks, check_ins, now=moment)
    dated = [(t, t.due, t.outcome(moment)) for t in tasks if t.due is not None]
    local_today = moment.astimezone(local).date()
    calendar = completion_calendar(
        [(due.astimezone(local).date(), outcome) for _, due, outcome in dated],
        end=local_today + timedelta(days=7),
        weeks=weeks,
        today=local_today,
        title="Homework by week",
    )
    soon = moment + timedelta(days=7)
    recent_tasks = sorted(
        ((t, due, o) for t, due, o in dated if o != "cancelled" and due <= soon),
        key=lambda item: item[1],
        reverse=True,
    )[:10]
    recent_titles = questionnaire_titles(store, (t.canonical or "" for t, _, _ in recent_tasks))
    recent = tuple(
        TaskRow(
            task=t.ref,
            activity=t.canonical,
            title=_title(recent_titles.get(t.canonical or "")),
            due=due.isoformat(),
            status=t.status,
            outcome=outcome,
            response=t.response,
        )
        for t, due, outcome in recent_tasks
    )
    return PatientDashboard(
        patient=patient_ref,
        flags=tuple(_flag_rows(store, patient_ref)),
        assignments=tuple(assignments),
        adherence=adherence,
        measures=tuple(_measure_rows(store, patient_ref, local)),
        calendar=calendar,
        responses=tuple(_responses_of_tasks(store, tasks, responses)),
        recent=recent,
    )


# -- one response, two responses -----------------------------------------------------------


@dataclass(frozen=True)
class AnswerRow:
    """One line of a response: the question (or group heading) and its answers."""

    key: str
    link_id: str
    text: str
    kind: str  # question | group | score
    depth: int
    answers: tuple[str, ...] = ()
    weight: str | None = None
    flagged: bool = False
    flag_reason: str = ""


@dataclass(frozen=True)
class ResponseView:
    """A response made readable."""

    id: str | None
    title: str
    questionnaire: str
    authored: str | None
    status: str
    rows: tuple[AnswerRow, ...]
    total: float | None = None
    total_label: str | None = None
    band: str | None = None
    scores: tuple[tuple[str, str], ...] = ()
    risks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    instrument: str | None = None

    @property
    def flagged(self) -> tuple[AnswerRow, ...]:
        """The rows whose answers raised a risk."""
        return tuple(r for r in self.rows if r.flagged)


def answer_text(answer: Mapping[str, Any], item: Mapping[str, Any] | None = None) -> str:
    """Return an answer's value as text (a Coding's display, Yes/No, a number with its unit...)."""
    found = answer_value(dict(answer))
    if found is None:
        return ""
    kind, value = found
    if kind == "Coding" and isinstance(value, dict):
        return str(value.get("display") or value.get("code") or "")
    if kind == "Boolean":
        return "Yes" if value else "No"
    if kind == "Quantity" and isinstance(value, dict):
        return f"{value.get('value', '')} {value.get('unit') or value.get('code') or ''}".strip()
    if kind == "Attachment" and isinstance(value, dict):
        return str(value.get("title") or value.get("url") or "attachment")
    if kind == "Reference" and isinstance(value, dict):
        return str(value.get("display") or value.get("reference") or "")
    if kind == "DateTime" and isinstance(value, str) and "T" in value:
        return value.replace("T", " ")[:16]
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _is_calculated(item: Mapping[str, Any]) -> bool:
    return any(e.get("url") == _CALCULATED for e in item.get("extension") or [])


def _weight_text(
    questionnaire: Mapping[str, Any], item: Mapping[str, Any], answers: list[dict[str, Any]]
) -> str | None:
    if item.get("type") not in ("choice", "open-choice"):
        return None
    weights = [answer_weight(dict(questionnaire), dict(item), a) for a in answers]
    known = [w for w in weights if w is not None]
    if not known:
        return None
    return ", ".join(f"{w.normalize():f}" for w in known)


def _answer_rows(
    questionnaire: Mapping[str, Any],
    q_items: list[dict[str, Any]],
    r_items: list[dict[str, Any]],
    depth: int,
    prefix: str,
    risks: Mapping[str, str],
    out: list[AnswerRow],
) -> None:
    by_link: dict[str, list[dict[str, Any]]] = {}
    for item in r_items:
        by_link.setdefault(str(item.get("linkId")), []).append(item)
    for q_item in q_items:
        link_id = str(q_item.get("linkId"))
        kind = q_item.get("type")
        found = by_link.get(link_id, [])
        if kind == "display":
            continue
        if kind == "group":
            instances = found or [{}]
            for n, instance in enumerate(instances):
                label = str(q_item.get("text") or link_id)
                if len(instances) > 1:
                    label += f" ({n + 1} of {len(instances)})"
                key = f"{prefix}{link_id}[{n}]"
                out.append(
                    AnswerRow(key=key, link_id=link_id, text=label, kind="group", depth=depth)
                )
                _answer_rows(
                    questionnaire,
                    q_item.get("item") or [],
                    instance.get("item") or [],
                    depth + 1,
                    key + "/",
                    risks,
                    out,
                )
            continue
        answers = [a for item in found for a in item.get("answer") or []]
        key = f"{prefix}{link_id}"
        out.append(
            AnswerRow(
                key=key,
                link_id=link_id,
                text=str(q_item.get("prefix", "") + " " if q_item.get("prefix") else "")
                + str(q_item.get("text") or link_id),
                kind="score" if _is_calculated(q_item) else "question",
                depth=depth,
                answers=tuple(answer_text(a, q_item) for a in answers),
                weight=_weight_text(questionnaire, q_item, answers),
                flagged=link_id in risks,
                flag_reason=risks.get(link_id, ""),
            )
        )
        if q_item.get("item"):
            nested = [i for a in answers for i in a.get("item") or []]
            _answer_rows(questionnaire, q_item["item"], nested, depth + 1, key + "/", risks, out)


def response_view(
    questionnaire: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    result: ScoreResult | None = None,
) -> ResponseView:
    """Return a response side by side with its questions, scored, risky answers flagged.

    ``result`` is the score (computed with :func:`hw_fhir.scoring.score_response` when
    not given); its calculated copy of the response fills in score items.
    """
    try:
        scored = result or score_response(dict(questionnaire), dict(response))
    except Exception:  # noqa: BLE001 - a response that cannot be scored is still shown
        scored = None
    shown = dict(scored.response) if scored is not None and scored.response else dict(response)
    risks = {r.link_id: r.reason for r in (scored.risks if scored else ()) if r.link_id}
    rows: list[AnswerRow] = []
    _answer_rows(
        questionnaire, questionnaire.get("item") or [], shown.get("item") or [], 0, "", risks, rows
    )
    band = scored.interpretation.display if scored and scored.interpretation else None
    scores = tuple(
        (s.label or s.key, f"{s.value:g}")
        for s in (scored.scores if scored else ())
        if s is not (scored.total if scored else None)
    )
    return ResponseView(
        id=response.get("id"),
        title=_title(questionnaire),
        questionnaire=str(response.get("questionnaire") or ""),
        authored=response.get("authored"),
        status=str(response.get("status") or ""),
        rows=tuple(rows),
        total=float(scored.value) if scored and scored.value is not None else None,
        total_label=(scored.total.label if scored and scored.total else None),
        band=band,
        scores=scores,
        risks=tuple(f"{r.display}: {r.reason}" for r in (scored.risks if scored else ())),
        notes=tuple(scored.notes) if scored else (),
        instrument=scored.instrument if scored else None,
    )


@dataclass(frozen=True)
class CompareRow:
    """One question of two responses side by side."""

    key: str
    text: str
    kind: str
    depth: int
    before: tuple[str, ...]
    after: tuple[str, ...]
    before_weight: str | None = None
    after_weight: str | None = None
    flagged: bool = False

    @property
    def changed(self) -> bool:
        """Whether the answers differ."""
        return self.kind != "group" and self.before != self.after


@dataclass(frozen=True)
class Comparison:
    """Two completions of the same activity, the earlier one first."""

    before: ResponseView
    after: ResponseView
    rows: tuple[CompareRow, ...]
    change: float | None
    labels: tuple[str, ...] = ()

    @property
    def changed_count(self) -> int:
        """How many answers differ."""
        return sum(r.changed for r in self.rows)


def compare_responses(
    first: tuple[Mapping[str, Any], Mapping[str, Any]],
    second: tuple[Mapping[str, Any], Mapping[str, Any]],
) -> Comparison:
    """Compare two ``(questionnaire, response)`` pairs of the same activity (same url).

    The earlier response (by ``authored``) becomes ``before``. Raise InvalidInput when
    the two responses answer different activities.
    """
    url_a = str(first[1].get("questionnaire") or "").split("|")[0]
    url_b = str(second[1].get("questionnaire") or "").split("|")[0]
    if url_a != url_b:
        raise InvalidInput("Only two completions of the same activity can be compared")
    pairs = sorted([first, second], key=lambda p: str(p[1].get("authored") or ""))
    before, after = (response_view(q, r) for q, r in pairs)
    earlier = {row.key: row for row in before.rows}
    rows = []
    seen = set()
    for row in after.rows:
        old = earlier.get(row.key)
        seen.add(row.key)
        rows.append(
            CompareRow(
                key=row.key,
                text=row.text,
                kind=row.kind,
                depth=row.depth,
                before=old.answers if old else (),
                after=row.answers,
                before_weight=old.weight if old else None,
                after_weight=row.weight,
                flagged=row.flagged or bool(old and old.flagged),
            )
        )
    for row in before.rows:
        if row.key not in seen:
            rows.append(
                CompareRow(
                    key=row.key,
                    text=row.text,
                    kind=row.kind,
                    depth=row.depth,
                    before=row.answers,
                    after=(),
                    before_weight=row.weight,
                    flagged=row.flagged,
                )
            )
    change = (
        after.total - before.total if after.total is not None and before.total is not None else None
    )
    labels: tuple[str, ...] = ()
    if change is not None and after.instrument:
        from .scoring import progress
        from .scoring.mbc import THRESHOLDS

        if after.instrument in THRESHOLDS and after.total is not None and before.total is not None:
            summary = progress(
                after.instrument,
                [
                    (before.authored or "1970-01-01", before.total),
                    (after.authored or "1970-01-02", after.total),
                ],
            )
            labels = tuple(_MBC_LABELS.get(x, x) for x in (summary.labels if summary else ()))
    return Comparison(before=before, after=after, rows=tuple(rows), change=change, labels=labels)


# -- session prep ---------------------------------------------------------------------------


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
    moment = _now(now)
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
        "CarePlan", [("patient", patient_ref), _HOMEWORK_PLANS, ("_count", "50")]
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
    moment = _now(now)
    homework = [facts for facts, _ in patient_homework(store, reference("Patient", patient))]
    day = since or default_session_date(store, patient, now=moment, homework=homework)
    if day > moment.date():
        raise InvalidInput("The last session cannot be in the future")
    summary = since_last_session(store, patient, day, now=moment, homework=homework)
    responses = [
        r
        for r in _response_summaries(store, reference("Patient", patient), 20)
        if r.authored and r.authored[:10] >= day.isoformat()
    ]
    flags = tuple(_flag_rows(store, reference("Patient", patient)))
    return SessionPrep(
        summary=summary,
        since=day,
        prompts=_prompts(summary, flags, zone),
        responses=tuple(responses),
        flags=flags,
        recent=patient_recent_adherence(store, patient, now=moment, homework=homework),
    )


# -- a clinician's panel --------------------------------------------------------------------


@dataclass(frozen=True)
class PanelEntry:
    """One patient of the panel and why they may need attention."""

    patient: str
    name: str | None
    adherence: Adherence
    flags: int
    worsening: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


def panel(
    store: Store, practitioner: str, *, now: datetime | None = None, days: int = 28
) -> list[PanelEntry]:
    """Return a clinician's patients: risk flags first, then worsening scores, then missed work."""
    from .scoring import progress
    from .scoring.mbc import THRESHOLDS

    moment = _now(now)
    rows = panel_summary(store, practitioner, now=moment, days=days)
    flagged: dict[str, int] = {}
    for flag in iter_all(store, "Flag", [("status", "active")]):
        subject = (flag.get("subject") or {}).get("reference")
        if isinstance(subject, str):
            flagged[subject] = flagged.get(subject, 0) + 1
    entries = []
    every_history = _histories_of(store, [row.patient for row in rows])
    for row in rows:
        histories = every_history.get(row.patient, {})
        summaries = {
            key: progress(key, points) for key, points in histories.items() if key in THRESHOLDS
        }
        worse = tuple(
            f"{key.upper()} {p.baseline.value:g} → {p.latest.value:g}"
            for key, p in summaries.items()
            if p is not None and p.deterioration
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


# -- the library ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LibraryEntry:
    """An activity in the library, with its tags for filtering."""

    id: str
    canonical: str
    title: str
    description: str
    status: str
    tags: Mapping[str, tuple[str, ...]]
    own: bool = False
    items: int = 0

    def tag_labels(self, category: str) -> tuple[str, ...]:
        """Return the display names of one tag category."""
        names = {
            "problem-area": catalog.PROBLEM_AREAS,
            "modality": catalog.MODALITIES,
            "media": catalog.MEDIA_TYPES,
            "kind": catalog.ACTIVITY_KINDS,
        }[category]
        return tuple(names.get(code, code) for code in self.tags.get(category, ()))


def library_entries(
    questionnaires: Iterable[Mapping[str, Any]], *, own_prefix: str | None = None
) -> list[LibraryEntry]:
    """Return library entries for Questionnaires, sorted by title (newest version per url)."""
    newest: dict[str, Mapping[str, Any]] = {}
    for q in questionnaires:
        url = str(q.get("url") or q.get("id"))
        if url not in newest or _version_key(q.get("version")) > _version_key(
            newest[url].get("version")
        ):
            newest[url] = q
    out = []
    for q in newest.values():
        found = catalog.tags(q)
        out.append(
            LibraryEntry(
                id=str(q.get("id")),
                canonical=catalog.canonical(q),
                title=str(q.get("title") or q.get("name") or "Activity"),
                description=str(q.get("description") or ""),
                status=str(q.get("status") or ""),
                tags={k: tuple(v) for k, v in found.items()},
                own=bool(own_prefix and str(q.get("url", "")).startswith(own_prefix)),
                items=sum(1 for _ in _walk_items(q.get("item") or [])),
            )
        )
    return sorted(out, key=lambda e: (not e.own, e.title.lower()))


def _version_key(version: Any) -> tuple[Any, ...]:
    return tuple(
        (0, int(p), "") if p.isdigit() else (1, 0, p) for p in str(version or "").split(".")
    )


def _walk_items(items: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for item in items:
        if item.get("type") not in ("display", "group"):
            yield item
        yield from _walk_items(item.get("item") or [])


def filter_library(
    entries: Sequence[LibraryEntry],
    *,
    text: str = "",
    problem_area: str = "",
    modality: str = "",
    media: str = "",
    kind: str = "",
) -> list[LibraryEntry]:
    """Return the entries matching every given filter; ``text`` matches title and description."""
    words = [w for w in re.split(r"\s+", text.lower().strip()) if w]
    out = []
    for entry in entries:
        haystack = f"{entry.title} {entry.description}".lower()
        if any(w not in haystack for w in words):
            continue
        if any(
            value and value not in entry.tags.get(category, ())
            for category, value in (
                ("problem-area", problem_area),
                ("modality", modality),
                ("media", media),
                ("kind", kind),
            )
        ):
            continue
        out.append(entry)
    return out


@dataclass(frozen=True)
class AssignDefaults:
    """The tailoring form's starting values, chosen so the common case needs no change."""

    frequency: str
    interval: int
    days_of_week: tuple[str, ...]
    start: date
    time_of_day: time
    count: int | None
    until: date | None
    instructions: str
    rationale: str
    example: str
    wording: str
    reminder_channel: str
    timezone: str

    def schedule(self) -> Schedule:
        """Return the default schedule."""
        return Schedule(
            frequency=self.frequency,
            start=self.start,
            timezone=self.timezone,
            time_of_day=self.time_of_day,
            interval=self.interval,
            days_of_week=self.days_of_week,
            count=self.count,
            until=self.until,
        )


#: Default instructions of a measure (its description is written for the clinician).
MEASURE_INSTRUCTIONS = (
    "Please answer these questions about how you have been feeling lately. It "
    "takes a few minutes, and there are no right or wrong answers."
)

_KIND_SCHEDULES: dict[str, tuple[str, int, int | None, int]] = {
    # kind: (frequency, interval, count, days until the first due date)
    "measure": ("every-n-days", 14, 6, 1),
    "self-monitoring": ("daily", 1, 14, 1),
    "skills-practice": ("daily", 1, 7, 1),
    "behavioral": ("daily", 1, 7, 1),
    "psychoeducation": ("once", 1, None, 3),
    "reflection": ("once", 1, None, 6),
    "check-in": ("once", 1, None, 6),
}


def assign_defaults(
    questionnaire: Mapping[str, Any],
    *,
    timezone_name: str,
    now: datetime | None = None,
    channel: str = "email",
) -> AssignDefaults:
    """Return sensible tailoring defaults for an activity and patient time zone.

    Measures repeat every 2 weeks (6 times), logs and practice daily for 1–2 weeks,
    reading and reflection once before the next session; due at 19:00 local time,
    starting tomorrow. Instructions and rationale come from the activity's
    ``description`` and ``purpose``.
    """
    moment = _now(now)
    kinds = catalog.tags(questionnaire).get("kind") or ["reflection"]
    instructions = str(questionnaire.get("description") or "")
    if kinds[0] == "measure":
        instructions = MEASURE_INSTRUCTIONS
    frequency, interval, count, offset = _KIND_SCHEDULES.get(kinds[0], ("once", 1, None, 6))
    local_today = moment.astimezone(ZoneInfo(timezone_name)).date()
    return AssignDefaults(
        frequency=frequency,
        interval=interval,
        days_of_week=(),
        start=local_today + timedelta(days=offset),
        time_of_day=time(19, 0),
        count=count,
        until=None,
        instructions=instructions,
        rationale=str(questionnaire.get("purpose") or ""),
        example="",
        wording="homework",
        reminder_channel=channel,
        timezone=timezone_name,
    )


# -- preview --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewRow:
    """An item as the patient meets it: text, type, options, required, help, depth."""

    link_id: str
    text: str
    type: str
    depth: int
    required: bool = False
    repeats: bool = False
    options: tuple[str, ...] = ()
    help: str = ""
    calculated: bool = False
    enable_when: bool = False


def _help_text(item: Mapping[str, Any]) -> str:
    for child in item.get("item") or []:
        if child.get("type") != "display":
            continue
        for ext in child.get("extension") or []:
            if ext.get("url") == _ITEM_CONTROL and any(
                c.get("code") in ("help", "flyover")
                for c in (ext.get("valueCodeableConcept") or {}).get("coding") or []
            ):
                return str(child.get("text") or "")
    return ""


def _is_help(item: Mapping[str, Any]) -> bool:
    return item.get("type") == "display" and any(
        e.get("url") == _ITEM_CONTROL
        and any(
            c.get("code") in ("help", "flyover")
            for c in (e.get("valueCodeableConcept") or {}).get("coding") or []
        )
        for e in item.get("extension") or []
    )


def preview_rows(questionnaire: Mapping[str, Any]) -> list[PreviewRow]:
    """Return every item of a Questionnaire in order (help texts folded into their item)."""
    rows: list[PreviewRow] = []

    def walk(items: list[dict[str, Any]], depth: int) -> None:
        for item in items:
            if _is_help(item):
                continue
            options = tuple(answer_text(o) for o in item.get("answerOption") or [])
            rows.append(
                PreviewRow(
                    link_id=str(item.get("linkId")),
                    text=str(item.get("text") or ""),
                    type=str(item.get("type")),
                    depth=depth,
                    required=bool(item.get("required")),
                    repeats=bool(item.get("repeats")),
                    options=options,
                    help=_help_text(item),
                    calculated=_is_calculated(item),
                    enable_when=bool(item.get("enableWhen")),
                )
            )
            walk(item.get("item") or [], depth + 1)

    walk(list(questionnaire.get("item") or []), 0)
    return rows


# -- the simple item editor -----------------------------------------------------------------

#: Item types the editor offers, with their labels.
EDITABLE_TYPES: Mapping[str, str] = {
    "string": "Short text",
    "text": "Long text",
    "integer": "Whole number",
    "decimal": "Number",
    "boolean": "Yes / no",
    "choice": "Choose from a list",
    "open-choice": "List or own words",
    "date": "Date",
    "time": "Time",
    "dateTime": "Date and time",
    "display": "Text to read",
    "group": "Section",
}
_CHOICE = ("choice", "open-choice")
_HELP_CONTROL = {
    "url": _ITEM_CONTROL,
    "valueCodeableConcept": {
        "coding": [
            {
                "system": "http://hl7.org/fhir/questionnaire-item-control",
                "code": "help",
                "display": "Help-Button",
            }
        ]
    },
}


@dataclass(frozen=True)
class EditorRow:
    """One item in the editor: its fields as the form shows them."""

    link_id: str
    text: str
    type: str
    depth: int
    required: bool
    help: str
    options: str
    calculated: bool
    first: bool
    last: bool


def editor_rows(questionnaire: Mapping[str, Any]) -> list[EditorRow]:
    """Return the editable items in order (help texts are part of their item)."""
    rows: list[EditorRow] = []

    def walk(items: list[dict[str, Any]], depth: int) -> None:
        visible = [i for i in items if not _is_help(i)]
        for n, item in enumerate(visible):
            rows.append(
                EditorRow(
                    link_id=str(item.get("linkId")),
                    text=str(item.get("text") or ""),
                    type=str(item.get("type")),
                    depth=depth,
                    required=bool(item.get("required")),
                    help=_help_text(item),
                    options="\n".join(answer_text(o) for o in item.get("answerOption") or []),
                    calculated=_is_calculated(item),
                    first=n == 0,
                    last=n == len(visible) - 1,
                )
            )
            walk(item.get("item") or [], depth + 1)

    walk(list(questionnaire.get("item") or []), 0)
    return rows


def _first(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else str(value)


def _siblings(items: list[dict[str, Any]], link_id: str) -> tuple[list[dict[str, Any]], int] | None:
    for n, item in enumerate(items):
        if item.get("linkId") == link_id:
            return items, n
        found = _siblings(item.get("item") or [], link_id)
        if found:
            return found
    return None


def _options(
    lines: str, current: list[dict[str, Any]], link_id: str, item_type: str
) -> list[dict[str, Any]]:
    """Turn one option per line into answerOptions; kept labels keep their codes and weights."""
    labels = [line.strip() for line in lines.splitlines() if line.strip()]
    by_label = {answer_text(o): o for o in current}
    system = next(
        (
            o["valueCoding"].get("system")
            for o in current
            if isinstance(o.get("valueCoding"), dict) and o["valueCoding"].get("system")
        ),
        None,
    )
    coded = any("valueCoding" in o for o in current) or not current
    used = {str((o.get("valueCoding") or {}).get("code")) for o in current}
    out = []
    for label in labels:
        if label in by_label:
            out.append(by_label[label])
            continue
        if not coded:
            out.append({"valueString": label})
            continue
        base = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40] or "option"
        code, n = base, 1
        while code in used:
            n += 1
            code = f"{base}-{n}"
        used.add(code)
        coding = {"code": code, "display": label}
        if system:
            coding = {"system": system, **coding}
        out.append({"valueCoding": coding})
    return out


def _set_help(item: dict[str, Any], text: str, link_id: str) -> None:
    children = [c for c in item.get("item") or [] if not _is_help(c)]
    if text.strip():
        children.insert(
            0,
            {
                "linkId": f"{link_id}-help",
                "text": text.strip(),
                "type": "display",
                "extension": [_HELP_CONTROL],
            },
        )
    if children:
        item["item"] = children
    else:
        item.pop("item", None)


def _edit_item(item: dict[str, Any], form: Mapping[str, Any]) -> None:
    link_id = str(item.get("linkId"))
    if _is_calculated(item):
        return
    text = _first(form, f"text.{link_id}")
    if text is not None:
        if text.strip():
            item["text"] = text.strip()
        else:
            item.pop("text", None)
    new_type = _first(form, f"type.{link_id}")
    if new_type is not None and new_type != item.get("type"):
        if new_type not in EDITABLE_TYPES:
            raise InvalidInput(f"{new_type!r} is not an item type the editor offers")
        if (new_type == "group") != (item.get("type") == "group"):
            raise InvalidInput(
                f"Item {text or link_id!r} cannot change between a section and a question"
            )
        item["type"] = new_type
    kind = item.get("type")
    if f"type.{link_id}" in form and kind not in ("display", "group"):
        if _first(form, f"required.{link_id}"):
            item["required"] = True
        else:
            item.pop("required", None)
    if kind not in _CHOICE:
        item.pop("answerOption", None)
    options = _first(form, f"options.{link_id}")
    if kind in _CHOICE and options is not None:
        item["answerOption"] = _options(
            options, list(item.get("answerOption") or []), link_id, str(kind)
        )
        if not item["answerOption"]:
            item.pop("answerOption")
        item.pop("answerValueSet", None) if item.get("answerOption") else None
    help_text = _first(form, f"help.{link_id}")
    if help_text is not None and kind != "display":
        _set_help(item, help_text, link_id)


def _walk_edit(items: list[dict[str, Any]], form: Mapping[str, Any]) -> None:
    for item in items:
        if _is_help(item):
            continue
        _edit_item(item, form)
        _walk_edit(item.get("item") or [], form)


def _new_link_id(questionnaire: Mapping[str, Any], text: str) -> str:
    taken = {str(i.get("linkId")) for i in _all_items(questionnaire.get("item") or [])}
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:32] or "item"
    link_id, n = base, 1
    while link_id in taken or f"{link_id}-help" in taken:
        n += 1
        link_id = f"{base}-{n}"
    return link_id


def _all_items(items: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for item in items:
        yield item
        yield from _all_items(item.get("item") or [])


def apply_item_editor(questionnaire: Mapping[str, Any], form: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of a draft Questionnaire with the editor form applied.

    ``form`` maps field names to values (or lists of values): ``title``, ``description``;
    per item ``text.<linkId>``, ``type.<linkId>``, ``required.<linkId>``,
    ``help.<linkId>``, ``options.<linkId>`` (one option per line; an option keeps its
    code and weight while its label is unchanged); new item ``new_text``, ``new_type``,
    ``new_options``, ``new_required``, ``new_help``, ``new_parent``; and ``action``:
    ``save``, ``add``, ``up:<linkId>``, ``down:<linkId>`` or ``remove:<linkId>``.
    The result is not checked here: :func:`hw_fhir.library.edit_draft` checks it.
    Raise InvalidInput for a form that cannot be applied (unknown type, unknown item).
    """
    import copy

    edited = copy.deepcopy(dict(questionnaire))
    for name in ("title", "description"):
        value = _first(form, name)
        if value is not None:
            if value.strip():
                edited[name] = value.strip()
            else:
                edited.pop(name, None)
    _walk_edit(edited.get("item") or [], form)
    action = _first(form, "action") or "save"
    verb, _, link_id = action.partition(":")
    if verb in ("up", "down", "remove"):
        found = _siblings(edited.get("item") or [], link_id)
        if found is None:
            raise InvalidInput(f"The activity has no item {link_id!r}")
        siblings, n = found
        if verb == "remove":
            del siblings[n]
        else:
            target = n - 1 if verb == "up" else n + 1
            while 0 <= target < len(siblings) and _is_help(siblings[target]):
                target += -1 if verb == "up" else 1
            if 0 <= target < len(siblings):
                siblings[n], siblings[target] = siblings[target], siblings[n]
    elif verb == "add" or (verb == "save" and (_first(form, "new_text") or "").strip()):
        text = (_first(form, "new_text") or "").strip()
        kind = _first(form, "new_type") or "string"
        if not text:
            raise InvalidInput(
                "Write the new item's question or text first",
                issues=[
                    Issue("Write the new item's question or text first", expression="new_text")
                ],
            )
        if kind not in EDITABLE_TYPES or kind == "group":
            raise InvalidInput(f"{kind!r} is not an item type the editor offers")
        item: dict[str, Any] = {"linkId": _new_link_id(edited, text), "text": text, "type": kind}
        if _first(form, "new_required") and kind not in ("display", "group"):
            item["required"] = True
        if kind in _CHOICE:
            options = _options(_first(form, "new_options") or "", [], item["linkId"], kind)
            if options:
                item["answerOption"] = options
        if kind != "display":
            _set_help(item, _first(form, "new_help") or "", item["linkId"])
        parent = (_first(form, "new_parent") or "").strip()
        if parent:
            found = _siblings(edited.get("item") or [], parent)
            if found is None or found[0][found[1]].get("type") != "group":
                raise InvalidInput(f"There is no section {parent!r} to add the item to")
            found[0][found[1]].setdefault("item", []).append(item)
        else:
            edited.setdefault("item", []).append(item)
    elif verb != "save":
        raise InvalidInput(f"Unknown editor action {action!r}")
    return edited
