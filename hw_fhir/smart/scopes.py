"""SMART scopes (App Launch 2.x, with the 1.0 forms still accepted).

A resource scope is ``<context>/<type>.<permissions>[?param=value&...]``:

* context: ``patient`` (the launch patient's compartment), ``user`` (what the
  user may see), ``system`` (a backend service);
* type: a resource type or ``*``;
* permissions: v2 letters in the order ``c r u d s`` (``cruds``, ``rs``, ``cu``...)
  or the v1 words ``read`` (= ``rs``), ``write`` (= ``cud``) and ``*`` (= ``cruds``);
* granular filters (v2): search parameters a resource must match, e.g.
  ``patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|survey``.

Everything else (``openid``, ``fhirUser``, ``launch``, ``launch/patient``,
``offline_access``...) is kept as a plain name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

__all__ = [
    "Scope",
    "ScopeSet",
    "parse_scope",
    "grantable_scopes",
    "PERMISSIONS",
    "INTERACTION_PERMISSION",
]

#: The v2 permission letters, in the order SMART requires.
PERMISSIONS = "cruds"

#: FHIR interaction → the SMART permission letter it needs.
INTERACTION_PERMISSION = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search-type": "s",
    "history-type": "s",
    "history-system": "s",
}

_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]+)(?:\?(.*))?$")
_V2 = re.compile(r"^c?r?u?d?s?$")


@dataclass(frozen=True)
class Scope:
    """One resource scope: context, resource type, permission letters and granular filters."""

    context: str
    resource_type: str
    permissions: frozenset[str]
    filters: tuple[tuple[str, str], ...] = ()
    raw: str = ""

    def covers_type(self, resource_type: str) -> bool:
        """Whether this scope is about ``resource_type`` (``*`` is about every type)."""
        return self.resource_type in ("*", resource_type)

    def allows(self, permission: str, resource_type: str) -> bool:
        """Whether this scope grants ``permission`` (one of c r u d s) on ``resource_type``."""
        return permission in self.permissions and self.covers_type(resource_type)

    def includes(self, other: "Scope") -> bool:
        """Whether granting this scope also grants everything ``other`` asks for."""
        return (self.context == other.context
                and self.resource_type in ("*", other.resource_type)
                and other.permissions <= self.permissions
                and (not self.filters or set(self.filters) <= set(other.filters)))


def parse_scope(text: str) -> Scope | None:
    """Parse a resource scope; return None for any other scope name or a malformed one."""
    match = _SCOPE.match(text.strip())
    if not match:
        return None
    context, rtype, perms, query = match.groups()
    if perms in _V1:
        if query is not None:  # v1 scopes have no granular filters
            return None
        letters = _V1[perms]
    elif perms and _V2.match(perms):
        letters = perms
    else:
        return None
    filters: tuple[tuple[str, str], ...] = ()
    if query is not None:
        pairs = parse_qsl(query, keep_blank_values=False)
        if not pairs or rtype == "*":
            return None
        filters = tuple(pairs)
    return Scope(context, rtype, frozenset(letters), filters, text.strip())


@dataclass(frozen=True)
class ScopeSet:
    """A granted (or requested) scope string, parsed."""

    resource: tuple[Scope, ...] = ()
    names: frozenset[str] = frozenset()
    text: str = ""

    @classmethod
    def parse(cls, text: str | None) -> "ScopeSet":
        """Parse a space-separated scope string."""
        resource: list[Scope] = []
        names: set[str] = set()
        for item in (text or "").split():
            scope = parse_scope(item)
            if scope is not None:
                resource.append(scope)
            else:
                names.add(item)
        return cls(tuple(resource), frozenset(names), " ".join((text or "").split()))

    def __contains__(self, name: object) -> bool:
        return name in self.names or any(s.raw == name for s in self.resource)

    def covering(self, permission: str, resource_type: str) -> tuple[Scope, ...]:
        """Return the scopes that grant ``permission`` on ``resource_type``."""
        return tuple(s for s in self.resource if s.allows(permission, resource_type))

    @property
    def contexts(self) -> frozenset[str]:
        """The contexts (patient, user, system) of the resource scopes."""
        return frozenset(s.context for s in self.resource)


def grantable_scopes(requested: str, allowed: str) -> str:
    """Return the requested scopes that ``allowed`` covers, in the requested order."""
    allowed_set = ScopeSet.parse(allowed)
    out: list[str] = []
    for item in (requested or "").split():
        scope = parse_scope(item)
        if scope is None:
            ok = item in allowed_set.names
        else:
            ok = any(a.includes(scope) for a in allowed_set.resource)
        if ok and item not in out:
            out.append(item)
    return " ".join(out)
