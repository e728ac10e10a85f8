"""The patient compartment, and matching a resource against granular scope filters.

A ``patient/`` scope reaches only the launch patient's compartment: the Patient
itself and the resources whose compartment search parameter points at it
(``Task.for``, ``QuestionnaireResponse.subject``...). A few shared, non-clinical
types (Questionnaire, Practitioner...) are readable with ``patient/`` scopes but
never writable with them.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..store.searchparams import RefValue, TokenValue, extract, normalize_string, params_for, parse_reference

__all__ = [
    "COMPARTMENT_PARAMS",
    "SHARED_TYPES",
    "compartment_param",
    "patients_of",
    "in_compartment",
    "referenced_patients",
    "matches_filters",
]

#: Resource type → the search parameter that names its patient (``_id`` for Patient).
COMPARTMENT_PARAMS: dict[str, str] = {
    "Patient": "_id",
    "Task": "patient",
    "QuestionnaireResponse": "patient",
    "Observation": "patient",
    "CarePlan": "patient",
    "Communication": "patient",
    "CommunicationRequest": "patient",
    "Flag": "patient",
    "Encounter": "patient",
}

#: Types outside any patient compartment that ``patient/`` scopes may read.
SHARED_TYPES = frozenset({"Questionnaire", "Practitioner", "PractitionerRole", "ValueSet"})


def compartment_param(resource_type: str, patient_id: str) -> tuple[str, str] | None:
    """Return the search parameter restricting ``resource_type`` to one patient (None: not in it)."""
    param = COMPARTMENT_PARAMS.get(resource_type)
    if param is None:
        return None
    return (param, patient_id) if param == "_id" else (param, f"Patient/{patient_id}")


def patients_of(resource: dict[str, Any]) -> set[str]:
    """Return the ids of the patients whose compartment holds this resource."""
    rtype = resource.get("resourceType", "")
    param = COMPARTMENT_PARAMS.get(rtype)
    if param is None:
        return set()
    if param == "_id":
        return {resource["id"]} if resource.get("id") else set()
    sp = params_for(rtype).get(param)
    if sp is None:
        return set()
    return {v.target_id for v in extract(resource, sp)
            if isinstance(v, RefValue) and v.target_type == "Patient" and v.target_id}


def in_compartment(resource: dict[str, Any], patient_id: str) -> bool:
    """Whether the resource is in the patient's compartment."""
    return patient_id in patients_of(resource)


def referenced_patients(node: Any) -> set[str]:
    """Return the ids of every Patient the resource refers to, anywhere in it."""
    found: set[str] = set()
    if isinstance(node, dict):
        if node.get("resourceType") == "Patient" and node.get("id"):
            found.add(node["id"])
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                ref = parse_reference(value)
                if ref.target_type == "Patient" and ref.target_id:
                    found.add(ref.target_id)
            elif isinstance(value, (dict, list)):
                found |= referenced_patients(value)
    elif isinstance(node, list):
        for item in node:
            found |= referenced_patients(item)
    return found


def _token_match(values: Iterable[Any], wanted: str) -> bool:
    if "|" in wanted:
        system, _, code = wanted.partition("|")
        return any(isinstance(v, TokenValue)
                   and (v.code == code or not code)
                   and (v.system == (system or None))
                   for v in values)
    return any(isinstance(v, TokenValue) and v.code == wanted for v in values)


def _reference_match(values: Iterable[Any], wanted: str) -> bool:
    target = parse_reference(wanted)
    for v in values:
        if not isinstance(v, RefValue):
            continue
        if target.url and v.url == target.url:
            return True
        if target.target_id and v.target_id == target.target_id and (
                target.target_type is None or v.target_type == target.target_type):
            return True
    return False


def _one_filter(resource: dict[str, Any], name: str, value: str) -> bool:
    alternatives = [v for v in value.split(",") if v]
    if name == "_id":
        return resource.get("id") in alternatives
    sp = params_for(resource.get("resourceType", "")).get(name)
    if sp is None:  # unknown parameters and modifiers never match: deny rather than guess
        return False
    values = extract(resource, sp)
    for wanted in alternatives:
        if sp.type == "token" and _token_match(values, wanted):
            return True
        if sp.type == "reference" and _reference_match(values, wanted):
            return True
        if sp.type == "uri" and wanted in values:
            return True
        if sp.type == "string" and any(isinstance(v, str) and v.startswith(normalize_string(wanted))
                                       for v in values):
            return True
    return False


def matches_filters(resource: dict[str, Any], filters: Iterable[tuple[str, str]]) -> bool:
    """Whether the resource matches every granular filter (``name=value``, commas are OR)."""
    return all(_one_filter(resource, name, value) for name, value in filters)
