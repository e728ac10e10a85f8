"""The practice-level safety contact: the last recipient of every risk alert.

Configured in the ``[safety]`` table of the config file (or ``HW_FHIR_SAFETY_*``)::

    [safety]
    name = "Duty clinician, Riverside Practice"
    channel = "email"                 # a reminder channel: email, sms, a plugin's
    address = "duty@riverside.example"
    escalate_after_minutes = 15       # undelivered alerts move on after this long

Every risk alert has an escalation path (:mod:`hw_fhir.outcomes.escalation`) that ends
here. The contact is stored as a Practitioner (id :data:`SAFETY_CONTACT_ID`) so that
alerts name it like any other recipient and every channel can address it.
:func:`config_problems` says what is wrong with the settings (``hw-fhir check`` and the
start-up checks print it; in production a missing contact is an error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .errors import NotFound

__all__ = [
    "SAFETY_CONTACT_ID",
    "SAFETY_CONTACT_REF",
    "SafetyContact",
    "safety_contact",
    "config_problems",
    "contact_practitioner",
    "store_contact",
]

#: Id of the Practitioner standing for the configured safety contact.
SAFETY_CONTACT_ID = "hw-fhir-safety-contact"
SAFETY_CONTACT_REF = f"Practitioner/{SAFETY_CONTACT_ID}"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()-]{2,30}$")
#: The telecom system each built-in channel addresses.
_TELECOM = {"email": "email", "sms": "sms"}


@dataclass(frozen=True)
class SafetyContact:
    """Who is told when no one else can be reached: a name, a channel, an address."""

    name: str
    channel: str
    address: str


def safety_contact(settings: Settings) -> SafetyContact | None:
    """Return the configured safety contact, or None when it is not (completely) configured."""
    if not (settings.safety_name and settings.safety_channel and settings.safety_address):
        return None
    return SafetyContact(settings.safety_name.strip(), settings.safety_channel.strip(),
                         settings.safety_address.strip())


def config_problems(settings: Settings, channels: list[str] | None = None) -> list[str]:
    """Return what is wrong with the ``[safety]`` settings (empty when all is well).

    ``channels`` are the names of the loaded reminder channels (when known, the
    contact's channel must be one of them). Without a contact, development gets a
    problem too: the caller decides whether it is fatal (production) or a warning.
    """
    problems: list[str] = []
    given = {"name": settings.safety_name, "channel": settings.safety_channel,
             "address": settings.safety_address}
    missing = [k for k, v in given.items() if not str(v).strip()]
    if missing:
        why = ("it is required in production" if settings.production
               else "risk alerts that reach no one else have nowhere to go")
        problems.append(f"[safety] {', '.join(missing)} not set for the practice safety contact: "
                        f"{why}")
    channel = settings.safety_channel.strip()
    address = settings.safety_address.strip()
    if channel == "email" and address and not _EMAIL.match(address):
        problems.append(f"[safety] address {address!r} is not an email address")
    if channel == "sms" and address and not _PHONE.match(address):
        problems.append(f"[safety] address {address!r} is not a phone number")
    if channel and channels is not None and channel not in channels:
        problems.append(f"[safety] channel {channel!r} is not a loaded channel "
                        f"({', '.join(sorted(channels)) or 'none'})")
    if settings.safety_escalate_after_seconds <= 0:
        problems.append("[safety] escalate_after_minutes must be more than 0")
    return problems


def contact_practitioner(contact: SafetyContact) -> dict[str, Any]:
    """Return the Practitioner standing for the safety contact."""
    system = _TELECOM.get(contact.channel, "other")
    return {
        "resourceType": "Practitioner",
        "id": SAFETY_CONTACT_ID,
        "identifier": [{"system": "http://hw-fhir.org/fhir/sid/safety-contact", "value": "practice"}],
        "active": True,
        "name": [{"text": contact.name}],
        "telecom": [{"system": system, "value": contact.address, "use": "work"}],
    }


def store_contact(store: Any, settings: Settings) -> str | None:
    """Store (or refresh) the safety contact's Practitioner; return its reference, or None."""
    contact = safety_contact(settings)
    if contact is None:
        return None
    wanted = contact_practitioner(contact)
    try:
        current = store.read("Practitioner", SAFETY_CONTACT_ID).resource
        same = {k: v for k, v in current.items() if k != "meta"} == wanted
    except NotFound:
        same = False
    if not same:
        store.update(wanted)
    return SAFETY_CONTACT_REF
