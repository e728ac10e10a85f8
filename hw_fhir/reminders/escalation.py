"""Escalating a risk alert: the next recipient of its chain added and its delivery queued.

The chain itself (who, in which order) and what is still undelivered live in
:mod:`hw_fhir.outcomes.escalation`; this module acts on it through the reminder queue
(:func:`~hw_fhir.reminders.queue.enqueue_alert`). :func:`escalate` runs at once when no
channel reaches the current recipient (:mod:`hw_fhir.reminders.alerts`);
:func:`escalate_overdue` is the worker's ``alert_escalation`` job.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import NotFound, VersionConflict
from ..outcomes.escalation import (ESCALATION_EXTENSION, RISK_ALERT, alert_chain, alert_level,
                                   alert_response, recipient_since, recipients_told, stamp)
from ..safety import SAFETY_CONTACT_REF, store_contact
from ..store.base import iter_all
from .queue import enqueue_alert

__all__ = ["escalate", "escalate_overdue"]

log = logging.getLogger("hw_fhir.outcomes")


def escalate(services: Any, alert_id: str, *, reason: str, now: datetime | None = None) -> str | None:
    """Add the next recipient of the chain to an active alert and queue its delivery.

    Return the new recipient, or None when the alert is no longer active or its chain
    is exhausted (it then stays active, retried and shown as undelivered).
    """
    store, settings = services.store, services.settings
    moment = now or datetime.now(timezone.utc)
    for _ in range(3):
        try:
            stored = store.read("CommunicationRequest", alert_id)
        except NotFound:
            return None
        alert = stored.resource
        if alert.get("status") != "active":
            return None
        response = alert_response(store, alert) or {"subject": alert.get("subject")}
        told = recipients_told(alert)
        chain = alert_chain(store, response, settings=settings)
        following = [r for r in chain if r not in told]
        if not following:
            return None
        new = following[0]
        if new == SAFETY_CONTACT_REF:
            store_contact(store, settings)
        note = {"time": stamp(moment),
                "text": f"Escalated to {new}: {reason}"[:1000]}
        extensions = [e for e in alert.get("extension") or [] if e.get("url") != ESCALATION_EXTENSION]
        extensions.append({"url": ESCALATION_EXTENSION, "valueDateTime": stamp(moment)})
        updated = {k: v for k, v in alert.items() if k != "meta"}
        updated.update(recipient=[{"reference": r} for r in [*told, new]],
                       note=[*(alert.get("note") or []), note], extension=extensions)
        try:
            saved = store.update(updated, if_match=stored.version_id).resource
        except VersionConflict:
            continue
        enqueue_alert(store, saved, now=moment, level=alert_level(saved))
        log.warning("Risk alert %s escalated to its recipient no. %d: %s", alert_id,
                    alert_level(saved) + 1, reason)
        return new
    return None


def escalate_overdue(services: Any, *, now: datetime | None = None) -> int:
    """Escalate every active alert undelivered for longer than the configured delay; return how many."""
    moment = now or datetime.now(timezone.utc)
    delay = timedelta(seconds=services.settings.safety_escalate_after_seconds)
    moved = 0
    for alert in iter_all(services.store, "CommunicationRequest",
                          [("category", RISK_ALERT), ("status", "active")]):
        since = recipient_since(alert)
        if not since:
            continue
        started = datetime.fromisoformat(since.replace("Z", "+00:00"))
        if started.tzinfo is None:
            started = started.replace(tzinfo=timezone.utc)
        if moment - started < delay:
            continue
        minutes = services.settings.safety_escalate_after_seconds / 60
        if escalate(services, alert["id"], now=moment,
                    reason=f"not delivered within {minutes:g} minutes"):
            moved += 1
    return moved
