"""Whether a clinician shares measure scores with a patient: read and write the Patient flag.

The choice is an extension on the Patient (:data:`SHARE_SCORES_EXTENSION`, ``valueBoolean``);
when it is true the patient's progress page shows their score trend. The review screens
read it with :func:`scores_shared`; the clinician's "share scores" action writes it with
:func:`share_scores`. No web framework here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .assignment import reference
from .store.base import Store

__all__ = ["SHARE_SCORES_EXTENSION", "scores_shared", "share_scores"]

#: On the Patient: ``valueBoolean`` true when the clinician shares measure scores with the
#: patient (the patient's progress page then shows their trend).
SHARE_SCORES_EXTENSION = "http://hw-fhir.org/fhir/StructureDefinition/share-scores-with-patient"


def scores_shared(patient: Mapping[str, Any] | None) -> bool:
    """Whether the clinician shares measure scores with this patient (off by default)."""
    return any(
        e.get("url") == SHARE_SCORES_EXTENSION and e.get("valueBoolean") is True
        for e in (patient or {}).get("extension") or []
    )


def share_scores(store: Store, patient: str, shared: bool) -> dict[str, Any]:
    """Share (or stop sharing) measure scores with a patient; return the stored Patient.

    Written with If-Match on the version read, so a concurrent change of the Patient
    (preferences saved by the patient, say) is never overwritten: VersionConflict then.
    """
    patient_ref = reference("Patient", patient)
    stored = store.read("Patient", patient_ref.split("/", 1)[1])
    resource = dict(stored.resource)
    extensions = [
        e for e in resource.get("extension") or [] if e.get("url") != SHARE_SCORES_EXTENSION
    ]
    extensions.append({"url": SHARE_SCORES_EXTENSION, "valueBoolean": bool(shared)})
    resource["extension"] = extensions
    return store.update(resource, if_match=stored.version_id).stored.resource
