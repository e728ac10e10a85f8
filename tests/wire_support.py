"""What one thread's pooled connections send to the database, as the driver sees it.

libpq's protocol trace on PostgreSQL (:func:`libpq_trace`), SQLite's trace callback, and
:class:`Wire`, which counts statements and round trips with either. Only the connections
the calling thread checks out of the engine's pool in the block are traced, each from
its checkout (before the store's own checkout listener, so an idle connection's ping is
seen) to its checkin; one still checked out when the block ends stops there.

Other threads use the same pool meanwhile: the statistics keeper's ANALYZE after large
writes (``hw-fhir-statistics``), the audit trail's flusher (``hw-fhir-audit``). Their
statements are no part of what a test counts, and a connection of theirs must never stay
traced past the block: libpq writes its trace to the trace file's descriptor *number*,
and once the file is closed that number goes to whatever opens next, such as a new
connection's socket. PostgreSQL then reads ``B\\t12\\t…`` as a Bind message of 150 MB
and waits for the rest (``ClientRead``) while the client waits for its answer: a hang
(bench/bench_create_cost.py hung so). Likewise a traced connection left in the pool
would be traced in whichever thread took it next. So every traced connection stops
before the trace file closes, exception or not.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from hw_fhir.audit import trail_for
from hw_fhir.store import SqlStore


@contextmanager
def traced_checkouts(engine: Engine, start: Callable[[Any], None],
                     stop: Callable[[Any], None]) -> Iterator[None]:
    """Call ``start`` on each DBAPI connection this thread checks out in the block and
    ``stop`` at its checkin, or at the block's end for one still checked out."""
    here = threading.get_ident()
    lock = threading.Lock()
    started: dict[int, Any] = {}  # by id: held here, so no id is reused meanwhile

    def checked_out(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if threading.get_ident() != here:
            return
        start(dbapi_connection)
        with lock:
            started[id(dbapi_connection)] = dbapi_connection

    def checked_in(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is None:  # invalidated: closed by the pool, nothing to stop
            return
        with lock:
            mine = started.pop(id(dbapi_connection), None)
        if mine is not None:
            stop(mine)

    # first among the checkout listeners: the store's ping of an idle connection is seen
    event.listen(engine, "checkout", checked_out, insert=True)
    event.listen(engine, "checkin", checked_in)
    try:
        yield
    finally:
        event.remove(engine, "checkout", checked_out)
        event.remove(engine, "checkin", checked_in)
        with lock:
            left = list(started.values())
            started.clear()
        for dbapi_connection in left:  # still checked out: an exception, a detached one
            stop(dbapi_connection)


@contextmanager
def libpq_trace(engine: Engine, path: Path, *, flags: int = 0) -> Iterator[Path]:
    """libpq's protocol trace, to ``path``, of the connections this thread checks out in
    the block (see :func:`traced_checkouts`); the file closes after the last one stopped.

    ``flags``: :class:`psycopg.pq.Trace` flags (none: each record starts with its time).
    """
    with open(path, "w") as sink:

        def start(dbapi_connection: Any) -> None:
            dbapi_connection.pgconn.trace(sink.fileno())
            if flags:
                dbapi_connection.pgconn.set_trace_flags(flags)

        with traced_checkouts(engine, start, _untrace):
            yield path


def _untrace(dbapi_connection: Any) -> None:
    """Stop a connection's trace (libpq flushes it); one closed meanwhile has none left."""
    if dbapi_connection.pgconn.pgconn_ptr is not None:
        dbapi_connection.pgconn.untrace()


def _untrace_sqlite(dbapi_connection: sqlite3.Connection) -> None:
    try:
        dbapi_connection.set_trace_callback(None)
    except sqlite3.ProgrammingError:  # closed meanwhile
        pass


class Wire:
    """The statements a store's connections send in this thread, as the driver sees them."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.statements: list[str] = []
        self.round_trips = 0
        self._trace = Path(tempfile.mkdtemp()) / "libpq.trace"

    @contextmanager
    def watch(self) -> Iterator["Wire"]:
        """Trace the connections this thread checks out in the block (see
        :func:`traced_checkouts`), all new: the pool is emptied first, so psycopg
        prepares no statement it ran before (a Parse and a Sync of their own)."""
        engine = self.store.engine
        trail_for(self.store).flush()
        engine.dispose()
        if self.store.dialect == "sqlite":
            with traced_checkouts(
                    engine, lambda c: c.set_trace_callback(self.statements.append),
                    _untrace_sqlite):
                yield self
            return
        import psycopg  # lazy: PostgreSQL only

        with libpq_trace(engine, self._trace, flags=psycopg.pq.Trace.SUPPRESS_TIMESTAMPS
                         | psycopg.pq.Trace.REGRESS_MODE):
            yield self
        self._read_trace()

    def _read_trace(self) -> None:
        last = ""
        for line in self._trace.read_text().splitlines():
            side = line[:1]
            if side == "B" and last == "F":
                self.round_trips += 1
            if side in "FB":
                last = side
            if side == "F":
                found = re.search(r'\t(?:Query|Parse)\t (?:"" )?"(.*)"', line)
                if found:
                    self.statements.append(found.group(1))

    def count(self, pattern: str) -> int:
        return sum(1 for s in self.statements if re.match(pattern, s.strip(), re.I))


def libpq_url(url: str) -> str:
    """libpq's form of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def observation(n: int) -> dict[str, Any]:
    """A small PHQ-9 total Observation of Patient/p1 with the value ``n``."""
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
            "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": n}}


def lowest_free_fd() -> int:
    """The file descriptor number the next open file (or socket) will get."""
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


class HeldKeeper:
    """A PostgreSQL store whose statistics keeper starts a check after every create, and whose
    next ANALYZE waits on a table lock until :meth:`release` (see :func:`keeper_held`)."""

    def __init__(self, store: Any, blocker: Any, watcher: Any) -> None:
        self.store, self.keeper = store, store.statistics
        self._blocker, self._watcher = blocker, watcher

    def waiting(self) -> bool:
        """Whether the keeper's ANALYZE is waiting for the lock."""
        return self._watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'ANALYZE%%' AND pid <> %s",
            [self._blocker.info.backend_pid]).fetchone()[0] > 0

    def create_and_wait(self, n: int) -> None:
        """Create an Observation, then wait until the keeper's check holds a connection."""
        self.store.create(observation(n))
        deadline = time.monotonic() + 30
        while not self.waiting():
            assert time.monotonic() < deadline, "the statistics check did not start"
            time.sleep(0.02)

    def release(self) -> None:
        """Let the keeper's ANALYZE go on, on its connection, and wait for it to end."""
        self._blocker.rollback()
        self.keeper.join(30)
        assert not self.keeper._thread.is_alive()


@contextmanager
def keeper_held(pg_url: str) -> Iterator[HeldKeeper]:
    """A store on ``pg_url`` with its keeper set up as :class:`HeldKeeper` describes."""
    import psycopg

    from conftest import PG_ADMIN_URL
    from hw_fhir.store import open_store

    store = open_store(pg_url)
    keeper = store.statistics
    keeper.check_every, keeper.min_rows = 1, 0  # every create starts a check in the background
    blocker = psycopg.connect(libpq_url(pg_url))
    watcher = psycopg.connect(libpq_url(PG_ADMIN_URL), autocommit=True)
    try:
        store.create(observation(0))  # the tables exist and hold a row
        keeper.join(30)
        # ANALYZE takes SHARE UPDATE EXCLUSIVE: the keeper's next check waits for the blocker
        blocker.execute("LOCK TABLE resource IN SHARE UPDATE EXCLUSIVE MODE")
        yield HeldKeeper(store, blocker, watcher)
    finally:
        blocker.close()
        watcher.close()
        keeper.join(30)
        store.dispose()
