"""Crisis resources shown to a patient at once when a response raises a risk.

The text comes from ``Settings.crisis_text``; the numbers from the config file's
``crisis_contacts`` (in ``Settings.extra``), a list of tables such as::

    [[crisis_contacts]]
    name = "988 Suicide & Crisis Lifeline"
    number = "988"
    actions = ["call", "text"]

Without it the US defaults apply: 988 Suicide & Crisis Lifeline (call or text
988) and 911 for emergencies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..errors import ConfigurationError

__all__ = ["CrisisContact", "CrisisInfo", "DEFAULT_CONTACTS", "crisis_resources"]

_SCHEMES = {"call": "tel", "text": "sms"}
_LABELS = {"call": "Call", "text": "Text"}
_NUMBER = re.compile(r"^\+?[0-9][0-9 ()-]{1,30}$")


@dataclass(frozen=True)
class CrisisContact:
    """One place to get help: a name, a number, and how to reach it (call and/or text)."""

    name: str
    number: str
    actions: tuple[str, ...] = ("call",)
    description: str = ""

    @property
    def links(self) -> tuple[tuple[str, str], ...]:
        """Return ``(label, href)`` pairs such as ``("Call 988", "tel:988")``."""
        digits = re.sub(r"[^0-9+]", "", self.number)
        return tuple((f"{_LABELS[a]} {self.number}", f"{_SCHEMES[a]}:{digits}")
                     for a in self.actions)


@dataclass(frozen=True)
class CrisisInfo:
    """What the patient sees: a short text and the contacts to call or text."""

    text: str
    contacts: tuple[CrisisContact, ...]


DEFAULT_CONTACTS: tuple[CrisisContact, ...] = (
    CrisisContact("988 Suicide & Crisis Lifeline", "988", ("call", "text"),
                  "Free and confidential, 24 hours a day, 7 days a week (US)."),
    CrisisContact("Emergency services", "911", ("call",),
                  "If you or someone else is in immediate danger."),
)


def _contact(n: int, raw: Any) -> CrisisContact:
    where = f"crisis_contacts[{n}]"
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where} must be a table with name, number and actions")
    name, number = raw.get("name"), raw.get("number")
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"{where}.name is required")
    if not isinstance(number, str) or not _NUMBER.match(number.strip()):
        raise ConfigurationError(
            f"{where}.number must be a phone number such as \"988\", not {number!r}")
    actions = raw.get("actions", ["call"])
    if (not isinstance(actions, Sequence) or isinstance(actions, str) or not actions
            or any(a not in _SCHEMES for a in actions)):
        raise ConfigurationError(
            f"{where}.actions must list \"call\" and/or \"text\", not {actions!r}")
    description = raw.get("description", "")
    return CrisisContact(name.strip(), number.strip(), tuple(dict.fromkeys(actions)),
                         str(description))


def crisis_resources(settings: Settings | None = None) -> CrisisInfo:
    """Return the crisis text and contacts of ``settings`` (US 988 and 911 by default)."""
    settings = settings or Settings()
    raw = settings.extra.get("crisis_contacts")
    if raw is None:
        return CrisisInfo(settings.crisis_text, DEFAULT_CONTACTS)
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ConfigurationError("crisis_contacts must be a non-empty list of contacts")
    return CrisisInfo(settings.crisis_text, tuple(_contact(n, c) for n, c in enumerate(raw)))
