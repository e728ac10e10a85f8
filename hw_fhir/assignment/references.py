"""References an assignment names: Patient, Practitioner, Encounter, and the Task or CarePlan
an edit or a cancellation is about."""

from __future__ import annotations

import re

from ..errors import InvalidInput

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ABSOLUTE_ENCOUNTER = re.compile(r"^https?://[^\s/]+(/[^\s/]+)*/Encounter/[A-Za-z0-9\-.]{1,64}$")


def reference(resource_type: str, value: str) -> str:
    """Return ``Type/id`` for an id or a reference of that type; InvalidInput otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"A {resource_type} reference is required")
    value = value.strip()
    rid = value.split("/", 1)[1] if value.startswith(f"{resource_type}/") else value
    if not _ID.match(rid):
        raise InvalidInput(f"{value!r} is not a {resource_type} id or reference")
    return f"{resource_type}/{rid}"


def encounter_reference(value: str) -> str:
    """Return an Encounter reference: ``Encounter/<id>``, or the absolute URL of one on an EHR."""
    if isinstance(value, str) and _ABSOLUTE_ENCOUNTER.match(value.strip()):
        return value.strip()
    return reference("Encounter", value)


def split_assignment_ref(ref: str) -> tuple[str, str]:
    """Return ``(kind, id)`` of a ``Task/<id>`` or ``CarePlan/<id>``; InvalidInput otherwise."""
    kind, _, rid = ref.strip().partition("/")
    if kind not in ("Task", "CarePlan") or not _ID.match(rid or ""):
        raise InvalidInput(f"{ref!r} is not a Task or CarePlan reference")
    return kind, rid
