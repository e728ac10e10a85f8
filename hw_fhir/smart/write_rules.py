"""Rules on writes through /fhir that scopes alone do not express.

* **Reserved identifier systems** (:data:`RESERVED_IDENTIFIER_SYSTEMS`: ``session-note``,
  ``task-response``, ``task-occurrence``, ``risk-flag``, ``risk-alert``,
  ``communication-attempt``, ``secure-message`` under ``http://hw-fhir.org/fhir/sid/``) are hw-fhir's own
  bookkeeping: it finds "the note for the next session" or "the response to this Task"
  by them. A client may keep such an identifier on a resource hw-fhir gave it (an
  update that leaves it unchanged), never add one: otherwise patient B could plant a
  note or a response that hw-fhir shows as A's. (``write-back`` and ``observation``
  identifiers are not reserved: they name the sender's records, e.g. in copies another
  hw-fhir's outbox writes here.)
* **Clinician-only content.** Tokens whose only grant for a write is a ``patient/``
  scope may not create, change or delete ``Flag`` resources (risk alerts are raised by
  hw-fhir and acknowledged by clinicians), nor change clinician-only extensions on their
  own resources (``share-scores-with-patient``, ``secure-messaging`` on the Patient).

:class:`~hw_fhir.smart.guard.GuardedStore` applies them to every create, update, delete
and Bundle entry; hw-fhir's own writes go to the store directly.
"""

from __future__ import annotations

from typing import Any

from ..catalog import CANONICAL_BASE
from ..messages import MESSAGING_EXTENSION
from ..sharing import SHARE_SCORES_EXTENSION
from .policy import AccessPolicy, forbidden

__all__ = ["RESERVED_IDENTIFIER_SYSTEMS", "CLINICIAN_ONLY_TYPES", "CLINICIAN_ONLY_EXTENSIONS",
           "check_write", "check_delete", "needs_stored", "patient_only"]

#: Identifier systems written by hw-fhir only.
RESERVED_IDENTIFIER_SYSTEMS = frozenset(
    f"{CANONICAL_BASE}/sid/{name}" for name in (
        "session-note", "task-response", "task-occurrence", "risk-flag", "risk-alert",
        "communication-attempt", "secure-message"))
#: Resource types a patient/ scope may not write.
CLINICIAN_ONLY_TYPES = frozenset({"Flag"})
#: Extensions a patient/ scope may not add, change or remove.
CLINICIAN_ONLY_EXTENSIONS = frozenset({SHARE_SCORES_EXTENSION, MESSAGING_EXTENSION})


def _reserved(resource: dict[str, Any] | None) -> set[tuple[str, str]]:
    out = set()
    idents = (resource or {}).get("identifier") or []
    for ident in [idents] if isinstance(idents, dict) else idents:  # QR: 0..1, others: 0..*
        if isinstance(ident, dict) and ident.get("system") in RESERVED_IDENTIFIER_SYSTEMS:
            out.add((str(ident["system"]), str(ident.get("value", ""))))
    return out


def _clinician_extensions(resource: dict[str, Any] | None) -> list[Any]:
    return sorted((repr(e) for e in (resource or {}).get("extension") or []
                   if isinstance(e, dict) and e.get("url") in CLINICIAN_ONLY_EXTENSIONS))


def patient_only(policy: AccessPolicy, permission: str, resource_type: str) -> bool:
    """Whether every scope granting ``permission`` on the type is a patient/ scope."""
    scopes = policy.grant.scopes.covering(permission, resource_type)
    return bool(scopes) and all(s.context == "patient" for s in scopes)


def check_write(policy: AccessPolicy, permission: str, resource: dict[str, Any],
                old: dict[str, Any] | None) -> None:
    """Raise Forbidden if a create/update breaks a rule (``old``: the stored version, if any)."""
    rtype = str(resource.get("resourceType", ""))
    added = _reserved(resource) - _reserved(old)
    if added:
        system = sorted(added)[0][0]
        raise forbidden(f"The identifier system {system} is reserved for hw-fhir's own records "
                        "and cannot be written through the API")
    if not patient_only(policy, permission, rtype):
        return
    if rtype in CLINICIAN_ONLY_TYPES:
        raise forbidden(f"{rtype} resources are written by hw-fhir and clinicians, not with "
                        "patient/ scopes")
    if _clinician_extensions(resource) != _clinician_extensions(old):
        raise forbidden("Only clinicians may change clinician-only settings "
                        "(e.g. sharing scores with the patient)")


def needs_stored(policy: AccessPolicy, permission: str, resource: dict[str, Any]) -> bool:
    """Whether checking a write of ``resource`` needs its stored version (else it is not read)."""
    rtype = str(resource.get("resourceType", ""))
    return bool(_reserved(resource)) or (
        (rtype in CLINICIAN_ONLY_TYPES or resource.get("extension") is not None
         or permission == "u") and patient_only(policy, permission, rtype))


def check_delete(policy: AccessPolicy, old: dict[str, Any]) -> None:
    """Raise Forbidden if deleting ``old`` breaks a rule."""
    rtype = str(old.get("resourceType", ""))
    if rtype in CLINICIAN_ONLY_TYPES and patient_only(policy, "d", rtype):
        raise forbidden(f"{rtype} resources cannot be deleted with patient/ scopes")
