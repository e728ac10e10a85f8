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
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from wire_support import keeper_held, lowest_free_fd

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
    held: list[tuple[int, Path]] = []
    with keeper_held(pg_url) as kept:
        try:
            first_free = lowest_free_fd()
            trips = bench._round_trips(kept.store, lambda: kept.create_and_wait(1), runs=3)
            # every descriptor the count may have used for its trace, now files of this test
            folder = Path(tempfile.mkdtemp())
            while not held or held[-1][0] < first_free + 4:
                path = folder / f"f{len(held)}"
                held.append((os.open(path, os.O_WRONLY | os.O_CREAT), path))
            kept.release()
            written = {fd: path.read_text() for fd, path in held if path.stat().st_size}
            assert written == {}, "a connection traced by the count wrote after it ended"
            # a create: BEGIN with the writers' lock, then its rows and COMMIT in one pipeline
            assert trips == 2, trips
        finally:
            for fd, _ in held:
                os.close(fd)
