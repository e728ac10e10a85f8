"""The SQLAlchemy engine of a SqlStore: SQLite's pragmas and BEGINs, PostgreSQL's pool.

SQLite: WAL, a page cache of :data:`SQLITE_CACHE_KIB` per connection within
:data:`SQLITE_HEAP_LIMIT_KIB` of SQLite memory per process, and BEGIN emitted by the store
itself (``BEGIN IMMEDIATE`` for a write, nothing for a one-statement read, see
:meth:`~hw_fhir.store.sql.SqlStore.read_one`). PostgreSQL: a pool whose connections
are pinged only after they sat idle (:data:`PING_AFTER_IDLE`), not at every checkout.

SQLite's memory is the process's own (PostgreSQL's caches live in the server): every
pooled connection keeps a page cache of its own, filled by whatever it read, and a sort
buffers up to that cache's size before it spills to a temporary file. With 64 MB per
connection the largest server worker (four request threads, a connection each) peaked at
145 MB with 1 000 Observations on file, 288 MB with 250 000 and 437 MB with 1 000 000,
where PostgreSQL's stayed flat; with the settings below 146 MB and 186 MB
(``bench/bench_peers.py --memory``):

* :data:`SQLITE_CACHE_KIB` per connection, enough to hold a small store whole (1 000
  Observations and the benchmarks' writes: about 10 MB), so no connection alone takes
  the whole budget;
* :data:`SQLITE_HEAP_LIMIT_KIB`, SQLite's soft heap limit (``PRAGMA soft_heap_limit``,
  one for the whole process): above it a connection's cache reuses its least recently
  used pages instead of growing, and a sort spills sooner, so the page caches of all
  connections together stay near that size however many the pool opens;
* the pool hands out the connection returned last (``pool_use_lifo``): one client's
  requests, one after the other, reuse one connection and its warm cache, where a
  first-in-first-out pool took turns over all of them, each reading the same pages
  from the OS into a cache of its own (three times the reads at 1 000 Observations).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

__all__ = ["PING_AFTER_IDLE", "SQLITE_CACHE_KIB", "SQLITE_HEAP_LIMIT_KIB", "make_engine",
           "sqlite_first"]

#: SQLite page cache per connection, KiB (``PRAGMA cache_size``; SQLite's default is 2 000).
SQLITE_CACHE_KIB = 16 * 1024
#: SQLite memory per process, KiB: the soft heap limit every connection sets (it is one
#: value for the whole process, the same from every store).
SQLITE_HEAP_LIMIT_KIB = 32 * 1024


def make_engine(url: str, *, echo: bool = False, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        memory = ":memory:" in url or url in ("sqlite://", "sqlite+pysqlite://")
        if not memory:  # a file: pooled connections (QueuePool), the warmest one first
            kwargs.setdefault("pool_use_lifo", True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30,
                                                             "check_same_thread": False},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let us emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # pages kept per connection, and all connections of the process together
            # (see the module's docstring): bounded, whatever the size of the store
            cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cur.execute(f"PRAGMA soft_heap_limit={SQLITE_HEAP_LIMIT_KIB * 1024}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.info.get("hw_autocommit"):  # one read statement: it is atomic by itself
                return
            if conn.info.get("hw_write"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:  # a read's BEGIN (deferred) takes no lock and cannot wait: no statement
                conn.connection.driver_connection.execute("BEGIN")  # set-up of SQLAlchemy's

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, echo=echo, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_after_idle(engine)
    return engine


#: Seconds a pooled connection may sit unused before its next checkout pings the server.
PING_AFTER_IDLE = 10.0


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only when it was idle for ``PING_AFTER_IDLE``.

    ``pool_pre_ping`` pings at every checkout: one more round trip for every read and
    write, several per request. A connection in steady use was just seen working; one
    that sat idle (a restarted server, a firewall's idle timeout) is pinged first and,
    when the ping fails, replaced before the caller sees it (the pool retries the
    checkout on ``DisconnectionError``). A connection that breaks while in use is
    invalidated with the rest of the pool by SQLAlchemy's disconnect handling.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["hw_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("hw_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return  # fresh, or in use moments ago
        try:  # the dialect's ping leaves no transaction open (psycopg: in autocommit)
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure: replace the connection
            raise DisconnectionError(f"idle connection failed its ping: {exc}") from exc



def sqlite_first(engine: Engine, sql: str, params: tuple[Any, ...]) -> Any:
    """The first row (or None) of one SQL statement run by the pooled sqlite3 connection itself.

    An in-process SQLite lookup by key answers in microseconds; SQLAlchemy's statement work
    costs several times that. False when sqlite3 raised: the caller runs its statement
    through SQLAlchemy, which raises the error wrapped.
    """
    raw = engine.raw_connection()
    try:
        return raw.driver_connection.execute(sql, params).fetchone()
    except sqlite3.Error:
        return False
    finally:
        raw.close()
