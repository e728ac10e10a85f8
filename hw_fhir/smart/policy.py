"""The decision: may this token do interaction X on resource R, or run search S?

A :class:`Grant` is what an access token carries (scopes, launch patient, user).
:class:`AccessPolicy` answers from it, raising :class:`~hw_fhir.errors.Forbidden`
(with an RFC 6750 ``WWW-Authenticate`` challenge in ``.headers``) when the answer is no.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import Forbidden, Issue, Unauthorized
from .compartment import (
    COMPARTMENT_PARAMS,
    SHARED_TYPES,
    compartment_param,
    in_compartment,
    matches_filters,
    patients_of,
    referenced_patients,
)
from .scopes import Scope, ScopeSet

__all__ = ["Grant", "AccessPolicy", "SearchPlan", "bearer_challenge", "forbidden", "unauthorized"]

REALM = "hw-fhir"


def bearer_challenge(error: str | None = None, description: str | None = None,
                     scope: str | None = None) -> str:
    """Build a ``WWW-Authenticate: Bearer`` challenge (RFC 6750 section 3)."""
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'").replace("\\", "/")))
    if scope:
        parts.append(f'scope="{scope}"')
    return "Bearer " + ", ".join(parts)


def forbidden(message: str, *, scope: str | None = None) -> Forbidden:
    """Return a Forbidden error carrying the ``insufficient_scope`` challenge."""
    exc = Forbidden(message, issues=[Issue(message, code="forbidden")])
    exc.headers = {"WWW-Authenticate": bearer_challenge("insufficient_scope", message, scope)}  # type: ignore[attr-defined]
    return exc


def unauthorized(message: str, *, error: str | None = "invalid_token") -> Unauthorized:
    """Return an Unauthorized error carrying a Bearer challenge (no error code when none was sent)."""
    exc = Unauthorized(message, issues=[Issue(message, code="login")])
    exc.headers = {"WWW-Authenticate": bearer_challenge(error, message if error else None)}  # type: ignore[attr-defined]
    return exc


@dataclass(frozen=True)
class Grant:
    """What one access token allows: its scopes and launch context."""

    scopes: ScopeSet
    client_id: str = ""
    patient: str | None = None
    fhir_user: str | None = None
    context: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    #: the patients ``user/`` scopes reach (``my-patients`` policy); None: every patient
    patients: frozenset[str] | None = field(default=None, hash=False, compare=False)

    @classmethod
    def from_token(cls, scope: str, client_id: str, context: dict[str, Any]) -> "Grant":
        """Build a Grant from a stored token's scope string and context."""
        return cls(ScopeSet.parse(scope), client_id, context.get("patient"),
                   context.get("fhirUser"), dict(context))


@dataclass(frozen=True)
class SearchPlan:
    """How to restrict a search: extra parameters to AND, and/or a per-resource filter."""

    extra: tuple[tuple[str, str], ...] = ()
    post_filter: bool = False


class AccessPolicy:
    """Decide what a Grant may do."""

    def __init__(self, grant: Grant) -> None:
        self.grant = grant

    def _mine_only(self, scope: Scope) -> bool:
        """Whether a user/ scope is held to the user's own patients (``my-patients``)."""
        return scope.context == "user" and self.grant.patients is not None

    def _unrestricted(self, scope: Scope) -> bool:
        return scope.context != "patient" and not scope.filters and not self._mine_only(scope)

    def _my_patients_allow(self, permission: str, resource: dict[str, Any]) -> bool:
        rtype = resource.get("resourceType", "")
        if rtype not in COMPARTMENT_PARAMS:
            return True  # not patient data (definitions, practitioners, subscriptions...)
        mine = self.grant.patients or frozenset()
        if rtype == "Patient" and permission == "c":
            return True  # a new patient is nobody's yet
        patients = patients_of(resource)
        if permission in "cud":
            return bool(patients) and patients <= mine and referenced_patients(resource) <= mine
        return bool(patients & mine)

    # ---------------------------------------------------------------- types

    def require(self, permission: str, resource_type: str) -> tuple[Scope, ...]:
        """Return the scopes granting ``permission`` on the type; Forbidden when there are none."""
        scopes = self.grant.scopes.covering(permission, resource_type)
        if not scopes:
            contexts = self.grant.scopes.contexts
            context = ("system" if "system" in contexts else "patient" if self.grant.patient
                       and "user" not in contexts else "user")
            needed = f"{context}/{resource_type}.{permission}"
            raise forbidden(f"The access token has no scope allowing '{permission}' on {resource_type} "
                            f"(granted: {self.grant.scopes.text or 'none'})", scope=needed)
        return scopes

    def unrestricted(self, permission: str, resource_type: str) -> bool:
        """Whether some scope grants ``permission`` on every resource of the type."""
        return any(self._unrestricted(s) for s in self.grant.scopes.covering(permission, resource_type))

    # ------------------------------------------------------------ resources

    def _scope_allows(self, scope: Scope, permission: str, resource: dict[str, Any]) -> bool:
        if scope.filters and not matches_filters(resource, scope.filters):
            return False
        if self._mine_only(scope):
            return self._my_patients_allow(permission, resource)
        if scope.context != "patient":
            return True
        patient = self.grant.patient
        if not patient:
            return False
        rtype = resource.get("resourceType", "")
        if rtype in SHARED_TYPES:
            return permission in "rs"
        if compartment_param(rtype, patient) is None or not in_compartment(resource, patient):
            return False
        return permission not in "cud" or referenced_patients(resource) <= {patient}

    def allows(self, permission: str, resource: dict[str, Any]) -> bool:
        """Whether ``permission`` is granted on this very resource."""
        rtype = resource.get("resourceType", "")
        return any(self._scope_allows(s, permission, resource)
                   for s in self.grant.scopes.covering(permission, rtype))

    def check(self, permission: str, resource: dict[str, Any]) -> None:
        """Raise Forbidden unless ``permission`` is granted on this resource."""
        rtype = resource.get("resourceType", "")
        scopes = self.require(permission, rtype)
        if any(self._scope_allows(s, permission, resource) for s in scopes):
            return
        what = f"{rtype}/{resource['id']}" if resource.get("id") else f"this {rtype}"
        if any(s.context == "patient" for s in scopes):
            reason = ("is outside the launch patient's compartment or refers to another patient"
                      if self.grant.patient else "needs a launch patient, and the token has none")
        else:
            reason = "does not match the filters of the granted scopes"
        raise forbidden(f"{what} {reason}")

    def allows_any_read(self, resource: dict[str, Any]) -> bool:
        """Whether the resource may be seen at all (read or search permission)."""
        return self.allows("r", resource) or self.allows("s", resource)

    # --------------------------------------------------------------- search

    def search_plan(self, resource_type: str, permission: str = "s") -> SearchPlan:
        """Return how to restrict a search of ``resource_type``; Forbidden if it is not allowed at all."""
        scopes = self.require(permission, resource_type)
        if any(self._unrestricted(s) for s in scopes):
            return SearchPlan()
        restrictions = set()
        for s in scopes:
            extra: tuple[tuple[str, str], ...] = s.filters
            if self._mine_only(s) and resource_type in COMPARTMENT_PARAMS:
                param = COMPARTMENT_PARAMS[resource_type]
                ids = sorted(self.grant.patients or ()) or ["no-patient"]
                value = ",".join(ids if param == "_id" else [f"Patient/{i}" for i in ids])
                extra = ((param, value), *s.filters)
            elif s.context == "patient":
                if not self.grant.patient:
                    continue
                if resource_type in SHARED_TYPES:
                    extra = s.filters
                else:
                    param = compartment_param(resource_type, self.grant.patient)
                    if param is None:
                        continue
                    extra = (param, *s.filters)
            restrictions.add(extra)
        if not restrictions:
            raise forbidden(f"The granted patient/ scopes do not reach {resource_type} "
                            + ("(no launch patient)" if not self.grant.patient else
                               "(not in the patient compartment)"))
        if () in restrictions:
            return SearchPlan()
        if len(restrictions) == 1:
            return SearchPlan(extra=next(iter(restrictions)))
        return SearchPlan(post_filter=True)
