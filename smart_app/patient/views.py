"""Patient pages: entry by secure link or portal launch, to-do list, homework forms, progress.

Thin views: the to-do list comes from :mod:`.todo`, forms from :mod:`hw_fhir.render`,
saving and submitting from :mod:`hw_fhir.completion`, progress from
:mod:`hw_fhir.adherence` and :mod:`hw_fhir.outcomes`, preferences from
:mod:`.preferences`. Every page works without JavaScript; ``patient/form.js`` adds
live enableWhen, "add another" without a round trip, sliders and autosave.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from werkzeug.exceptions import HTTPException, default_exceptions

from hw_fhir import i18n, render
from hw_fhir.adherence import patient_adherence, task_facts
from hw_fhir.assignment import OPEN_STATUSES, HomeworkDetails, instant, parse_instant
from hw_fhir.channel_in_use import channel_in_use
from hw_fhir.completion import (
    response_for_task,
    save_draft,
    submit_response,
    task_questionnaire,
)
from hw_fhir.errors import (
    BirthDateRequired,
    Conflict,
    HwFhirError,
    InvalidInput,
    InvalidResponse,
    LinkError,
    LinkRevoked,
    LinkTampered,
    LinkWrongPatient,
    VersionConflict,
)
from hw_fhir.links import LINK_PATH
from hw_fhir.outcomes import flags_for_response, measure_history, with_crisis_notes
from hw_fhir.review import SHARE_SCORES_EXTENSION, scores_shared
from hw_fhir.scoring import score_response
from hw_fhir.store.base import every_match, iter_all
from hw_fhir.translation import localize
from hw_fhir.urls import local_path

from ..launch import current_launch, human_name
from . import access
from .crisis_line import patient_crisis
from .error_words import (
    ERROR_TITLES,
    LINK_TITLES,
    NOTE_TOO_LONG,
    TOO_MANY_TEXT,
    error_text,
    error_words,
)
from .language import current_language, use_language
from .preferences import (
    CHANNELS,
    COMMON_ZONES,
    OPT_OUTS,
    likely_zone,
    parse_preferences,
    read_preferences,
    time_zones,
    with_preferences,
)
from .todo import patient_tasks, patient_zone, titled, todo_list

__all__ = ["bp", "SHARE_SCORES_EXTENSION", "SESSION_NOTE_SYSTEM", "LINK_DONE_STATUSES"]

bp = Blueprint("patient", __name__)
log = logging.getLogger("hw_fhir.patient")

#: On a Patient (valueBoolean): the clinician lets the patient see their own measure trend.
#: Identifier system of the patient's note for the next session (a Communication).
SESSION_NOTE_SYSTEM = "http://hw-fhir.org/fhir/sid/session-note"
_MEASURES = (
    ("phq-9", _l("PHQ-9 (mood)"), 27),
    ("gad-7", _l("GAD-7 (anxiety)"), 21),
    ("pcl-5", _l("PCL-5"), 80),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _store() -> Any:
    return access.services().store


def _events() -> Any:
    """The completion path's dispatcher (scoring listens there), else the plugins' one."""
    return access.services().events


def _client() -> str:
    return request.remote_addr or "unknown"


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, **context), status


def _message(status: int, title: str, text: str, **context: Any) -> tuple[str, int]:
    return _page("patient/message.html", status, title=title, text=text, **context)


def _patient_resource(patient_ref: str) -> dict[str, Any]:
    patient: dict[str, Any] = _store().read("Patient", patient_ref.split("/", 1)[1]).resource
    return patient


def _require_patient() -> str | None:
    return access.current_patient()


def _signed_out() -> tuple[str, int]:
    return _message(
        401,
        _("Please open your link again"),
        _(
            "For your privacy, this page needs the secure link from your latest reminder, "
            "or sign in through your patient portal."
        ),
    )


def _error_answer(status: int, message: str | None, headers: Any = None) -> Any:
    title, text = error_words(status, message)
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"ok": False, "message": text}), status, headers or {}
    page, _status = _message(status, title, text)
    return page, status, headers or {}


@bp.errorhandler(HwFhirError)
def _error_page(exc: HwFhirError) -> Any:
    return _error_answer(exc.status, exc.message, getattr(exc, "headers", None))


def _http_error_page(exc: HTTPException) -> Any:
    """The framework's refusals (a body too large, a form that cannot be read...) in the
    patient's words; never the framework's English description. Server errors keep the
    app's own page (:mod:`smart_app.errors`), which needs no database."""
    headers = {k: v for k, v in exc.get_response().headers.items() if k in ("Allow", "Retry-After")}
    return _error_answer(exc.code or 400, None, headers)


for _code in default_exceptions:
    if 400 <= _code < 500:
        bp.register_error_handler(_code, _http_error_page)


# -- entry ----------------------------------------------------------------------------------------


def _link_failed(exc: LinkError) -> tuple[str, int]:
    return _message(
        exc.status,
        _(LINK_TITLES.get(exc.reason, LINK_TITLES["tampered"])),
        error_text(exc.status, exc.message),
        link_problem=exc.reason,
    )


def _too_many() -> tuple[str, int]:
    return _message(429, _(ERROR_TITLES[429]), _(TOO_MANY_TEXT))


#: Task statuses after which a link opens only a thank-you page (no list, no progress).
LINK_DONE_STATUSES = ("completed", "cancelled", "failed", "entered-in-error")


def _opened(target: Any) -> Any:
    if target.task.get("status") in LINK_DONE_STATUSES:
        return _page("patient/link_done.html", 200, nav=False)
    signed_in = access.current_patient()
    if signed_in is not None and signed_in != target.patient_reference:
        return _page("patient/switch.html", 409, token=(request.view_args or {}).get("token"))
    access.sign_in(target.patient_id, via="link", link=target.link_id)
    access.limiter().clear(access.LINK_GUESSES, _client())
    return redirect(url_for("patient.task", task_id=target.task_id))


@bp.get("/p/<token>")
def link(token: str) -> Any:
    """Open a secure link: ask for the date of birth when the link wants it, then the homework."""
    limiter = access.limiter()
    if limiter.blocked(access.LINK_GUESSES, _client()):
        return _too_many()
    try:
        target = access.links().open_link(token, patient=None)
    except BirthDateRequired:
        return _page("patient/birth_date.html", 200, token=token, error=None, values={})
    except LinkTampered as exc:
        limiter.fail(access.LINK_GUESSES, _client())
        return _link_failed(exc)
    except LinkError as exc:
        return _link_failed(exc)
    return _opened(target)


def _birth_date(form: Any) -> tuple[str | None, str | None]:
    day, month, year = (form.get(k, "").strip() for k in ("dob_day", "dob_month", "dob_year"))
    if not (day.isdigit() and month.isdigit() and year.isdigit() and len(year) == 4):
        return None, _("Enter your date of birth as numbers, for example 27 3 1985.")
    try:
        return datetime(int(year), int(month), int(day)).date().isoformat(), None
    except ValueError:
        return None, _("That is not a real date. Check the day and month.")


@bp.post("/p/<token>")
def link_birth_date(token: str) -> Any:
    """Check the date of birth a link asks for (rate limited per client and per link)."""
    limiter = access.limiter()
    client = _client()
    if limiter.blocked(access.LINK_GUESSES, client) or limiter.blocked(
        access.BIRTH_DATE_GUESSES, client
    ):
        return _too_many()
    values = {k: request.form.get(k, "") for k in ("dob_day", "dob_month", "dob_year")}
    dob, problem = _birth_date(request.form)
    if dob is None:
        return _page("patient/birth_date.html", 400, token=token, error=problem, values=values)
    try:
        target = access.links().open_link(token, dob=dob)
    except LinkWrongPatient as exc:
        limiter.fail(access.BIRTH_DATE_GUESSES, client)
        if limiter.blocked(access.BIRTH_DATE_GUESSES, client):
            return _too_many()
        return _page(
            "patient/birth_date.html", 401, token=token, error=error_text(exc.status, exc.message),
            values=values
        )
    except LinkRevoked as exc:
        limiter.fail(access.BIRTH_DATE_GUESSES, client)
        return _link_failed(exc)
    except LinkTampered as exc:
        limiter.fail(access.LINK_GUESSES, client)
        return _link_failed(exc)
    except LinkError as exc:
        return _link_failed(exc)
    return _opened(target)


@bp.get("/my/launch")
def from_launch() -> Any:
    """Sign in the patient of a SMART standalone (portal) launch of this browser session."""
    active = current_launch()
    if active is None or active.context.user_type != "Patient" or not active.context.local_patient:
        return _message(
            401,
            _("Please sign in through your patient portal"),
            _("This page opens from your patient portal. Start from the portal again."),
        )
    signed_in = access.current_patient()
    if signed_in is not None and signed_in != f"Patient/{active.context.local_patient}":
        access.sign_out()
    access.sign_in(active.context.local_patient, via="smart", launch=active.id)
    return redirect(url_for("patient.home"))


@bp.post("/my/signout")
def signout() -> Any:
    """Forget the patient in this browser."""
    access.sign_out()
    after = local_path(request.form.get("next", ""))
    if after is not None and after.startswith(LINK_PATH):
        return redirect(after)
    return _message(
        200,
        _("You are signed out"),
        _(
            "Nothing of yours is shown in this browser any more. Open the link in your next "
            "reminder to carry on."
        ),
        signed_out=True,
    )


# -- to-do list -----------------------------------------------------------------------------------


@bp.get("/my/")
def home() -> Any:
    """Show what is due today and this week, what is overdue, and what was done lately."""
    if request.args.get("launch"):
        return from_launch()
    patient_ref = _require_patient()
    if patient_ref is None:
        return _signed_out()
    patient = _patient_resource(patient_ref)
    now, zone = _now(), patient_zone(patient)
    todo = todo_list(
        _store(), patient_tasks(_store(), patient_ref, now=now), now=now, zone=zone,
        language=current_language(),
    )
    return render_template("patient/todo.html", patient=patient, todo=todo, now=now)


# -- the homework form ----------------------------------------------------------------------------


def _build_form(
    questionnaire: dict[str, Any], response: dict[str, Any] | None = None, **kwargs: Any
) -> render.FormView:
    """Build the form in the patient's language (codes and answers stay as stored)."""
    shown = localize(questionnaire, current_language())
    with_crisis_notes(shown.questionnaire, patient_crisis())
    g.hw_localized = shown
    return render.build_form(
        shown.questionnaire, shown.shown_response(response), language=shown.language, **kwargs
    )


def _form_page(
    task: dict[str, Any],
    questionnaire: dict[str, Any],
    view: render.FormView,
    *,
    status: int = 200,
    saved: bool = False,
    notice: str | None = None,
    version: str | None = None,
    conflict: bool = False,
) -> tuple[str, int]:
    return _page(
        "patient/task.html",
        status,
        task=task,
        questionnaire=questionnaire,
        form=view,
        details=HomeworkDetails.from_task(task),
        saved=saved,
        notice=notice,
        localized=g.get("hw_localized"),
        language_name=i18n.language_name(current_language(), current_language()),
        version=request.form.get("_version") if version is None else version,
        conflict=conflict,
    )


def _closed(task: dict[str, Any]) -> tuple[str, int] | None:
    status = task.get("status")
    if status in OPEN_STATUSES and status != "on-hold":
        return None
    texts = {
        "cancelled": _("Your care team has taken this off your list. There is nothing to do."),
        "failed": _(
            "The time for this one has passed. That is all right: you can talk about it at "
            "your next session."
        ),
        "on-hold": _("Your care team has paused this for now."),
    }
    return _message(
        410 if status in ("cancelled", "failed") else 409,
        _("Nothing to do here"),
        texts.get(str(status), _("This homework is closed.")),
        show_home=True,
    )


@bp.get("/my/tasks/<task_id>")
def task(task_id: str) -> Any:
    """Show a homework form, filled with the saved draft (from any device)."""
    patient_ref = _require_patient()
    if patient_ref is None:
        return _signed_out()
    task = access.own_task(task_id, patient_ref)
    if task.get("status") == "completed":
        return redirect(url_for("patient.done", task_id=task_id))
    closed = _closed(task)
    if closed is not None:
        return closed
    questionnaire = task_questionnaire(_store(), task)
    draft = response_for_task(_store(), task_id)
    zone = patient_zone(_patient_resource(patient_ref))
    view = _build_form(questionnaire, draft, zone=zone)
    return _form_page(task, questionnaire, view, saved=request.args.get("saved") == "1",
                      version=_version_of(draft))


def _version_of(response: dict[str, Any] | None) -> str:
    return str(((response or {}).get("meta") or {}).get("versionId") or "")


def _if_match() -> str | None:
    """The response version the page was opened at (form ``_version`` or If-Match), or None."""
    return request.form.get("_version", request.headers.get("If-Match"))


def _action() -> tuple[str, str]:
    action = request.form.get("_action", "save")
    kind, _, arg = action.partition(":")
    return kind, arg


@bp.post("/my/tasks/<task_id>")
def task_post(task_id: str) -> Any:
    """Save a draft, submit, or add/remove a repeated entry (without JavaScript)."""
    patient_ref = _require_patient()
    if patient_ref is None:
        return _signed_out()
    task = access.own_task(task_id, patient_ref)
    closed = (
        _closed(task)
        if task.get("status") != "completed"
        else _message(
            409, _("Already done"), _("You have already sent this one. Thank you!"),
            show_home=True,
        )
    )
    if closed is not None:
        return closed
    questionnaire = task_questionnaire(_store(), task)
    zone = patient_zone(_patient_resource(patient_ref))
    kind, arg = _action()
    parsed = render.parse_form(
        questionnaire, request.form, zone=zone, remove=[arg] if kind == "remove" else []
    )
    if kind in ("add", "remove"):
        view = _build_form(
            questionnaire,
            parsed.response(questionnaire),
            raw=parsed.raw,
            add=[arg] if kind == "add" else [],
            zone=zone,
        )
        return _form_page(task, questionnaire, view)
    if parsed.issues:
        view = _build_form(
            questionnaire,
            parsed.response(questionnaire),
            issues=parsed.issues,
            raw=parsed.raw,
            zone=zone,
        )
        return _form_page(task, questionnaire, view, status=422)
    response = render.prune_disabled(questionnaire, parsed.response(questionnaire))
    final = kind == "submit"
    try:
        (submit_response if final else save_draft)(
            _store(), task_id, response, patient=patient_ref, events=_events(), if_match=_if_match()
        )
    except VersionConflict:  # another device saved since this page opened: show theirs, keep both
        current = response_for_task(_store(), task_id)
        view = _build_form(questionnaire, current, zone=zone)
        return _form_page(task, questionnaire, view, status=409, version=_version_of(current),
                          conflict=True, notice=(
                              "These answers were changed on another device. This is what is saved "
                              "now; the answers from this device were not sent."))
    except InvalidResponse as exc:
        view = _build_form(
            questionnaire,
            parsed.response(questionnaire),
            issues=exc.issues,
            raw=parsed.raw,
            zone=zone,
        )
        return _form_page(task, questionnaire, view, status=422)
    except Conflict:
        view = _build_form(
            questionnaire, parsed.response(questionnaire), raw=parsed.raw, zone=zone
        )
        return _form_page(
            task,
            questionnaire,
            view,
            status=409,
            notice=_(
                "These answers were changed on another device at the same time. Check them and "
                "save again."
            ),
        )
    if not final:
        return redirect(url_for("patient.task", task_id=task_id, saved=1))
    return redirect(url_for("patient.done", task_id=task_id))


@bp.post("/my/tasks/<task_id>/draft")
def autosave(task_id: str) -> Any:
    """Save the answers so far (the browser's autosave); answer JSON."""
    patient_ref = _require_patient()
    if patient_ref is None:
        return jsonify({"ok": False, "message": _("Open your link again to keep saving.")}), 401
    task = access.own_task(task_id, patient_ref)
    if task.get("status") not in OPEN_STATUSES or task.get("status") == "on-hold":
        return jsonify({"ok": False, "message": _("This homework is closed.")}), 409
    questionnaire = task_questionnaire(_store(), task)
    zone = patient_zone(_patient_resource(patient_ref))
    parsed = render.parse_form(questionnaire, request.form, zone=zone)
    if parsed.issues:
        return jsonify(
            {
                "ok": False,
                "message": _("Some answers need a look before they can be saved."),
                "problems": len(parsed.issues),
            }
        ), 200
    response = render.prune_disabled(questionnaire, parsed.response(questionnaire))
    try:
        result = save_draft(_store(), task_id, response, patient=patient_ref, events=_events(),
                            if_match=_if_match())
    except InvalidResponse as exc:
        return jsonify(
            {
                "ok": False,
                "message": _("Some answers need a look before they can be saved."),
                "problems": len(exc.issues),
            }
        ), 200
    except Conflict:
        return jsonify(
            {"ok": False, "message": _("Changed on another device; reload to see it.")}
        ), 409
    return jsonify({"ok": True, "savedAt": instant(_now()),
                    "version": _version_of(result.response)})


@bp.get("/my/tasks/<task_id>/done")
def done(task_id: str) -> Any:
    """Confirm a submission and what comes next; crisis resources at once when a risk was raised."""
    patient_ref = _require_patient()
    if patient_ref is None:
        return _signed_out()
    task = access.own_task(task_id, patient_ref)
    if task.get("status") != "completed":
        return redirect(url_for("patient.task", task_id=task_id))
    response = response_for_task(_store(), task_id)
    patient = _patient_resource(patient_ref)
    crisis = patient_crisis() if response and _risk_raised(task, response) else None
    now, zone = _now(), patient_zone(patient)
    todo = todo_list(
        _store(), patient_tasks(_store(), patient_ref, now=now), now=now, zone=zone,
        language=current_language(),
    )
    clinician = _clinician_name(task)
    title, title_lang = titled(_store(), task, {}, current_language())
    return render_template(
        "patient/done.html",
        task=task,
        crisis=crisis,
        todo=todo,
        title=Markup('<span lang="{}">{}</span>').format(title_lang, title) if title_lang else title,
        title_text=title,
        clinician=clinician,
        late=task.get("businessStatus", {}).get("coding", [{}])[0].get("code") == "late",
        already=request.args.get("already") == "1",
    )


def _risk_raised(task: dict[str, Any], response: dict[str, Any]) -> bool:
    """Whether the response raised a risk: a Flag for it, or (scoring not wired yet) its score."""
    if flags_for_response(_store(), response):
        return True
    try:
        return bool(score_response(task_questionnaire(_store(), task), response).risks)
    except Exception:  # noqa: BLE001 - a scoring failure must not hide the confirmation
        log.exception(
            "scoring QuestionnaireResponse/%s for the confirmation failed", response.get("id")
        )
        return False


def _clinician_name(task: dict[str, Any]) -> str:
    ref = (task.get("requester") or {}).get("reference") or ""
    if ref.startswith("Practitioner/"):
        try:
            return human_name(_store().read("Practitioner", ref.split("/", 1)[1]).resource)
        except HwFhirError:
            return _("your care team")
    return _("your care team")


# -- progress -------------------------------------------------------------------------------------


def _note(patient_ref: str) -> dict[str, Any] | None:
    found = _store().search(
        "Communication", [("identifier", f"{SESSION_NOTE_SYSTEM}|{patient_ref}")]
    )
    return found.matches[0].resource if found.matches else None


def _completed(patient_ref: str, zone: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The latest ``limit`` Tasks completed in 90 days: ordered by their (kept) facts, and
    only those shown are parsed."""
    since = instant(_now() - timedelta(days=90))
    found = every_match(
        _store(),
        "Task",
        [("patient", patient_ref), ("status", "completed"), ("_lastUpdated", f"ge{since}")],
    )
    dated = []
    for facts, stored in task_facts(_store(), found):
        end = facts.finished or facts.modified
        dated.append((parse_instant(end) if end else None, stored))
    dated.sort(key=lambda pair: pair[0] or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
    titles: dict[str, Any] = {}
    rows = []
    for end, stored in dated[:limit]:
        title, title_lang = titled(_store(), stored.resource, titles, current_language())
        rows.append(
            {"title": title, "lang": title_lang, "end": end.astimezone(zone) if end else None}
        )
    return rows


@bp.get("/my/progress")
def progress() -> Any:
    """Show streaks, completed activities, the measure trend (when shared) and the session note."""
    patient_ref = _require_patient()
    if patient_ref is None:
        return _signed_out()
    patient = _patient_resource(patient_ref)
    zone = patient_zone(patient)
    adherence = patient_adherence(_store(), patient_ref, now=_now())
    trends = []
    if scores_shared(patient):
        for key, label, top in _MEASURES:
            history = measure_history(_store(), patient_ref, key)
            if history:
                trends.append({"key": key, "label": label, "top": top, "points": history})
    note = _note(patient_ref)
    note_text = ((note or {}).get("payload") or [{}])[0].get("contentString", "")
    return render_template(
        "patient/progress.html",
        patient=patient,
        adherence=adherence,
        completed=_completed(patient_ref, zone),
        trends=trends,
        note=note_text,
        saved=request.args.get("saved") == "1",
        zone=zone,
    )


@bp.post("/my/progress/note")
def save_note() -> Any:
    """Keep a note to bring to the next session (one Communication per patient, updated)."""
    patient_ref = _require_patient()
    if patient_ref is None:
        return _signed_out()
    text = request.form.get("note", "").replace("\r\n", "\n").strip()
    if len(text) > 4000:
        raise InvalidInput(NOTE_TOO_LONG)
    patient = _patient_resource(patient_ref)
    current = _note(patient_ref)
    note: dict[str, Any] = {
        "resourceType": "Communication",
        "id": current["id"] if current else str(uuid.uuid4()),
        "identifier": [{"system": SESSION_NOTE_SYSTEM, "value": patient_ref}],
        "status": "in-progress",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hw-fhir.org/fhir/CodeSystem/communication-category",
                        "code": "session-note",
                        "display": "Note for the next session",
                    }
                ]
            }
        ],
        "subject": {"reference": patient_ref},
        "sender": {"reference": patient_ref},
        "recipient": [dict(r) for r in patient.get("generalPractitioner") or []] or None,
        "sent": instant(_now()),
        "payload": [{"contentString": text or " "}],
    }
    note = {k: v for k, v in note.items() if v is not None}
    if current:
        note["meta"] = {"versionId": current["meta"]["versionId"]}
        _store().update(note, if_match=current["meta"]["versionId"])
    else:
        _store().update(note)
    return redirect(url_for("patient.progress", saved=1) + "#note")


# -- preferences ----------------------------------------------------------------------------------


@bp.route("/my/preferences", methods=["GET", "POST"])
def preferences() -> Any:
    """Show and change reminder channel, time of day, quiet hours, time zone and opt-outs."""
    patient_ref = _require_patient()
    if patient_ref is None:
        return _signed_out()
    patient = _patient_resource(patient_ref)
    current = read_preferences(patient)
    errors: dict[str, str] = {}
    status = 200
    saved = request.args.get("saved") == "1"
    in_use = channel_in_use(access.services(), patient)
    shown = replace(current, channel=current.channel or (in_use if in_use in CHANNELS else None))
    language = i18n.patient_language(patient)
    if request.method == "POST":
        chosen_language = request.form.get("language") or language
        try:
            chosen = parse_preferences(request.form, current)
        except InvalidInput as exc:
            errors = {i.expression or "": _(i.message) for i in exc.issues}
        if chosen_language not in i18n.LANGUAGES:
            errors["language"] = _("Choose a language from the list")
        if errors:
            status = 422
        else:
            updated = with_preferences(patient, chosen)
            if chosen_language != language:
                updated = i18n.with_language(updated, chosen_language)
            _store().update(updated, if_match=patient["meta"]["versionId"])
            use_language(chosen_language)
            return redirect(url_for("patient.preferences", saved=1))
    channels = {code: _(label) for code, label in CHANNELS.items()}
    if shown.channel and shown.channel not in channels:
        channels[shown.channel] = shown.channel
    return render_template(
        "patient/preferences.html",
        prefs=shown,
        channels=channels,
        opt_outs={code: _(label) for code, label in OPT_OUTS.items()},
        language=language,
        languages=i18n.LANGUAGES,
        zones=time_zones(),
        common_zones=COMMON_ZONES,
        likely=likely_zone(current, access.services().settings.practice_timezone),
        in_use=in_use,
        errors=errors,
        saved=saved,
        form=request.form if request.method == "POST" else None,
    ), status
