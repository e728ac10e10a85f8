"""A store wrapper that enforces an :class:`~hw_fhir.smart.policy.AccessPolicy` on every call.

The /fhir facade uses it in place of the store for token-authorized requests:
reads of resources the token may not see raise Forbidden, searches are narrowed
to what the scopes reach (patient compartment, granular filters), history and
``_include`` results are filtered, and writes are checked before and after.

Checks and writes are separate steps; for restricted grants (patient or
filtered scopes) an update or delete is pinned to the version that was checked
(``If-Match``), so a concurrent change makes it fail instead of slipping through.
Bundle entries are checked before the Bundle runs; for restricted grants only
plain POST/PUT/DELETE entries are accepted.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import Gone, NotFound
from ..store.base import HistoryResult, Params, SearchResult, Stored, WriteResult, as_params
from .policy import AccessPolicy, forbidden
from .subscriber import stamp_grant
from .write_rules import check_delete, check_write, needs_stored

__all__ = ["GuardedStore"]


def _etag(stored: Stored) -> str:
    return f'W/"{stored.version_id}"'


class GuardedStore:
    """The Store protocol over another store, allowed only what the policy allows."""

    def __init__(self, store: Any, policy: AccessPolicy) -> None:
        self.store = store
        self.policy = policy

    # ------------------------------------------------------------------ reads

    def read(self, resource_type: str, id: str) -> Stored:
        """Read, if the token may read this resource."""
        self.policy.require("r", resource_type)
        stored = self.store.read(resource_type, id)
        self.policy.check("r", stored.resource)
        return stored

    def vread(self, resource_type: str, id: str, version_id: str) -> Stored:
        """Read one version, if the token may read that version."""
        self.policy.require("r", resource_type)
        stored = self.store.vread(resource_type, id, version_id)
        self.policy.check("r", stored.resource)
        return stored

    def search(self, resource_type: str, params: Params = (), *, strict: bool = False) -> SearchResult:
        """Search within what the token reaches."""
        plan = self.policy.search_plan(resource_type)
        pairs = as_params(params)
        result: SearchResult = self.store.search(resource_type, [*pairs, *plan.extra], strict=strict)
        if plan.post_filter:
            result.matches = [m for m in result.matches if self.policy.allows("s", m.resource)]
            result.total = None
        result.included = [i for i in result.included if self.policy.allows_any_read(i.resource)]
        if plan.extra:
            echo = list(result.params)
            for pair in plan.extra:
                if pair in echo:
                    echo.remove(pair)
            result.params = echo
        return result

    def history(self, resource_type: str | None = None, id: str | None = None, *,
                since: str | None = None, count: int = 100,
                cursor: str | None = None) -> HistoryResult:
        """Return history entries the token may see (deleted entries only with unrestricted scopes)."""
        permission = "r" if id else "s"
        if resource_type:
            self.policy.require(permission, resource_type)
        result: HistoryResult = self.store.history(resource_type, id, since=since, count=count,
                                                   cursor=cursor)
        kept = []
        for entry in result.entries:
            if entry.deleted or not entry.raw:
                if self.policy.unrestricted(permission, entry.resource_type):
                    kept.append(entry)
            elif self.policy.allows(permission, entry.resource):
                kept.append(entry)
        if id and result.entries and not kept:
            raise forbidden(f"{resource_type}/{id} is not within the granted scopes")
        if len(kept) != len(result.entries):
            result.total = None
        result.entries = kept
        return result

    # ----------------------------------------------------------------- writes

    def _prepare(self, permission: str, resource: dict[str, Any],
                 old: dict[str, Any] | None) -> dict[str, Any]:
        """Apply the write rules; stamp a Subscription with this token's grant."""
        check_write(self.policy, permission, resource, old)
        if resource.get("resourceType") == "Subscription":
            return stamp_grant(resource, self.policy.grant)
        return resource

    def _conditional(self, resource_type: str, criteria: str) -> str:
        """Return If-None-Exist criteria narrowed to what the token may search.

        Conditional criteria are evaluated within the caller's compartment and filters,
        never on the whole store: whether another patient has a matching resource must
        not change the answer.
        """
        plan = self.policy.search_plan(resource_type)
        if plan.post_filter:
            raise forbidden("If-None-Exist is not supported with these scopes; search first, "
                            "then create")
        if not plan.extra:
            return criteria
        return "&".join(part for part in (criteria.lstrip("?"), urlencode(plan.extra)) if part)

    def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        """Create, if the token may create this resource (a conditional match only among what it sees)."""
        self.policy.check("c", resource)
        resource = self._prepare("c", resource, None)
        if if_none_exist:
            if_none_exist = self._conditional(str(resource.get("resourceType", "")), if_none_exist)
        result: WriteResult = self.store.create(resource, if_none_exist=if_none_exist)
        if not result.created and not self.policy.allows_any_read(result.resource):
            raise forbidden("If-None-Exist matched a resource outside the granted scopes")
        return result

    def _current(self, resource_type: str, id: str) -> Stored | None:
        try:
            return self.store.read(resource_type, id)
        except (NotFound, Gone):
            return None

    def update(self, resource: dict[str, Any], *, if_match: str | None = None) -> WriteResult:
        """Update, if the token may change both the stored and the new version."""
        rtype = resource.get("resourceType", "")
        self.policy.require("u", rtype)
        old = self._current(rtype, str(resource.get("id", "")))
        if old is None:
            self.policy.check("c", resource)
        else:
            self.policy.check("u", old.resource)
        self.policy.check("u", resource)
        resource = self._prepare("u", resource, old.resource if old is not None else None)
        if old is not None and not if_match and not self.policy.unrestricted("u", rtype):
            if_match = _etag(old)
        return self.store.update(resource, if_match=if_match)

    def authorize_write(self, resource: dict[str, Any]) -> str | None:
        """Check a create or update of ``resource`` as :meth:`create`/:meth:`update` do, writing nothing.

        Return the ETag an update must replace when the grant is restricted (the
        version that was checked), else None. Raises Forbidden like the writes.
        """
        rtype = resource.get("resourceType", "")
        if not resource.get("id"):
            self.policy.check("c", resource)
            self._prepare("c", resource, None)
            return None
        self.policy.require("u", rtype)
        old = self._current(rtype, str(resource["id"]))
        if old is None:
            self.policy.check("c", resource)
            self.policy.check("u", resource)
            self._prepare("u", resource, None)
            return None
        self.policy.check("u", old.resource)
        self.policy.check("u", resource)
        self._prepare("u", resource, old.resource)
        return None if self.policy.unrestricted("u", rtype) else _etag(old)

    def delete(self, resource_type: str, id: str) -> None:
        """Delete, if the token may delete this resource."""
        self.policy.require("d", resource_type)
        old = self._current(resource_type, id)
        if old is None:
            return
        self.policy.check("d", old.resource)
        check_delete(self.policy, old.resource)
        self.store.delete(resource_type, id)

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Check every entry of a transaction or batch Bundle, then run it."""
        return self.store.transaction(self.check_bundle(bundle))

    def check_bundle(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Check every entry of a transaction or batch Bundle as :meth:`transaction` does, running nothing.

        Return the Bundle as it is to be run (entries prepared for the grant).
        """
        entries = []
        for n, entry in enumerate(bundle.get("entry") or []):
            entries.append(self._check_entry(n, entry) if isinstance(entry, dict) else entry)
        return {**bundle, "entry": entries} if "entry" in bundle else bundle

    def _check_entry(self, n: int, entry: dict[str, Any]) -> dict[str, Any]:
        """Check one entry; return it as it is to be run (a Subscription stamped with the grant)."""
        request = entry.get("request") or {}
        method = str(request.get("method", "")).upper()
        parts = urlsplit(str(request.get("url", "")))
        path = [p for p in parts.path.split("/") if p]
        rtype = path[0] if path else ""
        rid = path[1] if len(path) > 1 else None
        resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else None
        permission = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}.get(
            method, "r" if rid else "s")
        self.policy.require(permission, rtype)
        restricted = not self.policy.unrestricted(permission, rtype)
        old = None
        if rid and isinstance(rtype, str) and (restricted or needs_stored(
                self.policy, permission, resource or {"resourceType": rtype})):
            old = self._current(rtype, rid)
        if resource is not None and method in ("POST", "PUT"):
            resource = self._prepare(permission, resource, old.resource if old else None)
            entry = {**entry, "resource": resource}
        elif method == "DELETE" and old is not None:
            check_delete(self.policy, old.resource)
        if not restricted:
            return entry
        conditional = bool(parts.query) or bool(request.get("ifNoneExist"))
        if method not in ("POST", "PUT", "DELETE") or conditional or not isinstance(rtype, str):
            raise forbidden(f"Bundle.entry[{n}]: with patient-level or filtered scopes a Bundle may only "
                            "hold plain POST, PUT and DELETE entries; read and search with GET")
        if resource is not None:
            self.policy.check(permission if method != "PUT" or rid is None else "u", resource)
        if rid:
            if old is not None:
                self.policy.check(permission, old.resource)
            elif method == "PUT" and resource is not None:
                self.policy.check("c", resource)
        return entry
