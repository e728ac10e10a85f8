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
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import bindparam, func, select

from . import schema as S
from .base import Stored

__all__ = ["CanonicalCache"]

_v = S.resource_version
#: The newest write of a type and the number of versions (from the ``(res_type, seq)`` index).
_NEWEST_WRITE = (select(func.max(_v.c.seq), func.count())
                 .where(_v.c.res_type == bindparam("rtype")))
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

    def _newest_write(self, resource_type: str) -> Any:
        with self._store.read_one() as conn:  # one statement: no BEGIN, no ROLLBACK
            return tuple(conn.execute(_NEWEST_WRITE, {"rtype": resource_type}).one())
