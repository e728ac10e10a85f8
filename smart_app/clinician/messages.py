"""Secure messages on the clinician side: the thread partial, replying, turning messaging off.

Thin views over :mod:`hw_fhir.messages`. A clinician reads and writes a patient's thread
only in that patient's launch context (the launch's patient), never from the panel for
another patient. The dashboard and session prep include ``clinician/_messages.html``,
which asks :func:`message_thread` for its view model; for another patient it says instead
that the messages are there when the clinician opens that patient's chart in the EHR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import request

from hw_fhir import messages
from hw_fhir.errors import Forbidden, HwFhirError, NotFound, VersionConflict

from ..launch import human_name
from ..state import services
from .base import bp, clinician, go, page, patient_or_404, store

__all__ = ["MessageThread", "message_thread", "send", "messaging"]

log = logging.getLogger("hw_fhir.clinician")


@dataclass(frozen=True)
class MessageThread:
    """What the thread partial shows: the messages, who wrote them, whether it is on."""

    patient_id: str
    messages: tuple[messages.ThreadMessage, ...]
    names: dict[str, str]
    enabled: bool
    patient_name: str
    titles: dict[str, str]


def _in_context(pid: str) -> dict[str, Any]:
    """Return the Patient when it is the launch's patient; Forbidden otherwise."""
    patient = patient_or_404(pid)
    if clinician().patient_id != pid:
        raise Forbidden("Messages are only available for the patient of this launch. Open this "
                        "patient's chart in your EHR.")
    return patient


@bp.app_template_global("clinician_message_thread")
def message_thread(pid: str) -> MessageThread | None:
    """Return the thread of the launch's patient, or None for any other patient."""
    who = clinician()
    if who.patient_id != pid:
        return None
    patient = patient_or_404(pid)
    thread = tuple(messages.thread(store(), f"Patient/{pid}"))
    names = {f"Patient/{pid}": human_name(patient) or "Patient"}
    for ref in {m.sender_ref for m in thread}:
        if ref.startswith("Practitioner/") and ref not in names:
            try:
                names[ref] = human_name(store().read("Practitioner", ref.split("/", 1)[1]).resource)
            except NotFound:
                names[ref] = "Care team"
    names[who.practitioner] = "You"
    return MessageThread(pid, thread, names, messages.messaging_enabled(patient),
                         human_name(patient) or "the patient", messages.task_titles(store(), thread))


@bp.post("/patients/<pid>/messages")
def send(pid: str) -> Any:
    """Send the patient a message (a reply to their latest one when there is one)."""
    _in_context(pid)
    who = clinician()
    text = request.form.get("text", "")
    try:
        sent = messages.send_message(
            store(), patient=f"Patient/{pid}", sender=who.practitioner,
            recipient=f"Patient/{pid}", text=text,
            task_id=request.form.get("task") or None,
            in_response_to=request.form.get("reply_to") or None)
    except HwFhirError as exc:
        return page("clinician/error.html", exc.status, title="The message was not sent",
                    message=exc.message)
    try:
        messages.notify(current_services(), sent)
    except Exception:  # noqa: BLE001 - the message is stored; a notification problem is logged
        log.exception("Could not notify a patient of a new message")
    return go("clinician.dashboard", pid=pid, notice="message-sent")


@bp.post("/patients/<pid>/messaging")
def messaging(pid: str) -> Any:
    """Turn secure messaging on or off for the patient."""
    _in_context(pid)
    choice = request.form.get("messaging")
    if choice not in ("on", "off"):
        return page("clinician/error.html", 400, title="Nothing was changed",
                    message="Choose whether the patient can send messages.")
    try:
        messages.set_messaging(store(), pid, choice == "on")
    except VersionConflict:
        return page("clinician/error.html", 409, title="Nothing was changed",
                    message="The patient's record changed meanwhile. Open the dashboard again "
                    "and make your choice there.")
    return go("clinician.dashboard", pid=pid,
              notice="messaging-on" if choice == "on" else "messaging-off")


def current_services() -> Any:
    """Return the app's Services."""
    return services()
