"""Definitions by canonical ``url|version`` served from memory until one of their type is written.

Scoring looks up the Questionnaire of every QuestionnaireResponse written, by its
canonical; as a search that is several queries per response for a resource that almost
never changes. :class:`CanonicalCache` (``SqlStore.canonicals``) keeps the matches of
each ``(type, url, version)`` and checks before every answer, with one indexed query,
whether any resource of that type was written since (the newest ``resource_version.seq``
of the type and how many versions it has: a create, update or delete by any process
changes them, also one that commits after a later-numbered write); if so it forgets
everything of that type and searches again. Answers are the stored JSON text, parsed
by each caller, so no caller can change what another one gets.

Scoring one response looks up its Questionnaire and then the ValueSets and CodeSystems
its answers name: :meth:`CanonicalCache.checked_once` makes those finds share one
check, of every definition type at once (one query instead of one per type).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import bindparam, func, select

from . import schema as S
from .base import Stored

__all__ = ["CanonicalCache"]

_v = S.resource_version
#: The newest write of a type and the number of versions (from the ``(res_type, seq)`` index).
_NEWEST_WRITE = (select(func.max(_v.c.seq), func.count())
                 .where(_v.c.res_type == bindparam("rtype")))
#: The same for every definition type at once (types with no version have no row).
_NEWEST_WRITES = (select(_v.c.res_type, func.max(_v.c.seq), func.count())
                  .where(_v.c.res_type.in_(bindparam("rtypes", expanding=True)))
                  .group_by(_v.c.res_type))
#: The types :meth:`CanonicalCache.checked_once` checks together (what scoring looks up).
DEFINITION_TYPES = ("Questionnaire", "ValueSet", "CodeSystem")
#: Within :meth:`CanonicalCache.checked_once`: the marks read, by cache (``id``) and type.
_CHECKED: ContextVar[dict[tuple[int, str], Any] | None] = ContextVar("hw_fhir_canonicals",
                                                                     default=None)
#: Canonicals kept per type at most (a clinic has tens to hundreds of Questionnaires).
MAX_ENTRIES = 4096


class CanonicalCache:
    """Search results by ``(type, url, version)``, valid while no resource of the type is written."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._marks: dict[str, Any] = {}
        self._found: dict[tuple[str, str, str | None], list[Stored]] = {}

    def find(self, resource_type: str, url: str, version: str | None = None) -> list[Stored]:
        """Return the current resources of a type with this ``url`` (and ``version``)."""
        mark = self._newest_write(resource_type)
        key = (resource_type, url, version)
        with self._lock:
            if self._marks.get(resource_type) != mark:
                for old in [k for k in self._found if k[0] == resource_type]:
                    del self._found[old]
                self._marks[resource_type] = mark
            hit = self._found.get(key)
        if hit is None:
            params = [("url", url)] + ([("version", version)] if version else [])
            hit = [Stored(s.resource_type, s.id, s.version_id, s.last_updated, raw=s.raw)
                   for s in self._store.search_every(resource_type, params)]
            with self._lock:
                # kept only if nothing of the type was written while we searched
                if self._marks.get(resource_type) == mark and len(self._found) < MAX_ENTRIES:
                    self._found[key] = hit
        return [Stored(s.resource_type, s.id, s.version_id, s.last_updated, raw=s.raw)
                for s in hit]

    @contextmanager
    def checked_once(self) -> Iterator[None]:
        """Within the block, check for writes once, of every definition type together.

        The first :meth:`find` reads the marks of all :data:`DEFINITION_TYPES` (and its
        own type) in one query; later finds in the block use them. For a short block that
        writes no definition itself (scoring one response): a definition written by
        anyone during the block may be seen only by the next block, as if it had been
        written just after the block's first find.
        """
        token = _CHECKED.set({})
        try:
            yield
        finally:
            _CHECKED.reset(token)

    def _newest_write(self, resource_type: str) -> Any:
        checked = _CHECKED.get()
        if checked is None:
            with self._store.read_one() as conn:  # one statement: no BEGIN, no ROLLBACK
                return tuple(conn.execute(_NEWEST_WRITE, {"rtype": resource_type}).one())
        key = (id(self), resource_type)
        if key not in checked:
            types = sorted({*DEFINITION_TYPES, resource_type})
            with self._store.read_one() as conn:
                found = {row[0]: (row[1], row[2])
                         for row in conn.execute(_NEWEST_WRITES, {"rtypes": types})}
            for rtype in types:  # as _NEWEST_WRITE answers for a type with no version
                checked[(id(self), rtype)] = found.get(rtype, (None, 0))
        return checked[key]
