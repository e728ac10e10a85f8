"""The reminder channel contract: a :class:`Channel` sends one :class:`Message`.

A channel is any object with a ``name``, a ``medium`` (a FHIR CodeableConcept for
``Communication.medium``), a ``guarantee`` (one sentence: what the channel does when
the same idempotency key is sent twice), ``address(recipient)`` (the address it would
use for a Patient or Practitioner, or None when it has none) and ``send(message)``.

``send`` returns a :class:`Delivery` (``completed``: handed over for good;
``in-progress``: accepted, a delivery callback will say more) or raises
:class:`~hw_fhir.errors.TransientDeliveryError` (try again later; ``maybe_sent`` when
the message may have left, so the retry reuses the same idempotency key) or
:class:`~hw_fhir.errors.PermanentDeliveryError` (the recipient's address is refused
for good), or :class:`~hw_fhir.errors.HeldDeliveryError` (a problem on our side, such as
a missing setting: retried once fixed, never final).

Optionally a channel has ``check()``, returning None or one line saying why it cannot
be used now; ``hw-fhir check`` and the start-up of ``serve``/``worker`` report it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "PARTICIPATION_MODE",
    "Message",
    "Delivery",
    "Channel",
    "medium",
    "telecom",
]

#: Code system of ``Communication.medium``.
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"


def medium(code: str, display: str) -> dict[str, Any]:
    """Return a ``medium`` CodeableConcept of the v3 ParticipationMode system."""
    return {"coding": [{"system": PARTICIPATION_MODE, "code": code, "display": display}]}


def telecom(resource: Mapping[str, Any] | None, system: str) -> str | None:
    """Return a Patient's or Practitioner's best contact point of one system (email, phone...).

    Active points only (no ``period.end``); ``mobile`` before ``home`` before the rest,
    then by ``rank``.
    """
    if not resource:
        return None
    order = {"mobile": 0, "home": 1, "work": 2}
    points = [
        p for p in resource.get("telecom") or []
        if p.get("system") == system and p.get("value") and not (p.get("period") or {}).get("end")
    ]
    points.sort(key=lambda p: (order.get(p.get("use", ""), 3), p.get("rank", 1 << 30)))
    return str(points[0]["value"]) if points else None


@dataclass
class Message:
    """One message about to be sent; ``prepare_message`` hooks may change it in place.

    ``text`` is the plain-text body (no clinical content: the practice, that there is
    an activity, the secure link); ``subject`` the email subject line; ``link`` the
    secure link alone; ``idempotency_key`` is unique per attempt and stays the same
    when an interrupted attempt is retried.
    """

    kind: str  # "reminder" | "alert"
    purpose: str  # "assigned" | "before-due" | "overdue" | "risk-alert" ...
    channel: str
    to: str | None
    recipient: str  # "Patient/<id>" or "Practitioner/<id>"
    subject: str
    text: str
    idempotency_key: str
    link: str | None = None
    html: str | None = None
    priority: str = "routine"
    about: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """What a channel did with a message: ``completed`` or ``in-progress`` (awaiting a callback).

    ``vendor_id`` is the channel's own id for it (Message-ID, SMS sid...), recorded as a
    second ``Communication.identifier`` under ``vendor_system`` so a callback finds it.
    """

    status: str = "completed"
    vendor_id: str | None = None
    vendor_system: str | None = None
    detail: str | None = None


@runtime_checkable
class Channel(Protocol):
    """A way to reach a patient or a clinician (email, SMS, EHR inbox, webhook...)."""

    name: str
    medium: dict[str, Any]
    guarantee: str

    def address(self, recipient: Mapping[str, Any]) -> str | None:
        """Return where this channel would reach a Patient/Practitioner, or None."""

    def send(self, message: Message) -> Delivery:
        """Send a message; raise TransientDeliveryError or PermanentDeliveryError on failure."""
