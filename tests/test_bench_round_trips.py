"""bench/bench_create_cost.py's round-trip count (libpq's protocol trace) on PostgreSQL.

The bench once hung under load: the statistics keeper's connection, traced by the count,
went on writing its trace after the trace file was closed, to whatever took the file's
descriptor next; a new connection's socket there gets text PostgreSQL reads as a message
of 150 MB, and it waits for the rest (``ClientRead``) while the bench waits for its answer.
Here the keeper is held in its ANALYZE past the count (a lock on ``resource``), files take
the descriptors the count let go of, and nothing may be written to them.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hw_fhir.store import SqlStore, open_store

from conftest import PG_ADMIN_URL, ROOT
from wire_support import libpq_url, lowest_free_fd, observation

pytestmark = pytest.mark.postgres


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_create_cost",
                                                  ROOT / "bench" / "bench_create_cost.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_trace_reaches_a_closed_trace_file_and_the_keeper_is_not_counted(
        pg_url: str) -> None:
    bench = _bench()
    store: SqlStore = open_store(pg_url)
    keeper = store.statistics
    keeper.check_every, keeper.min_rows = 1, 0  # every create starts a check in the background
    blocker = psycopg.connect(libpq_url(pg_url))
    watcher = psycopg.connect(libpq_url(PG_ADMIN_URL), autocommit=True)
    held: list[tuple[int, Path]] = []
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

        def one() -> None:
            store.create(observation(1))
            deadline = time.monotonic() + 30
            while not keeper_waiting():  # the keeper's check is under way, on a connection
                assert time.monotonic() < deadline, "the statistics check did not start"
                time.sleep(0.02)

        first_free = lowest_free_fd()
        trips = bench._round_trips(store, one, runs=3)
        # every descriptor the count may have used for its trace, now files of this test
        folder = Path(tempfile.mkdtemp())
        while not held or held[-1][0] < first_free + 4:
            path = folder / f"f{len(held)}"
            held.append((os.open(path, os.O_WRONLY | os.O_CREAT), path))
        blocker.rollback()  # the keeper's ANALYZE goes on, on its connection
        keeper.join(30)
        assert not keeper._thread.is_alive()
        written = {fd: path.read_text() for fd, path in held if path.stat().st_size}
        assert written == {}, "a connection traced by the count wrote after it ended"
        # a create: BEGIN with the writers' lock, then its rows and COMMIT in one pipeline
        assert trips == 2, trips
    finally:
        for fd, _ in held:
            os.close(fd)
        blocker.close()
        watcher.close()
        keeper.join(30)
        store.dispose()
