"""SQLite's memory per process is bounded whatever the size of the store (issue 18).

Every pooled connection gets the bounded page cache and the process-wide soft heap limit;
connections scanning more data than that budget leave SQLite's heap near the limit (measured
with ``sqlite3_status64`` of the library Python's sqlite3 uses); the pool hands out the
connection returned last, so requests one after the other reuse one warm cache.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from hw_fhir.store import SqlStore, open_store
from hw_fhir.store.engine import SQLITE_CACHE_KIB, SQLITE_HEAP_LIMIT_KIB, make_engine

MIB = 1024 * 1024


def test_every_pooled_connection_gets_the_bounded_cache_and_heap_limit(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with ExitStack() as stack:  # six at once: the pool's five and one overflow
            conns = [stack.enter_context(engine.connect()) for _ in range(6)]
            for conn in conns:
                assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -SQLITE_CACHE_KIB
                assert (conn.exec_driver_sql("PRAGMA soft_heap_limit").scalar()
                        == SQLITE_HEAP_LIMIT_KIB * 1024)
                # the durability settings stay as they were
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        engine.dispose()
    # the bound holds for the process: 4 request threads and the background connections
    assert SQLITE_HEAP_LIMIT_KIB <= 64 * 1024
    assert SQLITE_CACHE_KIB <= SQLITE_HEAP_LIMIT_KIB


def _sqlite_memory_used() -> int | None:
    """Bytes SQLite has allocated in this process, or None when it cannot be read."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.sqlite3_libversion.restype = ctypes.c_char_p
    if sqlite3.sqlite_version != lib.sqlite3_libversion().decode():
        return None  # a copy of its own (Python's sqlite3 links another): other counters
    current, high = ctypes.c_int64(), ctypes.c_int64()
    if lib.sqlite3_status64(0, ctypes.byref(current), ctypes.byref(high), 0) != 0:
        return None  # SQLITE_STATUS_MEMORY_USED
    return current.value


def _counts_pythons_sqlite() -> bool:
    """Whether the counters ctypes reads see Python's sqlite3: an in-memory database of 4 MB
    (pages that cannot be evicted, whatever the heap limit) must show in them."""
    before = _sqlite_memory_used()
    memory = sqlite3.connect(":memory:")
    try:
        memory.execute("CREATE TABLE t (b BLOB)")
        memory.execute("INSERT INTO t SELECT randomblob(4000) FROM (WITH RECURSIVE n(i) AS "
                       "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) SELECT i FROM n)")
        during = _sqlite_memory_used()
    finally:
        memory.close()
    return before is not None and during is not None and during - before >= 2 * MIB


def test_connections_reading_more_than_the_budget_keep_sqlite_memory_bounded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    engine = make_engine(url)
    try:
        raw = engine.raw_connection()  # 48 MB of rows: more than the process's budget
        raw.driver_connection.execute("CREATE TABLE blob_rows (id INTEGER PRIMARY KEY, body BLOB)")
        raw.driver_connection.execute(
            "INSERT INTO blob_rows (body) SELECT randomblob(3000) FROM (WITH RECURSIVE n(i) AS "
            "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16000) SELECT i FROM n)")
        raw.close()
        engine.dispose()  # no connection holds pages of the writing
        before = _sqlite_memory_used()
        if before is None:
            pytest.skip("SQLite's memory status is not readable through ctypes here")
        with ExitStack() as stack:  # four connections (a worker's request threads) each read it all
            conns = [stack.enter_context(engine.connect()) for _ in range(4)]
            for conn in conns:
                total = conn.exec_driver_sql("SELECT sum(length(body)) FROM blob_rows").scalar()
                assert total == 16000 * 3000
            used = _sqlite_memory_used()
            assert used is not None
            if not _counts_pythons_sqlite():
                pytest.skip("ctypes reads another copy of SQLite than Python's sqlite3 uses")
            # (earlier tests in this process may have brought SQLite near its limit already:
            # then these reads add little, which is the bound holding, not a reason to skip)
            # without the bounds: 4 x 48 MB of cached pages (or 4 x 16 MB with the cache
            # bound alone); with them, about the soft limit
            assert used - before < SQLITE_HEAP_LIMIT_KIB * 1024 + 8 * MIB, used / MIB
    finally:
        engine.dispose()


def _connections_used(store: SqlStore, run: Any) -> set[int]:
    seen: set[int] = set()

    def checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        seen.add(id(dbapi_conn))

    event.listen(store.engine, "checkout", checkout)
    try:
        run()
    finally:
        event.remove(store.engine, "checkout", checkout)
    return seen


def test_requests_one_after_the_other_reuse_the_warm_connection(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    try:
        created = store.create({"resourceType": "Patient", "name": [{"family": "Warm"}]}).stored
        with ExitStack() as stack:  # a burst left three idle connections in the pool
            for _ in range(3):
                stack.enter_context(store.engine.connect())

        def one_after_the_other() -> None:
            for _ in range(6):
                assert store.read("Patient", created.id).id == created.id
                assert store.search("Patient", [("family", "warm")]).matches
                store.create({"resourceType": "Patient", "name": [{"family": "Next"}]})

        # first-in-first-out would take turns over the three (each with a cold cache)
        assert len(_connections_used(store, one_after_the_other)) == 1
    finally:
        store.dispose()
