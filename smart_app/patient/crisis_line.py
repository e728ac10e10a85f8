"""The crisis line in the footer of every patient page (and the offline notice): the patient's own.

``crisis_line()`` in a template returns one short sentence from
:func:`hw_fhir.outcomes.crisis_resources` for the signed-in patient (their country and
language), else for the practice — never the US numbers for a patient elsewhere.
"""

from __future__ import annotations

from typing import Any

from flask import g

from hw_fhir.errors import HwFhirError
from hw_fhir.outcomes import crisis_resources

from . import access
from .language import current_language
from .views import bp


@bp.app_template_global("crisis_line")
def crisis_line() -> str:
    """Return the crisis sentence for the signed-in patient (once per request)."""
    if "hw_crisis_line" not in g:
        patient: dict[str, Any] | None = None
        ref = access.current_patient()
        if ref:
            try:
                patient = access.services().store.read("Patient", ref.split("/", 1)[1]).resource
            except HwFhirError:
                patient = None
        g.hw_crisis_line = crisis_resources(access.services().settings,
                                            language=current_language(), patient=patient).line
    return str(g.hw_crisis_line)
