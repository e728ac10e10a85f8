"""The unit of work of a SqlStore: the writes of one database transaction, and its commit.

Writes are recorded in a :class:`~hw_fhir.store.writes.WriteBuffer` and sent in
batches: before a read or search in the transaction, when ``conn`` is used, and
before the commit. A failure anywhere rolls back everything.

At the commit the context's rider (:mod:`hw_fhir.store.riders`, a request's audit
record) adds its rows to the last batch, so they commit with the writes or not at
all; on PostgreSQL (psycopg) that batch ends with the ``COMMIT`` itself, one round
trip for the rows and the commit (see :meth:`WriteBuffer.finish`).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlalchemy import Connection

from ..errors import InvalidInput, UnitOfWorkClosed, VersionConflict
from . import riders
from .base import Params, SearchResult, Stored, WriteResult, as_params
from .maintenance import StatisticsKeeper
from .query import Query, parse_query
from .writes import WriteBuffer

__all__ = ["StoreOps", "UnitOfWork", "parse_etag"]


@dataclass(frozen=True)
class StoreOps:
    """What a unit needs of its store: transactions, the clock, and reads on a connection."""

    begin: Callable[[], AbstractContextManager[Connection]]
    instant: Callable[[], str]
    statistics: StatisticsKeeper
    base_url: str | None
    read: Callable[[Connection, str, str], Stored]
    search: Callable[[Connection, Query], SearchResult]
    match: Callable[[Connection, str, str], Stored | None]


class UnitOfWork:
    """Creates, updates and deletes bound to one open write transaction (a ``with`` block)."""

    def __init__(self, ops: StoreOps) -> None:
        self._ops = ops
        self._conn: Connection | None = None
        self._writes: WriteBuffer | None = None
        self._cm: Any = None

    def __enter__(self) -> "UnitOfWork":
        self._cm = self._ops.begin()
        self._conn = self._cm.__enter__()
        self._writes = WriteBuffer(self._conn, self._ops.instant)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Any:
        rider = None
        if exc_type is None:
            try:
                buffer = self._buffer
                rider = riders.current() if buffer.results else None
                rows = rider.rows(buffer.results) if rider is not None else ()
                if not rows:
                    rider = None
                buffer.finish(rows)
            except BaseException:
                if not self._cm.__exit__(*sys.exc_info()):
                    raise
                return False
        suppressed = self._cm.__exit__(exc_type, exc, tb)
        if exc_type is None:
            if rider is not None:
                rider.committed()
            if self._writes is not None and self._writes.written:
                self._ops.statistics.wrote(self._writes.written)  # committed: count the rows
        return suppressed

    @property
    def _buffer(self) -> WriteBuffer:
        if self._writes is None:
            raise UnitOfWorkClosed("the unit of work is not open (use it in a with block)")
        return self._writes

    @property
    def conn(self) -> Connection:
        """The transaction's connection, every recorded write sent first."""
        self._buffer.flush()
        assert self._conn is not None
        return self._conn

    def preload(self, refs: Iterable[tuple[str, str]]) -> None:
        """Look up the current versions of resources about to be written, in one query per type."""
        self._buffer.load(refs)

    def create(self, data: dict[str, Any], *, if_none_exist: str | None = None,
               id: str | None = None) -> WriteResult:
        if if_none_exist:
            existing = self.match(data["resourceType"], if_none_exist)
            if existing is not None:
                return WriteResult(existing, created=False)
        return self._buffer.put(dict(data, id=id or str(uuid.uuid4())), "POST", new=True)

    def update(self, data: dict[str, Any], *, if_match: str | None = None) -> WriteResult:
        rtype, id = data["resourceType"], data["id"]
        current = self._buffer.state((rtype, id))
        expected = parse_etag(if_match) if if_match else None
        if current is None:
            if expected is not None:
                raise VersionConflict(f"{rtype}/{id} does not exist (If-Match {if_match})")
        elif expected is not None and expected != current[0]:
            raise VersionConflict(f"{rtype}/{id} is at version {current[0]}, not {expected}",
                                  current_version=str(current[0]))
        return self._buffer.put(data, "PUT")

    def delete(self, resource_type: str, id: str) -> None:
        self._buffer.delete((resource_type, id))

    def read(self, resource_type: str, id: str) -> Stored:
        return self._ops.read(self.conn, resource_type, id)

    def search(self, resource_type: str, params: Params) -> SearchResult:
        q = parse_query(resource_type, as_params(params), base_url=self._ops.base_url)
        return self._ops.search(self.conn, q)

    def match(self, resource_type: str, criteria: str) -> Stored | None:
        return self._ops.match(self.conn, resource_type, criteria)


def parse_etag(value: str) -> int:
    """The version of an ``If-Match`` ETag (``W/"3"``, ``"3"`` or ``3``)."""
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    try:
        return int(v)
    except ValueError:
        raise InvalidInput(f"If-Match {value!r} is not a version ETag such as W/\"3\"") from None
