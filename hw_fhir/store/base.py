"""The Store protocol and the values it returns.

Two implementations: :class:`~hw_fhir.store.sql.SqlStore` (SQLite / PostgreSQL)
and :class:`~hw_fhir.store.remote.RemoteStore` (any FHIR R4 server over REST).
Both pass the same contract test suite (``tests/test_store_contract.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

import orjson

__all__ = [
    "Stored",
    "WriteResult",
    "SearchResult",
    "HistoryResult",
    "Params",
    "Store",
    "as_params",
    "every_match",
    "iter_all",
]

#: Search parameters as (name, value) pairs; a name may repeat (AND).
Params = Sequence[tuple[str, str]]


def as_params(params: Any) -> list[tuple[str, str]]:
    """Accept a mapping (values str or list) or pairs; return (name, value) pairs."""
    if params is None:
        return []
    if hasattr(params, "items") and not hasattr(params, "getlist"):
        out: list[tuple[str, str]] = []
        for k, v in params.items():
            for item in v if isinstance(v, (list, tuple)) else [v]:
                out.append((str(k), str(item)))
        return out
    if hasattr(params, "getlist"):  # werkzeug MultiDict
        return [(k, v) for k in params.keys() for v in params.getlist(k)]
    return [(str(k), str(v)) for k, v in params]


@dataclass
class Stored:
    """One stored version of a resource; ``raw`` is its JSON text (None when deleted)."""

    resource_type: str
    id: str
    version_id: str
    last_updated: str
    deleted: bool = False
    method: str = "PUT"
    raw: str | None = None
    _parsed: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def resource(self) -> dict[str, Any]:
        """The resource as a dict (parsed once, on first use)."""
        if self._parsed is None:
            self._parsed = orjson.loads(self.raw) if self.raw else {}
        return self._parsed

    @property
    def reference(self) -> str:
        """``Type/id``."""
        return f"{self.resource_type}/{self.id}"

    @classmethod
    def from_resource(cls, resource: dict[str, Any], *, deleted: bool = False,
                      method: str = "PUT") -> "Stored":
        """Wrap a resource dict that carries id and meta."""
        meta = resource.get("meta") or {}
        return cls(
            resource_type=resource["resourceType"],
            id=resource["id"],
            version_id=str(meta.get("versionId", "")),
            last_updated=str(meta.get("lastUpdated", "")),
            deleted=deleted,
            method=method,
            raw=orjson.dumps(resource).decode(),
            _parsed=resource,
        )


@dataclass(frozen=True)
class WriteResult:
    """What a create or update did: the stored version, and whether it was created."""

    stored: Stored
    created: bool

    @property
    def resource(self) -> dict[str, Any]:
        """The stored resource."""
        return self.stored.resource


@dataclass
class SearchResult:
    """A page of search matches plus included resources."""

    resource_type: str | None
    matches: list[Stored]
    included: list[Stored] = field(default_factory=list)
    total: int | None = None
    offset: int = 0
    count: int = 0
    has_more: bool = False
    params: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    next_url: str | None = None  # RemoteStore: the server's own next link

    @property
    def resources(self) -> list[dict[str, Any]]:
        """The matched resources as dicts."""
        return [m.resource for m in self.matches]


@dataclass
class HistoryResult:
    """A page of history entries, newest first, and the cursor of the next page."""

    entries: list[Stored]
    next_cursor: str | None = None
    total: int | None = None
    next_url: str | None = None


@runtime_checkable
class Store(Protocol):
    """Where FHIR resources live: versioned, searchable, transactional."""

    def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        """Store a new resource with a new id; with ``if_none_exist`` return the match instead."""

    def read(self, resource_type: str, id: str) -> Stored:
        """Return the current version; NotFound or Gone."""

    def vread(self, resource_type: str, id: str, version_id: str) -> Stored:
        """Return one version; NotFound or Gone."""

    def update(self, resource: dict[str, Any], *, if_match: str | None = None) -> WriteResult:
        """Store a new version (or create with the given id); VersionConflict on a stale If-Match."""

    def delete(self, resource_type: str, id: str) -> None:
        """Delete (a new, deleted version); deleting a missing or deleted resource is a no-op."""

    def search(self, resource_type: str, params: Params = (), *, strict: bool = False) -> SearchResult:
        """Return the resources matching FHIR search parameters."""

    def history(self, resource_type: str | None = None, id: str | None = None, *,
                since: str | None = None, count: int = 100,
                cursor: str | None = None) -> HistoryResult:
        """Return history entries (newest first) of one resource, a type, or the whole store."""

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Process a transaction or batch Bundle; return the response Bundle."""


def every_match(store: Store, resource_type: str,
                params: Iterable[tuple[str, str]] = ()) -> list[Stored]:
    """Return every match of a search (resources left unparsed until used).

    A store with a ``search_every`` method (the SQL store) answers in one query; any other
    (a remote server, a scope-guarded store) is paged through with ``search``.
    """
    every = getattr(store, "search_every", None)
    if every is not None:
        return list(every(resource_type, params))
    base = [p for p in params if p[0] not in ("_count", "_offset", "_total", "_cursor")]
    out: list[Stored] = []
    offset = 0
    while True:
        page = store.search(resource_type, [*base, ("_count", "1000"), ("_offset", str(offset)),
                                            ("_total", "none")])
        out.extend(page.matches)
        if not page.has_more or not page.matches:
            return out
        offset += len(page.matches)


def iter_all(store: Store, resource_type: str, params: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """Return every match of a search, parsed."""
    return [stored.resource for stored in every_match(store, resource_type, params)]
