"""Crisis resources shown to a patient at once when a response raises a risk — the patient's own.

The resources follow the patient's country: ``Patient.address.country`` (an ISO 3166 code,
alpha-2 or alpha-3, or the country's name in English, Spanish, German, French...; the home
address first), else the practice's country (``practice_country = "DE"`` at the top of the
config file), else the practice's own list. :func:`crisis_resources` returns, for a country:

1. the config file's ``crisis_contacts`` for that country (they replace the built-in ones);
2. else the built-in table (:data:`COUNTRY_CONTACTS`), only numbers that are well established:
   US and CA 988 (call or text) and 911; GB Samaritans 116 123 and 999; DE TelefonSeelsorge
   0800 111 0 111 / 0800 111 0 222 and 112; ES 024 and 112; FR 3114 and 112;
3. else, in the EU/EEA, 112 and "call your local emergency number"; anywhere else only "call
   your local emergency number" (never the US numbers).

The practice's own list — ``crisis_contacts`` without a ``country`` and ``Settings.crisis_text``
— is shown to patients whose country is unknown, or is the ``practice_country``. Without it,
and without a practice country, a patient whose country is unknown sees the US resources (988
and 911) with "if you are outside the US, call your local emergency number"::

    practice_country = "US"

    [[crisis_contacts]]                 # the practice's own list
    name = "988 Suicide & Crisis Lifeline"
    number = "988"
    actions = ["call", "text"]

    [[crisis_contacts]]                 # for patients in Japan
    country = "JP"
    name = "Emergency (ambulance)"
    number = "119"

Texts and the built-in names are translated into the patient's language (``hw_fhir/locales``);
configured names and texts are shown as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from babel import Locale
from babel.core import get_global

from ..catalog import CANONICAL_BASE as _CANONICAL_BASE
from ..config import Settings
from ..errors import ConfigurationError
from ..i18n import N_, translator

__all__ = [
    "CrisisContact",
    "CrisisInfo",
    "DEFAULT_CONTACTS",
    "COUNTRY_CONTACTS",
    "EU_EEA",
    "UNKNOWN_COUNTRY",
    "country_code",
    "patient_country",
    "crisis_resources",
    "with_crisis_notes",
    "crisis_config_problems",
]

_SCHEMES = {"call": "tel", "text": "sms"}
_LABELS = {"call": N_("Call %(number)s"), "text": N_("Text %(number)s")}
#: The default ``Settings.crisis_text``, translated when the settings keep it.
DEFAULT_TEXT = N_("If you are in crisis or thinking about harming yourself, call or text 988 "
                  "(Suicide & Crisis Lifeline, US) or call 911. If you are outside the US, call "
                  "your local emergency number.")
_NUMBER = re.compile(r"^\+?[0-9][0-9 ()-]{1,30}$")
#: ISO 3166 "unknown or unspecified country": a country was given but is not recognised.
UNKNOWN_COUNTRY = "ZZ"
#: EU and EEA members: 112 is the emergency number everywhere there.
EU_EEA = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
    "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
})


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
    """What the patient sees: a short text and the contacts to call or text.

    ``country`` is the ISO 3166 code the resources are for (None: the practice's own list or
    the US defaults for a patient whose country is unknown); ``line`` one short sentence for
    the footer of every patient page.
    """

    text: str
    contacts: tuple[CrisisContact, ...]
    country: str | None = None
    line: str = ""

    @property
    def country_name(self) -> str:
        """The country's English name (``Germany``); empty when unknown or unrecognised."""
        if not self.country or self.country == UNKNOWN_COUNTRY:
            return ""
        return str(Locale("en").territories.get(self.country, self.country))


_EMERGENCY = N_("Emergency services")
_EMERGENCY_NUMBERS = frozenset({"911", "999", "112", "000", "119", "110"})
_DANGER = N_("If you or someone else is in immediate danger.")
_ALL_DAY = N_("Free and confidential, 24 hours a day, 7 days a week (US).")

DEFAULT_CONTACTS: tuple[CrisisContact, ...] = (
    CrisisContact(N_("988 Suicide & Crisis Lifeline"), "988", ("call", "text"), _ALL_DAY),
    CrisisContact(_EMERGENCY, "911", ("call",), _DANGER),
)

_TEXT_112 = N_("If you are in crisis or thinking about harming yourself, contact your doctor or "
               "a local crisis line now. If you or someone else is in immediate danger, call 112, "
               "the emergency number everywhere in the EU.")
_TEXT_LOCAL = N_("If you are in crisis or thinking about harming yourself, contact your doctor or "
                 "a local crisis line now. If you or someone else is in immediate danger, call "
                 "your local emergency number.")
_TEXT_LISTED = N_("If you are in crisis or thinking about harming yourself, contact one of these "
                  "services now. If you or someone else is in immediate danger, call your local "
                  "emergency number.")
_LINE = N_("If you are in crisis, call %(line)s or, in an emergency, %(emergency)s.")
_LINE_OR_LOCAL = N_("If you are in crisis, call %(line)s or your local emergency number.")
_LINE_EMERGENCY = N_("If you are in crisis, call %(emergency)s or your local emergency number.")
_LINE_LOCAL = N_("If you are in crisis, call your local emergency number.")


def _emergency(number: str) -> CrisisContact:
    return CrisisContact(_EMERGENCY, number, ("call",), _DANGER)


#: Country → (text, contacts): only numbers that are well established nationally.
COUNTRY_CONTACTS: dict[str, tuple[str, tuple[CrisisContact, ...]]] = {
    "US": (DEFAULT_TEXT, DEFAULT_CONTACTS),
    "CA": (N_("If you are in crisis or thinking about harming yourself, call or text 988 "
              "(Suicide Crisis Helpline, Canada) or call 911."),
           (CrisisContact(N_("9-8-8 Suicide Crisis Helpline"), "988", ("call", "text"),
                          N_("Free, 24 hours a day, 7 days a week (Canada).")),
            _emergency("911"))),
    "GB": (N_("If you are in crisis or thinking about harming yourself, call Samaritans free on "
              "116 123, day or night. If you or someone else is in immediate danger, call 999."),
           (CrisisContact(N_("Samaritans"), "116 123", ("call",),
                          N_("Free, 24 hours a day, 7 days a week (UK and Ireland).")),
            _emergency("999"))),
    "DE": (N_("If you are in crisis or thinking about harming yourself, call TelefonSeelsorge "
              "free on 0800 111 0 111 or 0800 111 0 222, day or night. If you or someone else is "
              "in immediate danger, call 112."),
           (CrisisContact(N_("TelefonSeelsorge"), "0800 111 0 111", ("call",),
                          N_("Free and anonymous, 24 hours a day, 7 days a week (Germany).")),
            CrisisContact(N_("TelefonSeelsorge"), "0800 111 0 222", ("call",),
                          N_("Free and anonymous, 24 hours a day, 7 days a week (Germany).")),
            _emergency("112"))),
    "ES": (N_("If you are in crisis or thinking about harming yourself, call 024, the free "
              "suicide prevention line, day or night. If you or someone else is in immediate "
              "danger, call 112."),
           (CrisisContact(N_("024 Suicide prevention line"), "024", ("call",),
                          N_("Free and confidential, 24 hours a day (Spain).")),
            _emergency("112"))),
    "FR": (N_("If you are in crisis or thinking about harming yourself, call 3114, the free "
              "national suicide prevention line, day or night. If you or someone else is in "
              "immediate danger, call 112."),
           (CrisisContact(N_("3114 National suicide prevention line"), "3114", ("call",),
                          N_("Free and confidential, 24 hours a day, 7 days a week (France).")),
            _emergency("112"))),
}


@lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    """Country names (English, Spanish, German, French, Italian, Portuguese, Dutch, Japanese)
    and alpha-3 codes / aliases → alpha-2 code."""
    found: dict[str, str] = {}
    for language in ("ja", "nl", "pt", "it", "fr", "de", "es", "en"):
        for code, name in Locale(language).territories.items():
            if len(code) == 2 and code.isalpha():
                found[_fold(name)] = code
    for alias, codes in get_global("territory_aliases").items():
        if alias.isalpha() and len(alias) in (2, 3) and codes:
            found.setdefault(_fold(alias), codes[0])
    for alias, code in (("USA", "US"), ("U.S.", "US"), ("U.S.A.", "US"),
                        ("United States of America", "US"), ("America", "US"), ("UK", "GB"),
                        ("U.K.", "GB"), ("Great Britain", "GB"), ("England", "GB"),
                        ("Scotland", "GB"), ("Wales", "GB"), ("Northern Ireland", "GB"),
                        ("Britain", "GB"), ("Germany", "DE"), ("Deutschland", "DE")):
        found[_fold(alias)] = code
    return found


def _fold(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def country_code(value: Any) -> str | None:
    """Return the ISO 3166 alpha-2 code of a country code or name; None when empty.

    An alpha-2 or alpha-3 code (``DE``, ``DEU``) or a name (``Germany``, ``Deutschland``,
    ``Alemania``) is recognised; anything else is :data:`UNKNOWN_COUNTRY` (``ZZ``).
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    territories = Locale("en").territories
    if len(text) == 2 and text.isalpha() and text.upper() in territories:
        return text.upper()
    return _names().get(_fold(text), UNKNOWN_COUNTRY)


def patient_country(patient: Mapping[str, Any] | None) -> str | None:
    """Return the country of a Patient's address (home first, then the others in order)."""
    addresses = [a for a in (patient or {}).get("address") or [] if isinstance(a, Mapping)]
    ordered = ([a for a in addresses if a.get("use") == "home"]
               + [a for a in addresses if a.get("use") not in ("home", "old")])
    for address in ordered:
        if (address.get("period") or {}).get("end"):
            continue  # a past address
        found = country_code(address.get("country"))
        if found:
            return found
    return None


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


def _configured(settings: Settings) -> tuple[tuple[CrisisContact, ...] | None,
                                             dict[str, tuple[CrisisContact, ...]]]:
    """Return the practice's own list (None: not configured) and the per-country lists."""
    raw = settings.extra.get("crisis_contacts")
    if raw is None:
        return None, {}
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ConfigurationError("crisis_contacts must be a non-empty list of contacts")
    own: list[CrisisContact] = []
    by_country: dict[str, list[CrisisContact]] = {}
    for n, entry in enumerate(raw):
        contact = _contact(n, entry)
        country = entry.get("country")
        if country is None:
            own.append(contact)
            continue
        code = country_code(country) if isinstance(country, str) else None
        if code in (None, UNKNOWN_COUNTRY):
            raise ConfigurationError(f"crisis_contacts[{n}].country must be an ISO 3166 country "
                                     f"code such as \"DE\", not {country!r}")
        by_country.setdefault(str(code), []).append(contact)
    return (tuple(own) or None), {k: tuple(v) for k, v in by_country.items()}


def practice_country(settings: Settings) -> str | None:
    """Return the practice's country (``practice_country`` in the config file), or None."""
    raw = settings.extra.get("practice_country")
    if raw in (None, ""):
        return None
    code = country_code(raw) if isinstance(raw, str) else None
    if code in (None, UNKNOWN_COUNTRY):
        raise ConfigurationError(
            f"practice_country must be an ISO 3166 country code such as \"US\", not {raw!r}")
    return code


def _translated(contact: CrisisContact, language: str | None) -> CrisisContact:
    """Return a built-in contact in ``language`` (configured contacts are shown as written)."""
    _ = translator(language)
    return replace(contact, name=_(contact.name),
                   description=_(contact.description) if contact.description else "",
                   language=language)


def _line(contacts: tuple[CrisisContact, ...], language: str | None) -> str:
    """One short sentence for the footer of every page: the first line and the emergency one."""
    _ = translator(language)
    emergency = next((c.number for c in contacts if c.number in _EMERGENCY_NUMBERS), None)
    lines = [c.number for c in contacts if c.number not in _EMERGENCY_NUMBERS]
    if lines and emergency:
        return _(_LINE) % {"line": lines[0], "emergency": emergency}
    if lines:
        return _(_LINE_OR_LOCAL) % {"line": lines[0]}
    if emergency:
        return _(_LINE_EMERGENCY) % {"emergency": emergency}
    return _(_LINE_LOCAL)


def _info(text: str, contacts: tuple[CrisisContact, ...], country: str | None,
          language: str | None) -> CrisisInfo:
    return CrisisInfo(text, contacts, country, _line(contacts, language))


def crisis_resources(settings: Settings | None = None, language: str | None = None, *,
                     patient: Mapping[str, Any] | None = None,
                     country: str | None = None) -> CrisisInfo:
    """Return the crisis text and contacts for a patient (see the module for the order).

    ``patient`` (a Patient resource) gives the country (its address); ``country`` (an ISO
    code or name) overrides it. ``language`` (the patient's) translates the built-in texts,
    names and the call/text labels; a practice's own texts and contacts are shown as written.
    """
    settings = settings or Settings()
    _ = translator(language)
    own, by_country = _configured(settings)
    home = practice_country(settings)
    where = (country_code(country) if country else patient_country(patient)) or home
    if where is not None and where != home:
        return _for_country(where, by_country, language)
    # the practice's own country (or no country known anywhere): the practice's own list
    text = settings.crisis_text
    own_text = text != DEFAULT_TEXT
    if own is not None:
        return _info(text if own_text else _(DEFAULT_TEXT),
                     tuple(replace(c, language=language) for c in own), where, language)
    if where is None:  # nothing known: the US defaults, which say what to do elsewhere
        return _info(text if own_text else _(DEFAULT_TEXT),
                     tuple(_translated(c, language) for c in DEFAULT_CONTACTS), None, language)
    found = _for_country(where, by_country, language)
    return replace(found, text=text) if own_text else found


def _for_country(where: str, by_country: Mapping[str, tuple[CrisisContact, ...]],
                 language: str | None) -> CrisisInfo:
    _ = translator(language)
    if where in by_country:
        contacts = tuple(replace(c, language=language) for c in by_country[where])
        return _info(_(_TEXT_LISTED), contacts, where, language)
    if where in COUNTRY_CONTACTS:
        text, built_in = COUNTRY_CONTACTS[where]
        return _info(_(text), tuple(_translated(c, language) for c in built_in), where, language)
    if where in EU_EEA:
        return _info(_(_TEXT_112), (_translated(_emergency("112"), language),), where, language)
    return _info(_(_TEXT_LOCAL), (), where, language)


#: linkIds of the catalog's display items that tell the patient where to get help now.
CRISIS_NOTE_IDS = frozenset({"crisis-info", "emergency-info"})


def with_crisis_notes(questionnaire: dict[str, Any], info: CrisisInfo) -> dict[str, Any]:
    """Put the patient's own crisis resources in the crisis notes of a catalog activity.

    The catalog's coping card, urge logs, distress-tolerance log, urge surfing and
    relapse-prevention plan carry a display item (:data:`CRISIS_NOTE_IDS`) naming the US
    988 and 911; for a patient shown other resources (another country's, the practice's own
    list), its text becomes their ``info.text`` (already in their language; its rendering and translations
    are dropped). Only hw-fhir's own activities are changed (a practice's own form says what
    it says). ``questionnaire`` is changed in place (pass a copy) and returned.
    """
    url = str(questionnaire.get("url") or "")
    us_defaults = (info.country in (None, "US")
                   and [c.number for c in info.contacts] == [c.number for c in DEFAULT_CONTACTS])
    if us_defaults or not url.startswith(f"{_CANONICAL_BASE}/"):
        return questionnaire

    def walk(items: Any) -> None:
        for item in items if isinstance(items, list) else []:
            if item.get("type") == "display" and item.get("linkId") in CRISIS_NOTE_IDS:
                item["text"] = info.text
                item.pop("_text", None)
            walk(item.get("item"))

    walk(questionnaire.get("item"))
    return questionnaire


def crisis_config_problems(settings: Settings) -> list[str]:
    """Return what is wrong with ``practice_country`` and ``crisis_contacts`` (empty: all well)."""
    problems = []
    for check in (practice_country, _configured):
        try:
            check(settings)
        except ConfigurationError as exc:
            problems.append(f"crisis resources: {exc.message}")
    return problems
