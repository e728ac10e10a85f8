"""Secure-message notifications through the reminder queue: queued, retried, shown when stuck.

A new secure message (:mod:`hw_fhir.messages`) queues one ``reminder_job`` of ``kind``
``message`` (id ``message/<Communication id>``, ``request_id`` the message, ``patient_id``
its thread's patient); the page that stored the message tries it at once
(:func:`~hw_fhir.reminders.run.send_job_now`), and a worker sends it when that failed.
The notification says only that there is a new message (and, for a patient, where to
read it): no text, no names (:data:`~hw_fhir.reminders.texts.PATIENT_MESSAGE_NOTICE`).

Like a reminder: the recipient's preferences are read at send time (a patient who chose
no reminders gets none; quiet hours put it off until they end); a channel that is down
retries with backoff up to ``max_tries``; no channel that can reach the recipient, or
``HW_FHIR_BASE_URL`` unset for a patient's link, holds it until fixed
(:class:`~hw_fhir.errors.HeldDeliveryError`). Undelivered ones are listed with the
reminders' (:func:`~hw_fhir.reminders.retry.reminder_problems`: the clinician dashboard,
``hw-fhir reminders status``) and queued again by ``hw-fhir reminders retry``. Each
attempt is recorded as a ``Communication`` (``partOf`` the message) like a reminder's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import HeldDeliveryError, PermanentDeliveryError
from ..i18n import patient_language
from .batch import BatchContext, read_resource, record_later
from .clock import now_text
from .delivery import available_channels, deliver, fail_attempt
from .preferences import preferences
from .queue import attempt_key
from .records import COMMUNICATION_CATEGORY_SYSTEM
from .texts import MESSAGES_PATH, default_message

__all__ = ["send_message_notice", "NOTICE_CATEGORY"]

#: ``category`` of the attempts to notify someone of a new message.
NOTICE_CATEGORY = {"coding": [{"system": COMMUNICATION_CATEGORY_SYSTEM, "code": "message-notice",
                               "display": "New message notification"}]}


def _about(message: Mapping[str, Any]) -> dict[str, Any]:
    """What the attempt's Communication is part of: the message (no content of it)."""
    return {"resourceType": "Communication", "id": message["id"], "subject": message.get("subject"),
            "recipient": message.get("recipient"), "category": [NOTICE_CATEGORY],
            "priority": "routine"}


def send_message_notice(ctx: BatchContext, job: Any) -> str:
    """Tell a message's recipient there is a new message; return the job's outcome."""
    message = read_resource(ctx, "Communication", job.request_id)
    if message is None:
        record_later(ctx, job, status="cancelled", last_error="message deleted")
        return "cancelled"
    about = _about(message)
    recipient_ref = str(((message.get("recipient") or [{}])[0]).get("reference") or "")
    kind, _, rid = recipient_ref.partition("/")
    if kind not in ("Patient", "Practitioner"):
        record_later(ctx, job, status="skipped", last_error="the recipient is not a person")
        return "skipped"
    recipient = read_resource(ctx, kind, rid)
    if recipient is None:
        return fail_attempt(ctx, job, about, None, None, PermanentDeliveryError(
            f"{recipient_ref} is not there any more"), None)
    prefs = preferences(recipient, ctx.policy) if kind == "Patient" else None
    if prefs is not None and prefs.channel == "none":
        record_later(ctx, job, status="skipped", last_error="the patient chose no reminders")
        return "skipped"
    if prefs is not None and prefs.in_quiet_hours(ctx.now):
        record_later(ctx, job, status="pending", due_at=now_text(prefs.next_allowed(ctx.now)),
                     last_error="quiet hours")
        return "deferred"
    available = available_channels(ctx, recipient, prefs, job)
    if not available:
        if prefs is not None and prefs.opt_out:  # the patient's own choice: final
            return fail_attempt(ctx, job, about, None, recipient,
                                PermanentDeliveryError("opted out of every channel"), None)
        return fail_attempt(ctx, job, about, None, recipient, HeldDeliveryError(
            f"no channel can reach {'this patient' if kind == 'Patient' else recipient_ref}: add "
            "an email address or mobile number, or install the channel chosen"), None)
    settings = ctx.services.settings
    name = ctx.pm.hook.channel_for(recipient=recipient, task=None, request=None,
                                   communication_request=None, channels=available,
                                   preferences=prefs, settings=settings, services=ctx.services)
    channel = available.get(name or "") or next(iter(available.values()))
    link = None
    if kind == "Patient":
        if not settings.base_url:
            return fail_attempt(ctx, job, about, None, recipient, HeldDeliveryError(
                "HW_FHIR_BASE_URL is not set: the notification's link needs the app's public "
                "address"), channel)
        link = f"{settings.base_url.rstrip('/')}{MESSAGES_PATH}"
    note = default_message(
        kind="reminder", purpose="new-message" if kind == "Patient" else "new-message-clinician",
        channel=channel.name, to=channel.address(recipient), recipient=recipient_ref,
        practice=settings.practice_name, link=link, idempotency_key=attempt_key(job),
        about=(f"Communication/{message['id']}",),
        language=patient_language(recipient) if kind == "Patient" else None)
    return deliver(ctx, job, channel, note, about, None, recipient)
