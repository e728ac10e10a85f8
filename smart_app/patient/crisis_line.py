"""The signed-in patient's crisis resources on every patient page: the footer's sentence, the
offline notice, and the crisis notes of the activities — their country's, not the US numbers.

``crisis_line()`` in a template returns one short sentence from
:func:`hw_fhir.outcomes.crisis_resources` for the signed-in patient (their country and
language), else for the practice.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import g

from hw_fhir.errors import ConfigurationError, HwFhirError
from hw_fhir.outcomes import CrisisInfo, crisis_resources

from . import access
from .language import current_language

log = logging.getLogger("hw_fhir.patient")


def patient_crisis() -> CrisisInfo:
    """Return the crisis resources of the signed-in patient (once per request)."""
    if "hw_crisis" not in g:
        patient: dict[str, Any] | None = None
        ref = access.current_patient()
        if ref:
            try:
                patient = access.services().store.read("Patient", ref.split("/", 1)[1]).resource
            except HwFhirError:
                patient = None
        try:
            g.hw_crisis = crisis_resources(access.services().settings,
                                           language=current_language(), patient=patient)
        except ConfigurationError:  # a broken config never hides help: the built-in resources
            log.exception("crisis_contacts/practice_country are invalid (hw-fhir check)")
            g.hw_crisis = crisis_resources(None, language=current_language(), patient=patient)
    info: CrisisInfo = g.hw_crisis
    return info


def crisis_line() -> str:
    """Return the crisis sentence for the signed-in patient (a template global)."""
    return patient_crisis().line
