"""Every risk alert reaches a person: its recipients, escalation, and what is still undelivered.

The escalation path of an alert about a response (:func:`alert_chain`), in order, each
Practitioner/PractitionerRole once:

1. the requester of the Task the response answers;
2. the author of the CarePlan the response (or that Task) is ``basedOn``;
3. the patient's ``generalPractitioner``;
4. the participants of the patient's active CareTeams;
5. the practice safety contact (``[safety]``, :mod:`hw_fhir.safety`).

The alert (a ``CommunicationRequest``) names everyone told so far in ``recipient``,
in chain order; the worker sends to the last of them (``level`` = its position). It
*escalates* (:func:`hw_fhir.reminders.escalation.escalate`) — adds the next recipient of the chain, notes why in
``CommunicationRequest.note``, queues its delivery — when

* no channel can reach the current recipient (at once), or
* the alert is still undelivered ``safety_escalate_after_seconds`` after the current
  recipient was chosen (:func:`hw_fhir.reminders.escalation.escalate_overdue`, run by the worker).

An alert whose chain is exhausted keeps being retried (never "failed for good") and,
like every active alert, is listed by :func:`undelivered_alerts` — shown in red on the
clinician dashboard, the panel and the sandbox EHR, with the reason, until it is
delivered or someone acknowledges its Flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..config import Settings
from ..safety import SAFETY_CONTACT_REF, safety_contact, store_contact
from ..store.base import Store, iter_all
from .safety import (COMMUNICATION_CATEGORY_SYSTEM, answered_task, clinician_reference,
                     read_or_none)

__all__ = [
    "ESCALATION_EXTENSION",
    "RISK_ALERT",
    "alert_response",
    "recipient_since",
    "recipients_told",
    "stamp",
    "UndeliveredAlert",
    "alert_chain",
    "first_recipient",
    "alert_level",
    "undelivered_alerts",
    "restrict_to_contact_channel",
]

Json = dict[str, Any]
#: On an alert: when its current recipient was chosen (``valueDateTime``).
ESCALATION_EXTENSION = "http://hw-fhir.org/fhir/StructureDefinition/alert-recipient-since"
RISK_ALERT = f"{COMMUNICATION_CATEGORY_SYSTEM}|risk-alert"


def stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def alert_chain(store: Store, response: Mapping[str, Any], *, task: Mapping[str, Any] | None = None,
                settings: Settings | None = None) -> list[str]:
    """Return the escalation path of an alert about ``response`` (see the module), in order."""
    chain: list[str] = []

    def add(ref: str | None) -> None:
        if ref and ref not in chain:
            chain.append(ref)

    if task is None and response.get("id"):
        task = answered_task(store, response)
    if task:
        add(clinician_reference(task.get("requester")))
    plans = [b.get("reference", "") for b in [*(response.get("basedOn") or []),
                                              *((task or {}).get("basedOn") or [])]]
    for plan_ref in plans:
        if plan_ref.startswith("CarePlan/"):
            add(clinician_reference((read_or_none(store, plan_ref) or {}).get("author")))
    subject = str((response.get("subject") or {}).get("reference", ""))
    if subject.startswith("Patient/"):
        for gp in (read_or_none(store, subject) or {}).get("generalPractitioner") or []:
            add(clinician_reference(gp))
        for team in iter_all(store, "CareTeam", [("subject", subject), ("status", "active")]):
            for participant in team.get("participant") or []:
                add(clinician_reference(participant.get("member")))
    if settings is not None and safety_contact(settings) is not None:
        add(SAFETY_CONTACT_REF)
    return chain


def first_recipient(store: Store, response: Mapping[str, Any], *,
                    task: Mapping[str, Any] | None = None,
                    settings: Settings | None = None) -> str | None:
    """Return the first recipient of an alert about ``response`` (storing the safety contact
    when it is the one), or None when the chain is empty."""
    chain = alert_chain(store, response, task=task, settings=settings)
    if not chain:
        return None
    if chain[0] == SAFETY_CONTACT_REF and settings is not None:
        store_contact(store, settings)
    return chain[0]


def recipients_told(alert: Mapping[str, Any]) -> list[str]:
    return [r for r in (clinician_reference(x) for x in alert.get("recipient") or []) if r]


def alert_level(alert: Mapping[str, Any]) -> int:
    """Return the position (0-based) of the alert's current recipient in its chain."""
    return max(len(recipients_told(alert)) - 1, 0)


def recipient_since(alert: Mapping[str, Any]) -> str | None:
    for ext in alert.get("extension") or []:
        if ext.get("url") == ESCALATION_EXTENSION:
            return str(ext.get("valueDateTime"))
    return alert.get("authoredOn")


def alert_response(store: Store, alert: Mapping[str, Any]) -> Json | None:
    for about in alert.get("about") or []:
        ref = str(about.get("reference", ""))
        if ref.startswith("QuestionnaireResponse/"):
            return read_or_none(store, ref)
    return None


def restrict_to_contact_channel(recipient_ref: str, available: dict[str, Any],
                                settings: Settings) -> dict[str, Any]:
    """Return the channels to reach ``recipient_ref`` by: the safety contact's own channel only."""
    contact = safety_contact(settings)
    if recipient_ref != SAFETY_CONTACT_REF or contact is None:
        return available
    return {k: v for k, v in available.items() if k == contact.channel}


@dataclass(frozen=True)
class UndeliveredAlert:
    """An active risk alert: whom it is for, since when, and why it has not been delivered."""

    id: str
    patient: str | None
    recipient: str | None
    since: str | None
    reason: str
    flag: str | None
    escalations: int
    patient_name: str | None = None
    recipient_name: str | None = None

    @property
    def since_text(self) -> str:
        """When the current recipient was chosen, as ``YYYY-MM-DD HH:MM UTC``."""
        if not self.since:
            return "unknown"
        try:
            moment = datetime.fromisoformat(self.since.replace("Z", "+00:00"))
        except ValueError:
            return self.since
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _name(resource: Mapping[str, Any] | None) -> str | None:
    for name in (resource or {}).get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("given") or []), name.get("family") or ""]
        if any(parts):
            return " ".join(p for p in parts if p)
    return None


def _last_failure(store: Store, alert_id: str) -> str | None:
    found = iter_all(store, "Communication", [("based-on", f"CommunicationRequest/{alert_id}")])
    reasons = [(c.get("meta", {}).get("lastUpdated", ""), (c.get("statusReason") or {}).get("text"))
               for c in found if c.get("status") == "not-done"]
    reasons = [r for r in reasons if r[1]]
    return max(reasons)[1] if reasons else None


def undelivered_alerts(store: Store, *, patient: str | None = None) -> list[UndeliveredAlert]:
    """Return the risk alerts not yet delivered (active), oldest first."""
    params = [("category", RISK_ALERT), ("status", "active")]
    if patient:
        params.append(("subject", patient))
    out = []
    for alert in iter_all(store, "CommunicationRequest", params):
        told = recipients_told(alert)
        flag = next((str(a["reference"]) for a in alert.get("about") or []
                     if str(a.get("reference", "")).startswith("Flag/")), None)
        reason = _last_failure(store, alert["id"])
        if not told:
            reason = reason or "no recipient is known: configure the practice safety contact"
        patient = (alert.get("subject") or {}).get("reference")
        recipient = told[-1] if told else None
        out.append(UndeliveredAlert(
            id=alert["id"], patient=patient, recipient=recipient, since=recipient_since(alert),
            reason=reason or "not delivered yet", flag=flag, escalations=max(len(told) - 1, 0),
            patient_name=_name(read_or_none(store, patient)) if patient and "/" in patient else None,
            recipient_name=_name(read_or_none(store, recipient)) if recipient else None))
    return sorted(out, key=lambda a: a.since or "")
