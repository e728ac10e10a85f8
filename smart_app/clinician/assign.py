"""Assigning homework: browse the library, preview, tailor, confirm; pathways; change or stop.

The common case is three clicks: *Assign homework* on the dashboard, *Assign* next to
an activity (the tailoring form opens with sensible defaults), *Assign* again.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime, time, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from flask import render_template, request

from hw_fhir import catalog, plans, reminders, render, review
from hw_fhir.activity_defaults import tailored_defaults
from hw_fhir.assignment import (
    LIVE_ACTIVITY_STATUSES,
    OPEN_STATUSES,
    Assignment,
    AssignmentEdit,
    HomeworkDetails,
    activity_schedule,
    assign,
    cancel_assignment,
    edit_assignment,
    plan_tasks,
    task_canonical,
    task_due,
)
from hw_fhir.channel_choice import channel_problem
from hw_fhir.errors import AlreadyAssigned, BusinessRuleError, HwFhirError, InvalidInput, NotFound
from hw_fhir.i18n import language_name, patient_language
from hw_fhir.library import clinician_system, resolve_questionnaire
from hw_fhir.outcomes import crisis_resources, with_crisis_notes
from hw_fhir.links import patient_links
from hw_fhir.plugins import channels
from hw_fhir.schedule import DAYS_OF_WEEK
from hw_fhir.store.base import iter_all
from hw_fhir.translation import localize, original_language, translation_status

from ..fhir_api import fhir_base
from ..patient.language import use_language
from ..state import services
from .base import (
    FieldErrors,
    bp,
    clinician,
    events,
    field_errors,
    go,
    now,
    page,
    patient_or_404,
    settings,
    store,
)
from .forms import (
    CHANNELS,
    FREQUENCIES,
    details_values,
    read_details,
    read_due,
    read_schedule,
    schedule_values,
)

__all__ = [
    "library",
    "tailor",
    "assigned",
    "pathway",
    "edit",
    "cancel",
    "pause",
    "resume",
    "skip",
    "preview",
    "preview_frame",
]

_FIELD_LABELS = {
    "start": "First due date",
    "until": "Last day",
    "count": "Number of times",
    "days": "Days",
    "interval": "Interval",
    "time": "Time",
    "instructions": "Instructions",
    "confidence": "Confidence",
    "frequency": "How often",
    "due_date": "Due date",
    "channel": "Reminders",
    "wording": "Wording",
    "second_schedule": "Already assigned",
}


def _local_today(zone: str) -> date:
    return now().astimezone(ZoneInfo(zone)).date()


def _horizon() -> int:
    return int(getattr(settings(), "materialize_horizon_days", 14) or 14)


def _active_questionnaire(qid: str) -> dict[str, Any]:
    questionnaire = store().read("Questionnaire", qid).resource
    if questionnaire.get("status") != "active":
        raise BusinessRuleError(
            f"“{questionnaire.get('title') or qid}” is {questionnaire.get('status')} "
            "and cannot be assigned. Publish it first, or choose another activity."
        )
    return dict(questionnaire)


def _owned(resource: dict[str, Any], pid: str) -> dict[str, Any]:
    subject = (resource.get("for") or resource.get("subject") or {}).get("reference")
    if subject != f"Patient/{pid}":
        raise NotFound(f"This {resource.get('resourceType')} is not this patient's homework.")
    return resource


def _read(kind: str, rid: str, pid: str) -> dict[str, Any]:
    if kind not in ("Task", "CarePlan"):
        raise NotFound("There is no such assignment.")
    return _owned(store().read(kind, rid).resource, pid)


def _channels() -> tuple[tuple[str, str], ...]:
    return CHANNELS


def _channel_errors(patient: dict[str, Any], channel: str | None) -> FieldErrors:
    """Refuse a reminder channel that is not installed or cannot reach the patient."""
    svc = services()
    installed = channels(svc.plugins, svc.settings, services=svc)
    problem = channel_problem(patient, channel, installed)
    return {"channel": [problem]} if problem else {}


#: Activities offered one click away (catalog url, label).
QUICK_PICKS = (
    (f"{catalog.CANONICAL_BASE}/Questionnaire/phq-9", "PHQ-9 every 2 weeks"),
    (f"{catalog.CANONICAL_BASE}/Questionnaire/gad-7", "GAD-7 every 2 weeks"),
    (f"{catalog.CANONICAL_BASE}/Questionnaire/mood-log", "Daily mood log"),
    (f"{catalog.CANONICAL_BASE}/Questionnaire/thought-record", "Thought record"),
)


def quick_picks() -> list[tuple[str, str]]:
    """Return (Questionnaire id, label) of the common activities that are stored and active."""
    out = []
    for url, label in QUICK_PICKS:
        try:
            out.append((resolve_questionnaire(store(), url)["id"], label))
        except (NotFound, InvalidInput):
            continue
    return out


# -- browse ---------------------------------------------------------------------------------


@bp.get("/patients/<pid>/assign")
def library(pid: str) -> Any:
    """Browse and search the library by problem area, modality, media type and name."""
    patient = patient_or_404(pid)
    who = clinician()
    filters = {
        name: request.args.get(name, "").strip()[:100]
        for name in ("q", "problem", "modality", "media", "kind")
    }
    entries = review.library_entries(
        iter_all(store(), "Questionnaire", [("status", "active")]),
        own_prefix=clinician_system(who.practitioner) + "/",
    )
    shown = review.filter_library(
        entries,
        text=filters["q"],
        problem_area=filters["problem"],
        modality=filters["modality"],
        media=filters["media"],
        kind=filters["kind"],
    )
    return page(
        "clinician/library.html",
        patient=patient,
        nav_active="assign",
        entries=shown,
        total=len(entries),
        filters=filters,
        pathways=catalog.load_pathways(),
        quick=quick_picks(),
        problem_areas=catalog.PROBLEM_AREAS,
        modalities=catalog.MODALITIES,
        media_types=catalog.MEDIA_TYPES,
        kinds=catalog.ACTIVITY_KINDS,
    )


# -- preview --------------------------------------------------------------------------------


@bp.get("/library/<qid>/preview")
def preview(qid: str) -> Any:
    """Show an activity as the patient will see it (in a phone-sized frame)."""
    questionnaire = store().read("Questionnaire", qid).resource
    pid = request.args.get("patient") or None
    patient = patient_or_404(pid) if pid else None
    language = patient_language(patient) if patient else None
    return page(
        "clinician/preview.html",
        patient=patient,
        language=language_name(language, "en") if language else None,
        translation=(
            translation_status(questionnaire, language)
            if language and language != original_language(questionnaire)
            else None
        ),
        nav_active="assign",
        questionnaire=questionnaire,
        rows=review.preview_rows(questionnaire),
        tags=review.library_entries([questionnaire])[0],
    )


@bp.get("/library/<qid>/preview/frame")
def preview_frame(qid: str) -> Any:
    """Return the patient's view of an activity (inputs disabled), for the preview frame."""
    questionnaire = store().read("Questionnaire", qid).resource
    details = None
    ref = request.args.get("ref", "")
    pid = request.args.get("patient", "")
    shown = localize(questionnaire, None)
    if pid:
        # the patient's view is in the patient's language, with their crisis resources
        patient = patient_or_404(pid)
        language = patient_language(patient)
        use_language(language)
        shown = localize(questionnaire, language)
        with_crisis_notes(shown.questionnaire,
                          crisis_resources(settings(), language=language, patient=patient))
    if ref and pid:
        kind, _, rid = ref.partition("/")
        resource = _read(kind, rid, pid)
        details = (
            HomeworkDetails.from_task(resource)
            if kind == "Task"
            else HomeworkDetails.from_detail(
                (resource.get("activity") or [{}])[0].get("detail") or {}
            )
        )
    else:
        defaults = review.assign_defaults(questionnaire, timezone_name="UTC", now=now())
        details = HomeworkDetails(instructions=defaults.instructions, rationale=defaults.rationale)
    return render_template(
        "clinician/preview_frame.html",
        form=render.build_form(shown.questionnaire, language=shown.language),
        details=details,
        questionnaire=questionnaire,
        localized=shown,
    )


# -- tailor and assign ----------------------------------------------------------------------


def _tailor_page(
    patient: dict[str, Any],
    questionnaire: dict[str, Any],
    values: dict[str, Any],
    errors: FieldErrors,
    status: int = 200,
) -> Any:
    return page(
        "clinician/assign.html",
        status,
        patient=patient,
        nav_active="assign",
        questionnaire=questionnaire,
        existing=review.already_assigned(store(), patient["id"], questionnaire, now=now()),
        values=values,
        errors=errors,
        frequencies=FREQUENCIES,
        channels=_channels(),
        labels=_FIELD_LABELS,
        days=catalog_days(),
    )


def catalog_days() -> tuple[tuple[str, str], ...]:
    """Return the weekday codes with their names."""
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    return tuple(zip(DAYS_OF_WEEK, names, strict=True))


@bp.route("/patients/<pid>/assign/<qid>", methods=["GET", "POST"])
def tailor(pid: str, qid: str) -> Any:
    """Tailor an activity (defaults filled in) and assign it."""
    patient = patient_or_404(pid)
    questionnaire = _active_questionnaire(qid)
    zone = review.patient_zone(patient)
    if request.method == "GET":
        defaults = tailored_defaults(
            review.assign_defaults(questionnaire, timezone_name=zone, now=now()), questionnaire
        )
        values = {
            **schedule_values(defaults.schedule()),
            **details_values(
                HomeworkDetails(
                    instructions=defaults.instructions,
                    rationale=defaults.rationale,
                    example=defaults.example,
                    wording=defaults.wording,
                    reminder_channel=defaults.reminder_channel,
                )
            ),
            # sent back with the form: a second POST of the same form is the same assignment
            "submission": secrets.token_urlsafe(16),
        }
        return _tailor_page(patient, questionnaire, values, {})
    values = {**request.form.to_dict(), "days": request.form.getlist("days")}
    schedule_form = read_schedule(request.form, timezone=zone, today=_local_today(zone))
    details_form = read_details(request.form)
    errors = {**schedule_form.errors, **details_form.errors}
    if errors or schedule_form.schedule is None or details_form.details is None:
        return _tailor_page(patient, questionnaire, values, errors, 400)
    details = details_form.details
    channel_errors = _channel_errors(patient, details.reminder_channel)
    if channel_errors:
        return _tailor_page(patient, questionnaire, values, channel_errors, 422)
    try:
        result = assign(
            store(),
            Assignment(
                patient=f"Patient/{pid}",
                practitioner=clinician().practitioner,
                activity=catalog.canonical(questionnaire),
                schedule=schedule_form.schedule,
                instructions=details.instructions,
                rationale=details.rationale,
                example=details.example,
                wording=details.wording,
                confidence=details.confidence,
                reminder_channel=details.reminder_channel,
                encounter=clinician().launch.context.encounter_reference(fhir_base()),
                idempotency_key=request.form.get("submission") or None,
            ),
            events=events(),
            now=now(),
            horizon_days=_horizon(),
            refuse_duplicate=request.form.get("second_schedule") != "yes",
        )
    except AlreadyAssigned as exc:
        message = f"{exc.message}. Tick “Assign a second schedule anyway” if that is what you want."
        return _tailor_page(
            patient, questionnaire, values, {"second_schedule": [message]}, exc.status
        )
    except (BusinessRuleError, InvalidInput) as exc:
        default = "start" if "due time" in exc.message else "_form"
        return _tailor_page(patient, questionnaire, values, field_errors(exc, default=default), 422)
    if result.plan is not None:
        return go("clinician.assigned", pid=pid, kind="CarePlan", rid=result.plan["id"])
    assert result.task is not None
    return go("clinician.assigned", pid=pid, kind="Task", rid=result.task["id"])


@bp.get("/patients/<pid>/assigned/<kind>/<rid>")
def assigned(pid: str, kind: str, rid: str) -> Any:
    """Confirm an assignment: exactly what the patient will receive, and when."""
    patient = patient_or_404(pid)
    resource = _read(kind, rid, pid)
    moment = now()
    steps = []
    if kind == "Task":
        canonical = task_canonical(resource) or ""
        details = HomeworkDetails.from_task(resource)
        due = task_due(resource)
        dues = [due] if due else []
        schedule_text = "Once"
        steps.append(_step(canonical, details, schedule_text, dues, "scheduled"))
    else:
        for activity in resource.get("activity") or []:
            detail = activity.get("detail") or {}
            canonical = (detail.get("instantiatesCanonical") or [""])[0]
            step_details = HomeworkDetails.from_detail(detail)
            try:
                schedule = activity_schedule(activity)
            except HwFhirError:
                schedule = None
            status = str(detail.get("status") or "")
            dues = (
                []
                if schedule is None or status == "not-started"
                else [o.due for o in islice(schedule.iter_occurrences(moment), 6)]
            )
            steps.append(
                _step(
                    canonical,
                    step_details,
                    schedule.describe() if schedule else "",
                    dues,
                    status,
                    last=schedule.last_date if schedule else None,
                )
            )
    first_task = resource if kind == "Task" else _first_open_task(rid, moment)
    return page(
        "clinician/assigned.html",
        patient=patient,
        nav_active="assign",
        resource=resource,
        kind=kind,
        steps=steps,
        reminders=_reminder_plan(first_task, patient, moment),
        warnings=[w for s in steps for w in s["details"].warnings],
        demo_link=_demo_link(first_task, pid),
    )


def _demo_link(task: dict[str, Any] | None, pid: str) -> str | None:
    """In the demo (sandbox on, base URL set): the secure link of the Task, to click through."""
    if task is None or not settings().sandbox or not settings().base_url:
        return None
    return patient_links(services()).link_for(task["id"], pid).url


def _first_open_task(plan_id: str, moment: datetime) -> dict[str, Any] | None:
    upcoming = [
        t for t in plan_tasks(store(), plan_id, OPEN_STATUSES) if (task_due(t) or moment) > moment
    ]
    return min(upcoming, key=lambda t: task_due(t) or moment, default=None)


_PURPOSES = {
    "assigned": "When it is assigned",
    "before-due": "Before it is due",
    "overdue": "If it is not done yet",
}


def _reminder_plan(
    task: dict[str, Any] | None, patient: dict[str, Any], moment: datetime
) -> list[dict[str, Any]]:
    """Return the planned reminders of a Task with the exact message the patient will get."""
    if task is None or HomeworkDetails.from_task(task).reminder_channel in (None, "none"):
        return []
    policy = reminders.ReminderPolicy.from_settings(settings())
    channel = HomeworkDetails.from_task(task).reminder_channel or "email"
    out = []
    for purpose, when, _ in reminders.reminder_times(
        task, reminders.preferences(patient, policy), policy, now=moment
    ):
        message = reminders.default_message(
            kind="reminder",
            purpose=purpose,
            channel=channel,
            to=None,
            recipient=f"Patient/{patient['id']}",
            practice=getattr(settings(), "practice_name", "your care team"),
            link="(a secure link)",
            idempotency_key="preview",
            language=patient_language(patient),
        )
        out.append(
            {
                "label": _PURPOSES.get(purpose, purpose),
                "when": when,
                "subject": message.subject,
                "text": message.text,
                "channel": channel,
                "lang": patient_language(patient),
                "language": language_name(patient_language(patient), "en"),
            }
        )
    return out


def _step(
    canonical: str,
    details: HomeworkDetails,
    schedule: str,
    dues: list[datetime],
    status: str,
    last: date | None = None,
) -> dict[str, Any]:
    try:
        questionnaire = resolve_questionnaire(store(), canonical)
    except (NotFound, InvalidInput):
        questionnaire = {"title": canonical}
    return {
        "questionnaire": questionnaire,
        "details": details,
        "schedule": schedule,
        "dues": dues,
        "status": status,
        "last": last,
    }


# -- pathways -------------------------------------------------------------------------------


@bp.route("/patients/<pid>/pathways/<pathway_id>", methods=["GET", "POST"])
def pathway(pid: str, pathway_id: str) -> Any:
    """Assign a pathway (an ordered plan of activities) from a start date."""
    patient = patient_or_404(pid)
    template = catalog.get_pathway(pathway_id)
    zone = review.patient_zone(patient)
    today = _local_today(zone)
    values: dict[str, Any] = {
        "start": (today + timedelta(days=1)).isoformat(),
        "time": "19:00",
        "wording": "homework",
        "channel": "email",
    }
    errors: FieldErrors = {}
    status = 200
    if request.method == "POST":
        values = request.form.to_dict()
        start = _parse_date(values.get("start", ""), errors, "start")
        at = _parse_time(values.get("time", "") or "19:00", errors)
        if start is not None and start < today:
            errors.setdefault("start", []).append("The pathway cannot start in the past.")
        errors.update(_channel_errors(patient, values.get("channel") or None))
        if not errors and start is not None:
            try:
                result = plans.assign_pathway(
                    store(),
                    pathway_id,
                    patient=f"Patient/{pid}",
                    practitioner=clinician().practitioner,
                    start=start,
                    timezone=zone,
                    time_of_day=at,
                    wording=values.get("wording", "").strip() or "homework",
                    reminder_channel=values.get("channel") or None,
                    encounter=clinician().launch.context.encounter_reference(fhir_base()),
                    events=events(),
                    now=now(),
                    horizon_days=_horizon(),
                )
            except (BusinessRuleError, InvalidInput, NotFound) as exc:
                errors = field_errors(exc)
            else:
                assert result.plan is not None
                return go("clinician.assigned", pid=pid, kind="CarePlan", rid=result.plan["id"])
        status = 400 if errors else 200
    titles = {}
    for step in template["steps"]:
        try:
            titles[step["activity"]] = resolve_questionnaire(store(), step["activity"]).get("title")
        except (NotFound, InvalidInput):
            titles[step["activity"]] = step["activity"]
    return page(
        "clinician/pathway.html",
        status,
        patient=patient,
        nav_active="assign",
        pw=template,
        titles=titles,
        values=values,
        errors=errors,
        channels=_channels(),
        labels=_FIELD_LABELS,
    )


def _parse_date(raw: str, errors: FieldErrors, name: str) -> date | None:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        errors.setdefault(name, []).append("Give a date such as 2026-03-08.")
        return None


def _parse_time(raw: str, errors: FieldErrors) -> Any:
    try:
        return time.fromisoformat(raw.strip())
    except ValueError:
        errors.setdefault("time", []).append("Give a time of day such as 19:00.")
        return None


# -- change, pause, stop --------------------------------------------------------------------


def _edit_page(
    patient: dict[str, Any],
    kind: str,
    resource: dict[str, Any],
    values: dict[str, Any],
    errors: FieldErrors,
    status: int = 200,
) -> Any:
    activity = resource.get("activity") or [{}]
    live = (
        [
            n
            for n, a in enumerate(activity)
            if (a.get("detail") or {}).get("status") in LIVE_ACTIVITY_STATUSES
        ]
        if kind == "CarePlan"
        else []
    )
    steps = []
    if kind == "CarePlan":
        for n, a in enumerate(activity):
            detail = a.get("detail") or {}
            canonical = (detail.get("instantiatesCanonical") or [""])[0]
            try:
                title = resolve_questionnaire(store(), canonical).get("title")
            except (NotFound, InvalidInput):
                title = canonical
            steps.append({"index": n, "title": title, "status": detail.get("status")})
    return page(
        "clinician/edit_assignment.html",
        status,
        patient=patient,
        nav_active="dashboard",
        kind=kind,
        resource=resource,
        values=values,
        errors=errors,
        frequencies=FREQUENCIES,
        channels=_channels(),
        labels=_FIELD_LABELS,
        days=catalog_days(),
        steps=steps,
        live_index=live[0] if live else 0,
        pathway=bool(resource.get("instantiatesUri")),
    )


def _current_values(kind: str, resource: dict[str, Any], index: int) -> dict[str, Any]:
    if kind == "Task":
        return details_values(HomeworkDetails.from_task(resource))
    activity = (resource.get("activity") or [{}])[index]
    values = details_values(HomeworkDetails.from_detail(activity.get("detail") or {}))
    try:
        values.update(schedule_values(activity_schedule(activity)))
    except HwFhirError:
        pass
    return values


@bp.route(
    "/patients/<pid>/assignments/<kind>/<rid>", methods=["GET", "POST"], endpoint="edit_assignment"
)
def edit(pid: str, kind: str, rid: str) -> Any:
    """Change an assignment's instructions, reminders, due time or schedule."""
    patient = patient_or_404(pid)
    resource = _read(kind, rid, pid)
    zone = review.patient_zone(patient)
    index = _live_index(resource) if kind == "CarePlan" else 0
    if request.method == "GET":
        return _edit_page(patient, kind, resource, _current_values(kind, resource, index), {})
    values = {**request.form.to_dict(), "days": request.form.getlist("days")}
    details_form = read_details(request.form)
    errors = dict(details_form.errors)
    due = schedule = None
    if kind == "Task":
        due, due_errors = read_due(request.form, timezone=zone, now=now())
        errors.update(due_errors)
    elif request.form.get("change_schedule") and not resource.get("instantiatesUri"):
        schedule_form = read_schedule(request.form, timezone=zone, today=_local_today(zone))
        errors.update(schedule_form.errors)
        schedule = schedule_form.schedule
    if errors or details_form.details is None:
        return _edit_page(patient, kind, resource, values, errors, 400)
    d = details_form.details
    current = _current_values(kind, resource, index).get("channel") or "none"
    if (d.reminder_channel or "none") != current:
        channel_errors = _channel_errors(patient, d.reminder_channel)
        if channel_errors:
            return _edit_page(patient, kind, resource, values, channel_errors, 422)
    change = AssignmentEdit(
        instructions=d.instructions,
        rationale=d.rationale,
        example=d.example,
        wording=d.wording,
        confidence=d.confidence,
        reminder_channel=d.reminder_channel or "",
        due=due,
        schedule=schedule,
    )
    try:
        edit_assignment(
            store(),
            f"{kind}/{rid}",
            change,
            activity_index=index,
            events=events(),
            now=now(),
            horizon_days=_horizon(),
        )
    except (BusinessRuleError, InvalidInput) as exc:
        return _edit_page(patient, kind, resource, values, field_errors(exc), 422)
    return go("clinician.dashboard", pid=pid, notice="edited")


def _live_index(plan: dict[str, Any]) -> int:
    for n, activity in enumerate(plan.get("activity") or []):
        if (activity.get("detail") or {}).get("status") in ("scheduled", "in-progress", "on-hold"):
            return n
    for n, activity in enumerate(plan.get("activity") or []):
        if (activity.get("detail") or {}).get("status") == "not-started":
            return n
    return 0


@bp.post("/patients/<pid>/assignments/<kind>/<rid>/cancel")
def cancel(pid: str, kind: str, rid: str) -> Any:
    """Cancel a one-off assignment, or stop a plan or pathway (work done is kept)."""
    patient_or_404(pid)
    _read(kind, rid, pid)
    reason = (request.form.get("reason") or "").strip()[:500] or (
        "Stopped by the clinician" if kind == "CarePlan" else "Cancelled by the clinician"
    )
    if kind == "CarePlan":
        plans.cancel_plan(store(), rid, reason=reason, now=now(), events=events())
        return go("clinician.dashboard", pid=pid, notice="stopped")
    cancel_assignment(store(), f"Task/{rid}", reason=reason, events=events(), now=now())
    return go("clinician.dashboard", pid=pid, notice="cancelled")


@bp.post("/patients/<pid>/assignments/CarePlan/<rid>/pause")
def pause(pid: str, rid: str) -> Any:
    """Pause a plan: no new homework and no reminders until it is resumed."""
    patient_or_404(pid)
    _read("CarePlan", rid, pid)
    plans.pause_plan(store(), rid, now=now(), events=events())
    return go("clinician.dashboard", pid=pid, notice="paused")


@bp.post("/patients/<pid>/assignments/CarePlan/<rid>/resume")
def resume(pid: str, rid: str) -> Any:
    """Resume a paused plan."""
    patient_or_404(pid)
    _read("CarePlan", rid, pid)
    plans.resume_plan(store(), rid, now=now(), horizon_days=_horizon(), events=events())
    return go("clinician.dashboard", pid=pid, notice="resumed")


@bp.post("/patients/<pid>/assignments/CarePlan/<rid>/skip/<int:index>")
def skip(pid: str, rid: str, index: int) -> Any:
    """Skip one step of a pathway."""
    patient_or_404(pid)
    _read("CarePlan", rid, pid)
    plans.skip_step(store(), rid, index, now=now(), horizon_days=_horizon(), events=events())
    return go("clinician.dashboard", pid=pid, notice="skipped")
