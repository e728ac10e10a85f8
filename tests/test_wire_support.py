"""The wire tests' trace (tests/wire_support.py) sees this thread's connections only, and
none of them writes to the trace file's descriptor after the block.

A connection of another thread traced in the block (the statistics keeper's, the audit
flusher's) went on writing its libpq trace after the trace file was closed, to whatever
took the descriptor next: a new connection's socket there gets text PostgreSQL reads as a
message of 150 MB, and both sides wait for ever (bench/bench_create_cost.py hung so).
Here files take the descriptors the block let go of, and nothing may be written to them:
the keeper is held in its ANALYZE past the block (a lock on ``resource``), or a
connection this thread checked out in a block that failed is used after it.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from hw_fhir.store import SqlStore, open_store

from wire_support import Wire, keeper_held, lowest_free_fd



@contextmanager
def _descriptors_from(first: int) -> Iterator[dict[int, Path]]:
    """Files holding every free descriptor from ``first`` on (a few): where a trace still
    written to a closed trace file's descriptor lands."""
    folder = Path(tempfile.mkdtemp())
    held: dict[int, Path] = {}
    try:
        while not held or max(held) < first + 4:
            path = folder / f"f{len(held)}"
            held[os.open(path, os.O_WRONLY | os.O_CREAT)] = path
        yield held
    finally:
        for fd in held:
            os.close(fd)


def _written(held: dict[int, Path]) -> dict[int, str]:
    return {fd: path.read_text() for fd, path in held.items() if path.stat().st_size}


def _run(store: SqlStore, sql: str) -> None:
    with store.engine.connect() as conn:
        conn.execute(text(sql))


def test_statements_of_other_threads_are_not_seen(sql_store: SqlStore) -> None:
    """Another thread takes the connection this thread just returned to the pool."""
    with Wire(sql_store).watch() as wire:
        _run(sql_store, "SELECT 'this thread'")
        other = threading.Thread(target=_run, args=(sql_store, "SELECT 'other thread'"))
        other.start()
        other.join(30)
        _run(sql_store, "SELECT 'this thread again'")
    assert not other.is_alive()
    assert wire.count(r"SELECT 'this thread'$") == 1, wire.statements
    assert wire.count(r"SELECT 'this thread again'$") == 1, wire.statements
    assert wire.count(r"SELECT 'other thread'$") == 0, wire.statements


@pytest.mark.postgres
def test_the_keepers_connection_is_not_traced_and_writes_no_trace_after_the_block(
        pg_url: str) -> None:
    with keeper_held(pg_url) as kept:
        first_free = lowest_free_fd()
        with Wire(kept.store).watch() as wire:
            kept.create_and_wait(1)  # the keeper checks out a connection of the block's
        with _descriptors_from(first_free) as held:
            kept.release()
            assert _written(held) == {}, "a connection traced in the block wrote after it"
        assert not any("ANALYZE" in s for s in wire.statements), wire.statements
        assert wire.count(r"BEGIN") == 1 and wire.round_trips == 2, wire.statements


@pytest.mark.postgres
def test_a_connection_checked_out_when_the_block_fails_is_traced_no_more(pg_url: str) -> None:
    store: SqlStore = open_store(pg_url)
    try:
        first_free = lowest_free_fd()
        with pytest.raises(RuntimeError), Wire(store).watch():
            raw = store.engine.raw_connection()  # checked out in the block, traced
            raw.cursor().execute("SELECT 'in the block'")
            raise RuntimeError("the block failed with the connection checked out")
        with _descriptors_from(first_free) as held:
            cursor = raw.cursor()
            cursor.execute("SELECT 'after the block'")
            assert cursor.fetchone() == ("after the block",)
            raw.close()
            assert _written(held) == {}, "a connection traced in the block wrote after it"
    finally:
        store.dispose()
