"""One send attempt: the channels that can reach a recipient, sending, recording the attempt.

Every send attempt is one ``Communication`` (:mod:`hw_fhir.reminders.records`):
``basedOn`` and ``partOf`` → the CommunicationRequest, ``status`` (``completed``;
``in-progress`` while a channel waits for its delivery callback; ``not-done`` with
``statusReason`` when it failed), ``category``, ``medium``, ``subject``, ``recipient``,
``about``, ``sent`` and ``payload`` (the text sent). Transient failures retry with
exponential backoff (``Retry-After`` honoured) and a new key, up to ``max_tries``; a
permanent failure tries the recipient's other channels, then is recorded. A
:class:`~hw_fhir.errors.HeldDeliveryError` is never final.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ..channels.base import Delivery, Message
from ..errors import DeliveryError, TransientDeliveryError
from ..plugins import call_each
from .alerts import alert_recipient, complete_alert, escalate_undelivered
from .batch import BatchContext, record_later
from .clock import fhir_instant, now_text
from .policy import HELD_RETRY_SECONDS, ReminderPolicy
from .preferences import ReminderPreferences, opt_out, preferences
from .queue import HELD_PREFIX, attempt_key
from .records import ATTEMPT_SYSTEM, REMINDER_CATEGORY
from .texts import default_message

__all__ = ["available_channels", "deliver", "fail_attempt"]

log = logging.getLogger("hw_fhir.reminders")


def available_channels(ctx: BatchContext, recipient: Mapping[str, Any] | None,
                       prefs: ReminderPreferences | None, job: Any) -> dict[str, Any]:
    if recipient is None:
        return {}
    failed = set((job.failed_channels or "").split(",")) - {""}
    out = {}
    for name, channel in ctx.channels.items():
        if name in failed or (prefs is not None and name in prefs.opt_out):
            continue
        try:
            if channel.address(recipient):
                out[name] = channel
        except Exception:  # noqa: BLE001 - a broken plugin channel must not stop reminders
            log.exception("Channel %s failed to find an address", name)
    return out


def _communication(job: Any, message: Message, request: Mapping[str, Any], channel: Any,
                   status: str, now: datetime, *, delivery: Delivery | None = None,
                   reason: str | None = None) -> dict[str, Any]:
    identifiers = [{"system": ATTEMPT_SYSTEM, "value": message.idempotency_key}]
    if delivery is not None and delivery.vendor_id and delivery.vendor_system:
        identifiers.append({"system": delivery.vendor_system, "value": delivery.vendor_id})
    # a reminder or alert carries out its CommunicationRequest; a message notice is part
    # of the message (a Communication) it announces
    source = f"{request.get('resourceType') or 'CommunicationRequest'}/{request['id']}"
    comm: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": identifiers,
        "basedOn": [{"reference": source}] if source.startswith("CommunicationRequest/") else None,
        "partOf": [{"reference": source}],
        "status": status,
        "category": request.get("category") or [REMINDER_CATEGORY],
        "priority": request.get("priority", "routine"),
        "subject": request.get("subject"),
        "about": [{"reference": ref} for ref in message.about],
        "recipient": [{"reference": message.recipient}] if message.recipient else None,
        "payload": [{"contentString": message.text}],
    }
    if channel is not None:
        comm["medium"] = [channel.medium]
    if status != "not-done":
        comm["sent"] = fhir_instant(now)
    if reason:
        comm["statusReason"] = {"text": reason[:500]}
    return {k: v for k, v in comm.items() if v not in (None, [], {})}


def deliver(ctx: BatchContext, job: Any, channel: Any, message: Message, request: dict[str, Any],
            task: dict[str, Any] | None, recipient: dict[str, Any] | None) -> str:
    """Send one message; queue its Communication and the job's new state for the batch's commit."""
    try:
        delivery = channel.send(message)
    except DeliveryError as exc:
        return fail_attempt(ctx, job, request, task, recipient, exc, channel, message)
    except Exception as exc:  # noqa: BLE001 - a plugin channel's bug is a transient failure
        log.exception("Channel %s raised", channel.name)
        return fail_attempt(ctx, job, request, task, recipient,
                            TransientDeliveryError(f"{type(exc).__name__}: {exc}", maybe_sent=True),
                            channel, message)
    status = delivery.status if delivery.status in ("completed", "in-progress") else "completed"
    comm = _communication(job, message, request, channel, status, ctx.now, delivery=delivery)
    after: list[Callable[[dict[str, Any] | None], None]] = []
    if job.kind == "alert":
        after.append(lambda _stored: complete_alert(ctx.store, request))
    after.append(lambda stored: _notify(ctx, "reminder_sent", store=ctx.store, communication=stored,
                                        request=request, task=task, message=message))
    record_later(ctx, job, communication=comm, after=after, status="sent", channel=channel.name,
                 last_error=None)
    return "sent"


def fail_attempt(ctx: BatchContext, job: Any, request: dict[str, Any], task: dict[str, Any] | None,
                 recipient: dict[str, Any] | None, error: DeliveryError, channel: Any,
                 message: Message | None = None) -> str:
    """Record a failed attempt; retry with backoff, another channel, or give up."""
    alert = job.kind == "alert"
    # a message notice to a clinician is not the patient's: their preferences do not apply
    to_patient = not alert and (job.kind != "message" or
                                str((recipient or {}).get("resourceType")) == "Patient")
    if getattr(error, "opt_out", False) and channel is not None and job.patient_id and to_patient:
        opt_out(ctx.services, job.patient_id, channel.name)  # e.g. the number replied STOP
        ctx.resources.pop(("Patient", job.patient_id), None)
        ctx.opted_out.add(job.patient_id)
    failed = [c for c in (job.failed_channels or "").split(",") if c]
    if error.permanent and channel is not None:
        failed.append(channel.name)
    others = bool(error.permanent and channel is not None and recipient is not None and
                  set(available_channels(ctx, recipient,
                                         preferences(recipient, ctx.policy) if to_patient
                                         else None,
                                         job)) - set(failed))
    give_up = error.permanent and not others
    held = getattr(error, "held", False)  # waits for a fix: never final
    if not error.permanent and not alert and not held and job.tries + 1 >= ctx.policy.max_tries:
        give_up = True
    values: dict[str, Any] = {"last_error": (HELD_PREFIX if held else "") + error.message[:1000],
                              "tries": job.tries + 1,
                              "failed_channels": ",".join(failed) or None}
    if give_up and alert:  # an alert is never given up: the next person is told
        give_up = False
        values.update(escalate_undelivered(ctx, job, request, error))
    elif give_up:
        values["status"] = "failed"
    else:
        values.update(status="pending", due_at=now_text(ctx.now + _backoff(ctx.policy, job, error)))

    def announce(stored: dict[str, Any] | None) -> None:
        _notify(ctx, "reminder_failed", store=ctx.store, communication=stored, request=request,
                task=task, error=error, permanent=give_up)

    if error.maybe_sent and not give_up:
        record_later(ctx, job, after=[announce], **values)  # same attempt key next time
    else:
        values["attempt"] = job.attempt + 1
        msg = message or default_message(
            kind=job.kind, purpose=job.purpose, channel=channel.name if channel else "", to=None,
            recipient=(alert_recipient(ctx, request, job) or "") if alert else
            _recipient_ref(job, request), practice=ctx.services.settings.practice_name,
            link=None, idempotency_key=attempt_key(job),
            about=tuple(a.get("reference") for a in request.get("about") or []))
        comm = _communication(job, msg, request, channel, "not-done", ctx.now, reason=error.message)
        record_later(ctx, job, communication=comm, after=[announce], **values)
    if give_up:
        log.warning("%s %s failed for good: %s", job.kind, job.id, error.message)
        return "failed"
    return "retried"


def _recipient_ref(job: Any, request: Mapping[str, Any]) -> str:
    for recipient in request.get("recipient") or []:
        if recipient.get("reference"):
            return str(recipient["reference"])
    return f"Patient/{job.patient_id}"


def _backoff(policy: ReminderPolicy, job: Any, error: DeliveryError) -> timedelta:
    cap = policy.alert_retry_cap_seconds if job.kind == "alert" else policy.retry_cap_seconds
    if error.permanent:  # an alert trying its next channel: at once
        return timedelta(seconds=0)
    if getattr(error, "held", False):  # again in a while; at once when a worker starts
        return timedelta(seconds=min(cap, HELD_RETRY_SECONDS))
    delay = min(cap, policy.retry_base_seconds * (2 ** job.tries)) * random.uniform(0.8, 1.2)
    return timedelta(seconds=max(delay, error.retry_after or 0))


def _notify(ctx: BatchContext, hook: str, **kwargs: Any) -> None:
    if (kwargs.get("request") or {}).get("resourceType", "CommunicationRequest") \
            != "CommunicationRequest":
        return  # the reminder hooks are about CommunicationRequests (not message notices)
    try:
        call_each(ctx.pm, hook, communication_request=kwargs.get("request"),
                  services=ctx.services, **kwargs)
    except Exception:  # noqa: BLE001 - after a send, a listener's error must not cause a resend
        log.exception("A %s listener failed", hook)
