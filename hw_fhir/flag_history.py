"""Risk flags after they were acknowledged: who acknowledged them, when, and their note.

:func:`hw_fhir.outcomes.safety.acknowledge_flag` ends a Flag (``status`` inactive,
``period.end``) and records the acknowledgement as an extension (``by``, ``at``, ``note``).
The dashboard lists them, newest first, so the note stays visible after the alert closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .assignment import parse_instant, reference
from .errors import NotFound
from .outcomes.safety import ACKNOWLEDGEMENT_EXTENSION
from .store.base import Store, iter_all

__all__ = ["AcknowledgedFlag", "acknowledged_flags"]

_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"


@dataclass(frozen=True)
class AcknowledgedFlag:
    """One acknowledged risk flag, as the dashboard's history shows it."""

    id: str
    text: str
    raised: str | None
    acknowledged: str | None
    by: str | None  # Practitioner/<id>
    by_name: str | None
    note: str | None
    response: str | None = None


def _person_name(resource: Mapping[str, Any]) -> str | None:
    for name in resource.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family") or ""]
        if any(parts):
            return " ".join(p for p in parts if p)
    return None


def _acknowledgement(flag: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ext in flag.get("extension") or []:
        if ext.get("url") != ACKNOWLEDGEMENT_EXTENSION:
            continue
        for part in ext.get("extension") or []:
            key = part.get("url")
            if key == "by":
                out["by"] = (part.get("valueReference") or {}).get("reference")
            elif key == "at":
                out["at"] = part.get("valueDateTime")
            elif key == "note":
                out["note"] = part.get("valueString")
    return out


def acknowledged_flags(store: Store, patient: str, *, limit: int = 10) -> list[AcknowledgedFlag]:
    """Return a patient's acknowledged risk flags, most recently acknowledged first."""
    patient_ref = reference("Patient", patient)
    found = []
    for flag in iter_all(store, "Flag", [("patient", patient_ref), ("status", "inactive")]):
        ack = _acknowledgement(flag)
        if not ack:
            continue
        response = next(
            ((e.get("valueReference") or {}).get("reference")
             for e in flag.get("extension") or [] if e.get("url") == _DETAIL),
            None,
        )
        found.append((flag, ack, response))
    found.sort(key=lambda item: parse_instant(item[1]["at"]).timestamp() if item[1].get("at")
               else 0.0, reverse=True)
    names: dict[str, str | None] = {}
    rows = []
    for flag, ack, response in found[:limit]:
        by = ack.get("by")
        if isinstance(by, str) and by not in names:
            names[by] = _practitioner_name(store, by)
        rows.append(AcknowledgedFlag(
            id=str(flag.get("id")),
            text=str((flag.get("code") or {}).get("text") or "A risk flag"),
            raised=(flag.get("period") or {}).get("start"),
            acknowledged=ack.get("at"),
            by=by,
            by_name=names.get(by) if isinstance(by, str) else None,
            note=ack.get("note"),
            response=response if isinstance(response, str) else None,
        ))
    return rows


def _practitioner_name(store: Store, ref: str) -> str | None:
    kind, _, rid = ref.partition("/")
    if kind != "Practitioner" or not rid:
        return None
    try:
        return _person_name(store.read("Practitioner", rid).resource)
    except NotFound:
        return None
