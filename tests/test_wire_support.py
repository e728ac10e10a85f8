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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from hw_fhir.store import SqlStore, open_store

from conftest import PG_ADMIN_URL
from wire_support import Wire, libpq_url, lowest_free_fd, observation



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
    store: SqlStore = open_store(pg_url)
    keeper = store.statistics
    keeper.check_every, keeper.min_rows = 1, 0  # every create starts a check in the background
    blocker = psycopg.connect(libpq_url(pg_url))
    watcher = psycopg.connect(libpq_url(PG_ADMIN_URL), autocommit=True)
    try:
        store.create(observation(0))  # the tables exist and hold a row
        keeper.join(30)
        # ANALYZE takes SHARE UPDATE EXCLUSIVE: the keeper's next check waits for the blocker
        blocker.execute("LOCK TABLE resource IN SHARE UPDATE EXCLUSIVE MODE")

        def keeper_waiting() -> bool:
            return watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'ANALYZE%%' AND pid <> %s",
                [blocker.info.backend_pid]).fetchone()[0] > 0  # type: ignore[index]

        first_free = lowest_free_fd()
        with Wire(store).watch() as wire:
            store.create(observation(1))  # the keeper checks out a connection of the block's
            deadline = time.monotonic() + 30
            while not keeper_waiting():
                assert time.monotonic() < deadline, "the statistics check did not start"
                time.sleep(0.02)
        with _descriptors_from(first_free) as held:
            blocker.rollback()  # the keeper's ANALYZE goes on, on its connection
            keeper.join(30)
            assert not keeper._thread.is_alive()
            assert _written(held) == {}, "a connection traced in the block wrote after it"
        assert not any("ANALYZE" in s for s in wire.statements), wire.statements
        assert wire.count(r"BEGIN") == 1 and wire.round_trips == 2, wire.statements
    finally:
        blocker.close()
        watcher.close()
        keeper.join(30)
        store.dispose()


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
