"""Database upkeep: planner statistics kept fresh on PostgreSQL and SQLite.

PostgreSQL plans a search from table statistics. Right after a bulk load into new or
small tables those statistics say "almost no rows", and the planner may check a second
search parameter by scanning every index row of that parameter for each candidate
(seconds instead of milliseconds for a clinician with a few thousand Tasks; one
Task?patient&status over 20 000 fresh Tasks ran for minutes). Autovacuum refreshes them
when it gets round to it; hw-fhir does not wait for it:

* :func:`refresh_statistics` analyzes every store table at once (``hw-fhir load``);
* :class:`StatisticsKeeper` (``SqlStore.statistics``) counts the rows each committed
  write sent per table; every :data:`CHECK_EVERY` resources written it compares what changed since a
  table was last analyzed with the table's size and analyzes the tables where more than
  :data:`ANALYZE_FRACTION` of it (and at least :data:`ANALYZE_MIN_ROWS` rows) changed,
  in a background thread (the write that crossed the threshold does not wait for it).
  On PostgreSQL "what changed" is the larger of this process's count and the server's
  ``pg_stat_user_tables.n_mod_since_analyze`` (writes of every process); the worker runs
  the same check on a timer (:func:`hw_fhir.default_worker.statistics_upkeep`), so
  writes spread over many web processes are caught too.
* A resource type is one part of the tables: 20 000 new Tasks are 4 % of a store holding
  500 000 Observations, but PostgreSQL, last told there were no Tasks, estimated one and
  ran Task?patient&status as a nested loop over every Task (1.7 s). So the keeper also counts
  the resources written per type (``resource:<type>`` in what :meth:`StatisticsKeeper.wrote`
  gets) and analyzes every store table when a type changed by more than the fraction of
  its own rows as last analyzed (PostgreSQL's ``pg_stats`` most-common values of
  ``resource.res_type``; a type it does not list counts as none).
* SQLite gets the same treatment: ``ANALYZE`` of the changed tables with
  ``PRAGMA analysis_limit`` (what ``PRAGMA optimize`` runs, bounded in cost), so its
  planner knows the index sizes; the store still probes which filter matches the fewest
  rows before a search with several filters.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from . import schema as S

__all__ = ["ANALYZE_FRACTION", "ANALYZE_MIN_ROWS", "CHECK_EVERY", "StatisticsKeeper",
           "refresh_statistics"]

log = logging.getLogger("hw_fhir.store")

#: A table is analyzed again once this fraction of its rows changed since the last time.
ANALYZE_FRACTION = 0.1
#: ... and at least this many rows (small tables plan well either way).
ANALYZE_MIN_ROWS = 1000
#: Resources written by this process between two checks (one catalog query each).
CHECK_EVERY = 1000
#: Rows SQLite's ANALYZE reads per index at most (``PRAGMA analysis_limit``).
SQLITE_ANALYSIS_LIMIT = 1000


def store_tables() -> list[str]:
    """The tables the store writes and searches."""
    return [S.resource.name, S.resource_version.name,
            *(table.name for table in S.SP_TABLES.values())]


def refresh_statistics(store: Any) -> bool:
    """ANALYZE the resource and search-index tables on PostgreSQL; return whether it ran."""
    engine = getattr(store, "engine", None)
    if engine is None or engine.dialect.name != "postgresql":
        return False
    tables = [S.resource.name, *(table.name for table in S.SP_TABLES.values())]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in tables:
            conn.execute(text(f'ANALYZE "{name}"'))
    return True


class StatisticsKeeper:
    """Analyzes the store tables whose rows changed by more than a fraction since last time."""

    def __init__(self, engine: Engine, *, fraction: float = ANALYZE_FRACTION,
                 min_rows: int = ANALYZE_MIN_ROWS, check_every: int = CHECK_EVERY,
                 background: bool = True) -> None:
        self.engine = engine
        #: check and analyze in a thread of its own, so the write that crossed the
        #: threshold answers without waiting for ANALYZE
        self.background = background
        self._thread: threading.Thread | None = None
        self.fraction = fraction
        self.min_rows = min_rows
        self.check_every = check_every
        self._lock = threading.Lock()
        self._busy = threading.Lock()
        #: rows this process wrote per table since it last analyzed that table
        self._changed: Counter[str] = Counter()
        self._since_check = 0

    def wrote(self, rows: Mapping[str, int]) -> list[str]:
        """Count rows a committed write sent; check (and analyze) every ``check_every`` resources."""
        with self._lock:
            self._changed.update(rows)
            self._since_check += rows.get(S.resource_version.name, 0)
            due = self._since_check >= self.check_every
        if not due:
            return []
        if not self.background:
            return self.refresh()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self.refresh, name="hw-fhir-statistics",
                                            daemon=True)
            self._thread.start()
        return []

    def after_fork(self) -> None:
        """Start a forked child with locks of its own and no background check."""
        self._lock = threading.Lock()
        self._busy = threading.Lock()
        self._thread = None

    def join(self, timeout: float | None = None) -> None:
        """Wait for a check running in the background (tests, orderly shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def refresh(self) -> list[str]:
        """Analyze the tables changed by more than the fraction; return their names.

        Never raises (a failed ANALYZE is logged; the next check tries again); a check
        already running in another thread makes this one return at once.
        """
        if not self._busy.acquire(blocking=False):
            return []
        try:
            with self._lock:
                counted = dict(self._changed)
                self._since_check = 0
            try:
                stale = self._analyze_stale(counted)
            except SQLAlchemyError:  # locked, dropped under it, connection lost: try again later
                log.warning("refreshing planner statistics failed; trying again later",
                            exc_info=True)
                return []
            with self._lock:
                for name in stale:
                    self._changed[name] = max(0, self._changed[name] - counted.get(name, 0))
            return stale
        finally:
            self._busy.release()

    def _analyze_stale(self, counted: Mapping[str, int]) -> list[str]:
        postgres = self.engine.dialect.name == "postgresql"
        conn_options = {"isolation_level": "AUTOCOMMIT"} if postgres else {}
        with self.engine.connect().execution_options(**conn_options) as conn:
            if not postgres:  # one writer: BEGIN IMMEDIATE (see the store's begin listener)
                conn.info["hw_write"] = True
            try:
                sizes = _pg_sizes(conn) if postgres else _sqlite_sizes(conn)
                stale = []
                for name in store_tables():
                    rows, changed_there = sizes.get(name, (0, 0))
                    changed = max(changed_there, counted.get(name, 0))
                    if changed >= max(self.min_rows, self.fraction * rows):
                        stale.append(name)
                if postgres:
                    types = _pg_type_sizes(conn)
                    moved = [key for key, n in counted.items() if key.startswith("resource:")
                             and n >= max(self.min_rows, self.fraction * types.get(key[9:], 0))]
                    if moved:  # a type's rows changed a lot: its statistics in every table
                        stale = [*store_tables(), *moved]
                if stale and not postgres:
                    conn.exec_driver_sql(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
                for name in stale:
                    if not name.startswith("resource:"):
                        conn.exec_driver_sql(f'ANALYZE "{name}"')
                if not postgres:
                    conn.commit()
            finally:
                conn.info.pop("hw_write", None)
        if stale:
            log.info("refreshed planner statistics of %s", ", ".join(stale))
        return stale


def _pg_sizes(conn: Connection) -> dict[str, tuple[int, int]]:
    """Rows (as last analyzed) and rows changed since, per store table (PostgreSQL)."""
    names = store_tables()
    wanted = ", ".join(f"to_regclass(:t{n})" for n in range(len(names)))
    rows = conn.execute(text(
        "SELECT c.relname, greatest(c.reltuples, 0)::bigint, coalesce(s.n_mod_since_analyze, 0) "
        "FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
        f"WHERE c.oid IN ({wanted})"), {f"t{n}": name for n, name in enumerate(names)})
    return {name: (int(size), int(changed)) for name, size, changed in rows}


def _pg_type_sizes(conn: Connection) -> dict[str, float]:
    """Resources per type as PostgreSQL last analyzed them (most-common values x rows)."""
    row = conn.execute(text(
        "SELECT s.most_common_vals::text, s.most_common_freqs, greatest(c.reltuples, 0) "
        "FROM pg_stats s JOIN pg_class c ON c.oid = to_regclass(:t) "
        "WHERE s.schemaname = current_schema() AND s.tablename = :t AND s.attname = 'res_type'"),
        {"t": S.resource.name}).first()
    if row is None or row[0] is None:
        return {}
    values = [v.strip('"') for v in str(row[0]).strip("{}").split(",")]
    return {v: float(f) * float(row[2]) for v, f in zip(values, row[1])}


def _sqlite_sizes(conn: Connection) -> dict[str, tuple[int, int]]:
    """Rows when last analyzed per store table (SQLite keeps no change counts: 0)."""
    if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() is None:
        return {}  # never analyzed
    rows = conn.exec_driver_sql("SELECT tbl, stat FROM sqlite_stat1").all()
    out: dict[str, tuple[int, int]] = {}
    for table, stat in rows:
        count = int(str(stat).split()[0]) if stat else 0
        out[table] = (max(count, out.get(table, (0, 0))[0]), 0)
    return out
