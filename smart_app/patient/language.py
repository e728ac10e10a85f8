"""The patient pages' language: Flask-Babel set up on hw_fhir's catalogs, the locale per request.

Patient pages (the ``patient`` blueprint, and the answers of the ``patient_pwa`` one that
``pwa.js`` shows) speak the signed-in patient's language
(``Patient.communication``, preferred first, see :func:`hw_fhir.i18n.patient_language`);
before sign-in (link and date-of-birth pages) the browser's ``Accept-Language``. Every
other page stays in English. Templates use ``_()`` and the filters ``local_date``,
``local_datetime``, ``local_number`` and ``local_percent``; ``html_lang`` is the page's
``<html lang>``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import Flask, g, request
from flask_babel import Babel, get_locale, refresh

from hw_fhir import i18n

from . import access
from .todo import wording_text

__all__ = ["init_app", "current_language", "use_language"]


#: The blueprints whose pages and answers speak the patient's language.
_PATIENT_BLUEPRINTS = frozenset({"patient", "patient_pwa"})


def use_language(language: str) -> None:
    """Make this request's patient pages speak ``language`` (e.g. the patient just chose it)."""
    g.hw_language = i18n.supported(language)
    refresh()


def _patient_language() -> str | None:
    patient_ref = access.current_patient()
    if patient_ref is None:
        return None
    try:
        patient = access.services().store.read("Patient", patient_ref.split("/", 1)[1]).resource
    except Exception:  # noqa: BLE001 - a missing Patient shows the page (or its error) in English
        return None
    return i18n.patient_language(patient)


def _select() -> str:
    chosen = getattr(g, "hw_language", None)
    if chosen:
        return str(chosen)
    if request.blueprint not in _PATIENT_BLUEPRINTS:
        return i18n.DEFAULT_LANGUAGE
    language = _patient_language()
    if language is None:
        language = request.accept_languages.best_match(list(i18n.LANGUAGES)) or (
            i18n.DEFAULT_LANGUAGE
        )
    g.hw_language = language
    return language


def current_language() -> str:
    """Return the language of this request's page (``en`` outside the patient pages)."""
    return str(get_locale() or i18n.DEFAULT_LANGUAGE)


def _local_date(value: date | datetime | None, zone: Any = None, pattern: str = "EEE d MMM") -> str:
    if value is None:
        return ""
    return i18n.date_text(value, current_language(), zone, pattern)


def _local_datetime(value: datetime | None, zone: Any = None, pattern: str = "medium") -> str:
    if value is None:
        return ""
    return i18n.datetime_text(value, current_language(), zone, pattern)


def _iso_local_date(value: str | None) -> str:
    """Show an ISO date (``2026-03-01``) in the page's language, e.g. ``1 mar 2026``."""
    if not value:
        return ""
    try:
        day = date.fromisoformat(str(value)[:10])
    except ValueError:
        return str(value)
    return i18n.date_text(day, current_language(), None, "medium")


def init_app(app: Flask) -> None:
    """Attach Flask-Babel with hw_fhir's compiled catalogs and the locale filters."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", i18n.DEFAULT_LANGUAGE)
    Babel(app, locale_selector=_select,
          default_translation_directories=str(i18n.LOCALES_DIR))
    app.add_template_filter(_local_date, "local_date")
    app.add_template_filter(_local_datetime, "local_datetime")
    app.add_template_filter(_iso_local_date, "iso_local_date")
    app.add_template_filter(lambda w: wording_text(w, current_language()), "wording_text")
    app.add_template_filter(lambda v: i18n.number_text(v, current_language()), "local_number")
    app.add_template_filter(lambda v: i18n.percent_text(v, current_language()), "local_percent")

    @app.context_processor
    def _language() -> dict[str, Any]:
        return {"html_lang": current_language(), "languages": i18n.LANGUAGES}
