"""The patient's Messages page: their thread with the care team, and a box to write.

Thin views over :mod:`hw_fhir.messages`. A patient only ever sees and writes their own
thread (the signed-in patient of this browser session); a message about one homework
names its Task, which must be theirs. Crisis resources sit beside the message box, with
a line saying messages are not monitored around the clock.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _

from hw_fhir import messages
from hw_fhir.completion import task_questionnaire
from hw_fhir.errors import HwFhirError, NotFound

from ..launch import human_name
from . import access
from .crisis_line import patient_crisis
from .error_words import error_text
from .todo import patient_zone
from .views import bp

__all__ = ["messages_page", "send"]

log = logging.getLogger("hw_fhir.patient")


def _signed_out() -> tuple[str, int]:
    return render_template(
        "patient/message.html",
        title=_("Please open your link again"),
        text=_("For your privacy, this page needs the secure link from your latest reminder, "
               "or sign in through your patient portal."),
    ), 401


def _names(store: Any, thread: list[messages.ThreadMessage], patient_ref: str) -> dict[str, str]:
    names = {patient_ref: _("You")}
    for ref in {m.sender_ref for m in thread}:
        if ref.startswith("Practitioner/") and ref not in names:
            try:
                names[ref] = human_name(store.read("Practitioner", ref.split("/", 1)[1]).resource)
            except NotFound:
                names[ref] = _("Your care team")
    return names


def _task_title(store: Any, task: dict[str, Any] | None) -> str | None:
    if task is None:
        return None
    try:
        questionnaire = task_questionnaire(store, task)
    except HwFhirError:
        return "this homework"
    return str(questionnaire.get("title") or questionnaire.get("name") or "this homework")


def _refusal_words(error: HwFhirError, text: str) -> str:
    """What the page says when a message is refused, in the patient's language: the core's
    words for a text it cannot send (their numbers filled in after translating), else the
    error's own message when written for patients, else the words of its status."""
    refusal = messages.text_refusal(text)
    if refusal is not None and refusal.text == error.message:
        return _(refusal.message, **refusal.values)
    return error_text(error.status, error.message)


def _render(patient_ref: str, *, status: int = 200, error: str | None = None,
            text: str = "", task: dict[str, Any] | None = None, sent: bool = False) -> Any:
    store = access.services().store
    patient = store.read("Patient", patient_ref.split("/", 1)[1]).resource
    thread = messages.thread(store, patient_ref)
    return render_template(
        "patient/messages.html",
        patient=patient,
        thread=thread,
        names=_names(store, thread, patient_ref),
        titles=messages.task_titles(store, thread),
        zone=patient_zone(patient),
        enabled=messages.messaging_enabled(patient),
        crisis=patient_crisis(),
        error=error,
        text=text,
        task=task,
        task_title=_task_title(store, task),
        sent=sent,
        max_length=messages.MAX_LENGTH,
    ), status


@bp.get("/my/messages")
def messages_page() -> Any:
    """Show the patient's messages with their care team and the message box."""
    patient_ref = access.current_patient()
    if patient_ref is None:
        return _signed_out()
    task_id = request.args.get("task")
    task = access.own_task(task_id, patient_ref) if task_id else None
    return _render(patient_ref, task=task, sent=request.args.get("sent") == "1")


@bp.post("/my/messages")
def send() -> Any:
    """Send a message to the care team (general, or about one homework)."""
    patient_ref = access.current_patient()
    if patient_ref is None:
        return _signed_out()
    services = access.services()
    store = services.store
    task_id = request.form.get("task") or None
    task = access.own_task(task_id, patient_ref) if task_id else None
    text = request.form.get("text", "")
    patient = store.read("Patient", patient_ref.split("/", 1)[1]).resource
    recipient = messages.care_team_recipient(store, patient, task)
    if recipient is None:
        return _render(patient_ref, status=422, text=text, task=task,
                       error=_("Your care team cannot receive messages here yet. Please "
                               "contact the practice directly."))
    try:
        sent = messages.send_message(
            store, patient=patient_ref, sender=patient_ref, recipient=recipient, text=text,
            task_id=task_id, in_response_to=request.form.get("reply_to") or None)
    except HwFhirError as exc:
        return _render(patient_ref, status=exc.status, text=text, task=task,
                       error=_refusal_words(exc, text))
    try:
        messages.notify(services, sent)
    except Exception:  # noqa: BLE001 - the message is stored; a notification problem is logged
        log.exception("Could not notify the care team of a new message")
    return redirect(url_for("patient.messages_page", sent=1), code=303)
