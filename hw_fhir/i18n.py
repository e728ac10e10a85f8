"""Languages for patient-facing text: message catalogs, the patient's language, locale formats.

The compiled catalogs live in ``hw_fhir/locales/<lang>/LC_MESSAGES/messages.mo`` (one domain,
shared with the Flask app, which points Flask-Babel at the same folder). Core code translates
with :func:`translator` and never imports Flask::

    _ = translator("es")
    _("Reminder from {practice}").format(practice=...)

Strings are marked for extraction with :func:`N_` (identity) where they are defined and
translated where they are used. The patient's language is ``Patient.communication`` — the
entry with ``preferred: true`` first, then the others in order — matched against
:data:`LANGUAGES`; :func:`with_language` writes a choice back the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_decimal, format_percent
from babel.support import NullTranslations, Translations

from .errors import UnsupportedLanguage

__all__ = [
    "LOCALES_DIR",
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LANGUAGE_SYSTEM",
    "N_",
    "translations",
    "translator",
    "practice_in",
    "DEFAULT_PRACTICE_NAME",
    "supported",
    "patient_language",
    "with_language",
    "language_name",
    "date_text",
    "datetime_text",
    "time_text",
    "number_text",
    "percent_text",
]

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DEFAULT_LANGUAGE = "en"
#: Languages the patient pages, reminders and crisis resources speak, with their own names.
LANGUAGES: dict[str, str] = {"en": "English", "es": "Español"}
#: Code system of Patient.communication.language (BCP 47 tags).
LANGUAGE_SYSTEM = "urn:ietf:bcp:47"


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark only"
    """Mark a string for extraction without translating it here."""
    return message


@lru_cache(maxsize=16)
def translations(language: str) -> NullTranslations:
    """Return the compiled catalog of a language (English and unknown ones: identity)."""
    if language == DEFAULT_LANGUAGE or language not in LANGUAGES:
        return NullTranslations()
    return Translations.load(str(LOCALES_DIR), [language], domain="messages")


def translator(language: str | None) -> Callable[[str], str]:
    """Return a gettext function for a language (``None``: the default language)."""
    return translations(supported(language)).gettext


#: ``Settings.practice_name`` when a practice has not set its own: words, so translated.
DEFAULT_PRACTICE_NAME = N_("your care team")


def practice_in(name: str, language: str | None) -> str:
    """The practice's name for a patient's text: the default ("your care team") in their
    language; a practice's own name as it is."""
    return translator(language)(name) if name == DEFAULT_PRACTICE_NAME else name


def _base(tag: str | None) -> str:
    return str(tag or "").replace("_", "-").split("-")[0].lower()


def supported(tag: str | None) -> str:
    """Return the supported language of a BCP 47 tag (``es-MX`` → ``es``), else the default."""
    base = _base(tag)
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


def _tag(entry: Mapping[str, Any]) -> str | None:
    language = entry.get("language") or {}
    for coding in language.get("coding") or []:
        if coding.get("code"):
            return str(coding["code"])
    return None


def patient_language(patient: Mapping[str, Any] | None) -> str:
    """Return the supported language a Patient prefers (``communication``, preferred first)."""
    entries = list((patient or {}).get("communication") or [])
    entries.sort(key=lambda e: not e.get("preferred"))
    for entry in entries:
        base = _base(_tag(entry))
        if base in LANGUAGES:
            return base
    return DEFAULT_LANGUAGE


def with_language(patient: Mapping[str, Any], language: str) -> dict[str, Any]:
    """Return a copy of a Patient whose preferred communication language is ``language``.

    The chosen language becomes the first entry with ``preferred: true``; other languages the
    patient speaks stay, no longer preferred.
    """
    if language not in LANGUAGES:
        raise UnsupportedLanguage(f"unsupported language {language!r}")
    kept = []
    chosen: dict[str, Any] | None = None
    for entry in (patient or {}).get("communication") or []:
        if chosen is None and _base(_tag(entry)) == language:
            chosen = dict(entry)
            continue
        other = {k: v for k, v in entry.items() if k != "preferred"}
        kept.append(other)
    if chosen is None:
        chosen = {
            "language": {
                "coding": [
                    {"system": LANGUAGE_SYSTEM, "code": language, "display": LANGUAGES[language]}
                ]
            }
        }
    chosen["preferred"] = True
    out = dict(patient)
    out["communication"] = [chosen, *kept]
    return out


def language_name(language: str, in_language: str | None = None) -> str:
    """Return a language's name: its own (``es`` → ``Español``, for a language menu), or as
    written in a sentence of ``in_language`` (``es`` in ``es`` → ``español``, in ``en`` →
    ``Spanish``)."""
    if in_language is None:
        return LANGUAGES.get(language) or language
    return Locale.parse(language).get_display_name(supported(in_language)) or language


def date_text(moment: date | datetime, language: str | None, zone: tzinfo | None = None,
              pattern: str = "medium") -> str:
    """Return a date in the language's format (``EEE d MMM`` style patterns allowed)."""
    if isinstance(moment, datetime) and zone is not None:
        moment = moment.astimezone(zone)
    if isinstance(moment, datetime):
        moment = moment.date()
    return format_date(moment, format=pattern, locale=supported(language))


def datetime_text(moment: datetime, language: str | None, zone: tzinfo | None = None,
                  pattern: str = "medium") -> str:
    """Return a date and time in the language's format, in ``zone`` when given."""
    return format_datetime(moment, format=pattern, tzinfo=zone, locale=supported(language))


def time_text(moment: datetime, language: str | None, zone: tzinfo | None = None,
              pattern: str = "short") -> str:
    """Return a time of day in the language's format."""
    return format_time(moment, format=pattern, tzinfo=zone, locale=supported(language))


def number_text(value: float | int, language: str | None) -> str:
    """Return a number in the language's format (decimal separator, grouping)."""
    return format_decimal(value, locale=supported(language))


def percent_text(value: float, language: str | None) -> str:
    """Return a fraction (0.75) as a percentage in the language's format."""
    return format_percent(value, locale=supported(language))
