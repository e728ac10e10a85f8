"""Rate limits for guessing: failed link openings and wrong birth dates, counted in the database.

Failures are rows of ``patient_attempt`` (migration ``0005``): a kind (``link``,
``dob``...), the SHA-256 of what is limited (a client address, a link token) and
when. A key is blocked once it has ``limit`` failures inside the last ``window``
seconds; counting in the shared database makes the limit hold across processes and
machines. No web framework here: the views pass the keys.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)

__all__ = ["Limit", "RateLimiter", "patient_attempt"]

_metadata = MetaData()

patient_attempt = Table(
    "patient_attempt",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("at", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` failures of one kind per key within ``window`` seconds."""

    kind: str
    limit: int
    window: int


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class RateLimiter:
    """Count failures per (kind, key) in the store's database and say when a key is blocked."""

    def __init__(self, store: Any, clock: Any = time.time) -> None:
        self.store = store
        self.clock = clock

    def failures(self, limit: Limit, key: str) -> int:
        """Return how many failures ``key`` has inside the limit's window."""
        since = int(self.clock()) - limit.window
        t = patient_attempt
        with self.store.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(t)
                    .where(t.c.kind == limit.kind, t.c.key_hash == _hash(key), t.c.at > since)
                ).scalar_one()
            )

    def blocked(self, limit: Limit, key: str) -> bool:
        """Return whether ``key`` has used up its failures."""
        return self.failures(limit, key) >= limit.limit

    def fail(self, limit: Limit, key: str) -> int:
        """Record one failure; return the failures now inside the window."""
        now = int(self.clock())
        with self.store.begin() as conn:
            conn.execute(
                insert(patient_attempt).values(kind=limit.kind, key_hash=_hash(key), at=now)
            )
            conn.execute(delete(patient_attempt).where(patient_attempt.c.at < now - 7 * 86400))
        return self.failures(limit, key)

    def clear(self, limit: Limit, key: str) -> None:
        """Forget a key's failures (after a success)."""
        with self.store.begin() as conn:
            conn.execute(
                delete(patient_attempt).where(
                    patient_attempt.c.kind == limit.kind, patient_attempt.c.key_hash == _hash(key)
                )
            )
