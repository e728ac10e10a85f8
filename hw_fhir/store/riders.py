"""Rows that ride with the next write transaction of this context (a write's audit record).

A request that writes (a /fhir create, update, delete or transaction) must leave an
audit record of that write. Written in a transaction of its own after the response,
it costs a second BEGIN/COMMIT — on PostgreSQL more round trips than the write itself —
and a crash between the two commits would lose it. Instead the request sets a
:class:`Rider` for its context (:func:`ride`); the next unit of work of
:class:`~hw_fhir.store.sql.SqlStore` that commits writes asks it for its rows with
the results written (:meth:`Rider.rows`), inserts them before the commit (on
PostgreSQL in the same pipeline as the resource rows) and, once committed, tells
the rider (:meth:`Rider.committed`). Write and record commit together or not at all.

A rider is used once: after :meth:`Rider.committed` :func:`current` no longer returns
it, so the request's later writes (scores recorded after the response, say) do not
repeat the record. A transaction that rolls back leaves the rider unused, and the
request records its failure the usual way. :func:`suspended` hides the rider from a
block (a batch Bundle, whose entries commit one by one). ``contextvars`` only: no
web framework here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from sqlalchemy import Table

from .base import WriteResult

__all__ = ["Rider", "ride", "clear", "current", "suspended", "Rows"]

#: ``(table, rows)`` pairs, each table's rows with the same keys.
Rows = Sequence[tuple[Table, list[dict[str, Any]]]]


class Rider:
    """Rows for the next committed write transaction of this context; subclass :meth:`rows`."""

    def __init__(self) -> None:
        #: True once a transaction committed this rider's rows
        self.done = False

    def rows(self, written: Sequence[WriteResult]) -> Rows:
        """The rows to insert with ``written`` (every result of the transaction, deletions
        as results with ``stored.deleted``); empty: nothing rides (the caller records it
        another way). Must not raise: a failure here would roll the write back."""
        return ()

    def committed(self) -> None:
        """Called after the transaction carrying :meth:`rows` committed."""
        self.done = True


_RIDER: ContextVar[Rider | None] = ContextVar("hw_fhir_rider", default=None)


def ride(rider: Rider) -> Token[Rider | None]:
    """Let ``rider`` ride with this context's next committed write transaction."""
    return _RIDER.set(rider)


def clear() -> None:
    """Forget this context's rider (the end of a request)."""
    _RIDER.set(None)


def current() -> Rider | None:
    """This context's rider, unless it rode already."""
    rider = _RIDER.get()
    return None if rider is None or rider.done else rider


@contextmanager
def suspended() -> Iterator[None]:
    """No rider inside the block (writes that each commit on their own, e.g. a batch)."""
    token = _RIDER.set(None)
    try:
        yield
    finally:
        _RIDER.reset(token)
