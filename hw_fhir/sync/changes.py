"""The store's write sequence as a change feed that never skips a committed write.

Every write adds a ``resource_version`` row whose ``seq`` grows store-wide. A
consumer (the outbox feeder, a subscription) remembers the last ``seq`` it has
read and reads on from there. That is only safe up to a *horizon* below which
no write can still commit: on PostgreSQL a transaction may take ``seq`` 10,
another ``seq`` 11 and commit first. :func:`barrier` finds that horizon by
waiting for the writes in flight (``LOCK TABLE … IN SHARE MODE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite, where writers are serialised anyway) and reading
``max(seq)`` and the clock while no write can start. Consumers read
``seq <= horizon`` only, so a write that commits late is simply read on the
next cycle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Collection

import orjson
from sqlalchemy import Connection, func, insert, select, text, update

from ..store import schema as S
from ..store.sql import SqlStore, now_instant
from .tables import sync_cursor

__all__ = ["Change", "Horizon", "barrier", "read_changes", "previous_version", "get_cursor",
           "set_cursor", "for_update"]


@dataclass(frozen=True)
class Horizon:
    """A point of the write sequence: every write with ``seq <= seq`` has committed.

    ``instant`` was read at the same moment: writes after it get a later ``lastUpdated``.
    """

    seq: int
    instant: str


@dataclass(frozen=True)
class Change:
    """One committed write (a version row)."""

    seq: int
    resource_type: str
    id: str
    version_id: int
    last_updated: str
    method: str
    deleted: bool
    raw: str | None = field(default=None, repr=False)

    @property
    def resource(self) -> dict[str, Any]:
        """The written version as a dict (empty for a deletion)."""
        return orjson.loads(self.raw) if self.raw else {}

    @property
    def reference(self) -> str:
        """``Type/id``."""
        return f"{self.resource_type}/{self.id}"


def barrier(store: SqlStore, *, lock_timeout: float = 10.0) -> Horizon:
    """Wait for the writes in flight and return the horizon of the write sequence."""
    v = S.resource_version
    with store.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'"))
            # writers touch ``resource`` before ``resource_version``: lock in the same order
            conn.execute(text("LOCK TABLE resource, resource_version IN SHARE MODE"))
        top = conn.execute(select(func.max(v.c.seq))).scalar()
        instant = now_instant()
    return Horizon(int(top or 0), instant)


def read_changes(conn: Connection, *, after: int, upto: int, types: Collection[str] | None = None,
                 limit: int = 500) -> list[Change]:
    """Return the writes with ``after < seq <= upto`` (of ``types``), oldest first."""
    v = S.resource_version
    stmt = select(v).where(v.c.seq > after, v.c.seq <= upto)
    if types is not None:
        stmt = stmt.where(v.c.res_type.in_(list(types)))
    rows = conn.execute(stmt.order_by(v.c.seq).limit(limit)).all()
    return [Change(int(r.seq), r.res_type, r.res_id, int(r.version_id), r.last_updated, r.method,
                   bool(r.deleted), r.content) for r in rows]


def previous_version(conn: Connection, change: Change) -> dict[str, Any] | None:
    """Return the version before ``change`` (None when it was created, or followed a deletion)."""
    if change.version_id <= 1:
        return None
    v = S.resource_version
    row = conn.execute(select(v.c.content, v.c.deleted).where(
        v.c.res_type == change.resource_type, v.c.res_id == change.id,
        v.c.version_id == change.version_id - 1)).first()
    if row is None or row.deleted or not row.content:
        return None
    return orjson.loads(row.content)  # type: ignore[no-any-return]


def for_update(stmt: Any, dialect: str, *, skip_locked: bool = False) -> Any:
    """Add ``FOR UPDATE [SKIP LOCKED]`` on PostgreSQL (SQLite serialises writers itself)."""
    if dialect == "postgresql":
        return stmt.with_for_update(skip_locked=skip_locked)
    return stmt


def get_cursor(conn: Connection, name: str, dialect: str) -> int | None:
    """Return (and lock, within the transaction) a consumer's cursor; None when it has none."""
    stmt = for_update(select(sync_cursor.c.seq).where(sync_cursor.c.name == name), dialect)
    value = conn.execute(stmt).scalar()
    return None if value is None else int(value)


def set_cursor(conn: Connection, name: str, seq: int, *, exists: bool) -> None:
    """Store a consumer's cursor."""
    if exists:
        conn.execute(update(sync_cursor).where(sync_cursor.c.name == name)
                     .values(seq=seq, updated_at=time.time()))
    else:
        conn.execute(insert(sync_cursor).values(name=name, seq=seq, updated_at=time.time()))
