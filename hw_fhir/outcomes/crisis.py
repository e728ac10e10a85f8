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
from dataclasses import dataclass, replace
from typing import Any

from ..config import Settings
from ..errors import ConfigurationError
from ..i18n import N_, translator

__all__ = ["CrisisContact", "CrisisInfo", "DEFAULT_CONTACTS", "crisis_resources"]

_SCHEMES = {"call": "tel", "text": "sms"}
_LABELS = {"call": N_("Call %(number)s"), "text": N_("Text %(number)s")}
#: The default ``Settings.crisis_text``, translated when the settings keep it.
DEFAULT_TEXT = N_("If you are in crisis or thinking about harming yourself, call or text 988 "
                  "(Suicide & Crisis Lifeline, US) or call 911. If you are outside the US, call "
                  "your local emergency number.")
_NUMBER = re.compile(r"^\+?[0-9][0-9 ()-]{1,30}$")


@dataclass(frozen=True)
class CrisisContact:
    """One place to get help: a name, a number, and how to reach it (call and/or text)."""

    name: str
    number: str
    actions: tuple[str, ...] = ("call",)
    description: str = ""
    language: str | None = None

    @property
    def links(self) -> tuple[tuple[str, str], ...]:
        """Return ``(label, href)`` pairs such as ``("Call 988", "tel:988")``."""
        digits = re.sub(r"[^0-9+]", "", self.number)
        _ = translator(self.language)
        return tuple((_(_LABELS[a]) % {"number": self.number}, f"{_SCHEMES[a]}:{digits}")
                     for a in self.actions)


@dataclass(frozen=True)
class CrisisInfo:
    """What the patient sees: a short text and the contacts to call or text."""

    text: str
    contacts: tuple[CrisisContact, ...]


DEFAULT_CONTACTS: tuple[CrisisContact, ...] = (
    CrisisContact(N_("988 Suicide & Crisis Lifeline"), "988", ("call", "text"),
                  N_("Free and confidential, 24 hours a day, 7 days a week (US).")),
    CrisisContact(N_("Emergency services"), "911", ("call",),
                  N_("If you or someone else is in immediate danger.")),
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


def _translated(contact: CrisisContact, language: str | None) -> CrisisContact:
    """Return a default contact in ``language`` (configured contacts are shown as written)."""
    _ = translator(language)
    return replace(contact, name=_(contact.name),
                   description=_(contact.description) if contact.description else "",
                   language=language)


def crisis_resources(settings: Settings | None = None, language: str | None = None) -> CrisisInfo:
    """Return the crisis text and contacts of ``settings`` (US 988 and 911 by default).

    ``language`` (the patient's) translates the default text and contacts and the call/text
    labels; a practice's own ``crisis_text`` and ``crisis_contacts`` are shown as configured.
    """
    settings = settings or Settings()
    raw = settings.extra.get("crisis_contacts")
    text = settings.crisis_text
    if text == DEFAULT_TEXT:
        text = translator(language)(DEFAULT_TEXT)
    if raw is None:
        return CrisisInfo(text, tuple(_translated(c, language) for c in DEFAULT_CONTACTS))
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ConfigurationError("crisis_contacts must be a non-empty list of contacts")
    return CrisisInfo(text, tuple(replace(_contact(n, c), language=language)
                                  for n, c in enumerate(raw)))
