"""The writes of one SqlStore transaction, held back and sent one statement per table.

A write (create, update, delete) changes three things: the current row in
``resource`` (an insert, or an update guarded by the version it replaces), a new
row in ``resource_version``, and the resource's rows in the ``sp_*`` index tables.
Sent one by one that is six or more round trips per resource; a Bundle of 1 000
resources would wait on 6 000 of them.

:class:`WriteBuffer` records the rows instead and :meth:`WriteBuffer.flush` sends
them together: the stale index rows of rewritten resources deleted by type, one
``executemany`` for the current rows, one for the version rows, one per index
table. On PostgreSQL with psycopg the inserts go in one pipeline (one round trip),
large index batches by ``COPY`` (two to three times faster). Its owner flushes
before anything in the transaction reads the database (a read, a search, a
conditional create, direct use of the connection) and before the commit, so
whenever the database is looked at it holds exactly what row-by-row writes would
have left. The current versions of all resources a
Bundle names are looked up in one query per type (:meth:`WriteBuffer.load`).

PostgreSQL: looked-up rows are locked (``FOR UPDATE``) so their versions cannot
change before the flush, and the first write takes ``ROW EXCLUSIVE`` on
``resource`` and ``resource_version`` before it stamps ``lastUpdated``, so the
write barrier (:func:`hw_fhir.sync.changes.barrier`) still waits for every write
stamped before its instant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import orjson
from psycopg import errors as psycopg_errors
from psycopg import IsolationLevel, generators, pq
from sqlalchemy import Connection, bindparam, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from ..errors import VersionConflict
from . import schema as S
from .base import Stored, WriteResult
from .riders import Rows
from .searchparams import RefValue, TokenValue, extract, params_for

__all__ = ["Key", "State", "WriteBuffer", "index_rows", "index_rows_reused"]

#: ``(resource type, id)``.
Key = tuple[str, str]
#: The current row of a resource: ``(version, deleted)``, or None when there is none.
State = tuple[int, bool] | None

#: Ids per ``IN (…)`` (below SQLite's variable limit).
_CHUNK = 500
#: Index rows of one table from which ``COPY`` beats a multi-row ``INSERT`` (PostgreSQL):
#: ``COPY`` costs round trips of its own and cannot join the flush's pipeline.
COPY_FROM = 64

_r = S.resource
_UPDATE_CURRENT = (
    update(_r)
    .where(_r.c.res_type == bindparam("k_type"), _r.c.res_id == bindparam("k_id"),
           _r.c.version_id == bindparam("k_version"))
    .values(version_id=bindparam("version_id"), last_updated=bindparam("last_updated"),
            deleted=bindparam("deleted"), content=bindparam("content"))
)
#: The same on PostgreSQL with psycopg (sent in a pipeline, see ``_send_psycopg``).
_UPDATE_COLUMNS = ("version_id", "last_updated", "deleted", "content", "k_type", "k_id",
                   "k_version")
_UPDATE_SQL = ("UPDATE resource SET version_id = %s, last_updated = %s, deleted = %s, "
               "content = %s WHERE res_type = %s AND res_id = %s AND version_id = %s")
_LOCK_FOR_WRITES = "LOCK TABLE resource, resource_version IN ROW EXCLUSIVE MODE"
#: SQL text of the direct SQLite inserts by ``(table, columns)`` (see ``WriteBuffer._insert``).
_SQLITE_INSERTS: dict[tuple[str, tuple[str, ...]], str] = {}


def index_rows(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Return the search index rows of a resource, by index table kind.

    A /fhir write computes them twice: the body's limits are checked first
    (:func:`hw_fhir.body_limits.check_resource`), then the write indexes the same
    content under its id. The rows of the last few contents are remembered, keyed
    by everything they depend on (the JSON of all but ``id`` and ``meta``, and
    ``meta.tag``), and come back with the resource's own id; within
    :func:`index_rows_reused` those of every content indexed in the block (a Bundle's
    entries, more than a few).
    """
    try:
        key = orjson.dumps([data["resourceType"], (data.get("meta") or {}).get("tag"),
                            {k: v for k, v in data.items() if k not in _NOT_INDEXED}])
    except (TypeError, AttributeError, orjson.JSONEncodeError):
        return _index_rows(data, data["id"])
    id = data["id"]
    block = _IN_BLOCK.get()
    remembered = _LAST_INDEXED if block is None else block
    found = remembered.get(key)
    if found is None:
        found = _index_rows(data, "")
        if block is None and len(_LAST_INDEXED) >= _REMEMBERED:
            _LAST_INDEXED.clear()
        remembered[key] = found
    return {kind: [{**row, "res_id": id} for row in rows] for kind, rows in found.items()}


#: Index rows by content (see :func:`index_rows`), a few at a time.
_LAST_INDEXED: dict[bytes, dict[str, list[dict[str, Any]]]] = {}
_REMEMBERED = 16
_NOT_INDEXED = ("id", "meta", "resourceType")
#: Within :func:`index_rows_reused`: the rows of every content indexed in the block.
_IN_BLOCK: ContextVar[dict[bytes, dict[str, list[dict[str, Any]]]] | None] = ContextVar(
    "hw_fhir_index_rows", default=None)


@contextmanager
def index_rows_reused() -> Iterator[None]:
    """Within the block, :func:`index_rows` remembers the rows of every content it indexed.

    For a request that checks its body's index rows and then writes the same resources
    (a Bundle of a thousand entries would otherwise index each twice); the rows are
    forgotten at the end of the block, so they are held no longer than the body itself.
    """
    token = _IN_BLOCK.set({})
    try:
        yield
    finally:
        _IN_BLOCK.reset(token)


def _index_rows(data: dict[str, Any], id: str) -> dict[str, list[dict[str, Any]]]:
    rtype = data["resourceType"]
    rows: dict[str, list[dict[str, Any]]] = {}
    for sp in params_for(rtype).values():
        for value in extract(data, sp):
            base = {"res_type": rtype, "res_id": id, "param": sp.name}
            if isinstance(value, TokenValue):
                kind, row = "token", dict(base, system=value.system, code=value.code[:255])
            elif isinstance(value, RefValue):
                kind, row = "reference", dict(base, target_type=value.target_type,
                                              target_id=value.target_id, url=value.url)
            elif sp.type == "date":
                kind, row = "date", dict(base, low=value[0], high=value[1])
            elif sp.type == "string":
                kind, row = "string", dict(base, value=value[0][:255], exact=value[1][:255])
            elif sp.type == "uri":
                kind, row = "uri", dict(base, value=value[:512])
            else:
                continue
            rows.setdefault(kind, []).append(row)
    return rows


class WriteBuffer:
    """Creates, updates and deletes of one open transaction, sent in batches by :meth:`flush`."""

    def __init__(self, conn: Connection, instant: Callable[[], str]) -> None:
        self.conn = conn
        self._instant = instant
        self._postgres = conn.dialect.name == "postgresql"
        self._copy = self._postgres and conn.dialect.driver == "psycopg"
        #: the sqlite3 connection under ``conn`` (inserts go to it directly), else None
        self._sqlite = (conn.connection.dbapi_connection
                        if conn.dialect.name == "sqlite" else None)
        #: the driver's own IntegrityError (raised by the direct inserts)
        self._dbapi_integrity_error = getattr(conn.dialect.loaded_dbapi, "IntegrityError",
                                              IntegrityError)
        self._locked = False
        #: current rows as the database holds them (as of the last flush)
        self._stored: dict[Key, State] = {}
        #: current rows including the writes not flushed yet
        self._state: dict[Key, State] = {}
        self._inserts: dict[Key, dict[str, Any]] = {}
        self._updates: dict[Key, dict[str, Any]] = {}
        self._versions: list[dict[str, Any]] = []
        self._index: dict[Key, dict[str, list[dict[str, Any]]]] = {}
        self._clear: dict[Key, None] = {}  # stored resources whose index rows must go
        #: rows sent per table by every flush so far (what the statistics keeper counts)
        self.written: Counter[str] = Counter()
        #: every write of the transaction, in order (deletions: ``stored.deleted``)
        self.results: list[WriteResult] = []

    # ---------------------------------------------------------------- lookups

    def load(self, keys: Iterable[Key]) -> None:
        """Look up (and on PostgreSQL lock) the current rows of resources not looked up yet.

        Only writes look resources up, so on PostgreSQL the writers' table lock is taken
        first (see :meth:`_begin_writes`): with psycopg it travels with the BEGIN.
        """
        by_type: dict[str, dict[str, None]] = {}
        for rtype, id in keys:
            if (rtype, id) not in self._stored and (rtype, id) not in self._state:
                by_type.setdefault(rtype, {})[id] = None
        if by_type:  # looked up to be written: the writers' lock first, with the BEGIN
            self._begin_writes()  # (PostgreSQL: one round trip, not a BEGIN then a lock)
        for rtype in sorted(by_type):
            ids = list(by_type[rtype])
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                stmt = (select(_r.c.res_id, _r.c.version_id, _r.c.deleted)
                        .where(_r.c.res_type == rtype, _r.c.res_id.in_(chunk)))
                if self._postgres:  # in one order, so two Bundles cannot deadlock here
                    stmt = stmt.order_by(_r.c.res_id).with_for_update()
                found = {row.res_id: (int(row.version_id), bool(row.deleted))
                         for row in self.conn.execute(stmt)}
                for id in chunk:
                    self._stored[(rtype, id)] = found.get(id)

    def state(self, key: Key) -> State:
        """Return the current ``(version, deleted)`` of a resource (None: never stored)."""
        if key in self._state:
            return self._state[key]
        if key not in self._stored:
            self.load([key])
        return self._stored[key]

    # ----------------------------------------------------------------- writes

    def put(self, data: dict[str, Any], method: str, *, new: bool = False) -> WriteResult:
        """Record a new version of ``data`` (which has its id); ``new``: the id is fresh."""
        rtype, id = data["resourceType"], data["id"]
        key = (rtype, id)
        if new:
            if self._state.get(key) is not None or self._stored.get(key) is not None:
                raise VersionConflict(f"{rtype}/{id} was created by someone else meanwhile")
            self._stored.setdefault(key, None)
            current: State = None
        else:
            current = self.state(key)
        self._begin_writes()
        version = (current[0] if current else 0) + 1
        now = self._instant()
        meta = dict(data.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = now
        data = {"resourceType": rtype, "id": id, "meta": meta,
                **{k: v for k, v in data.items() if k not in ("resourceType", "id", "meta")}}
        raw = orjson.dumps(data).decode()
        self._record(key, version, now, method, raw)
        self._index[key] = index_rows(data)
        stored = Stored(rtype, id, str(version), now, method=method, raw=raw, _parsed=data)
        result = WriteResult(stored, created=current is None or current[1])
        self.results.append(result)
        return result

    def delete(self, key: Key) -> None:
        """Record a deletion; deleting a missing or deleted resource does nothing."""
        current = self.state(key)
        if current is None or current[1]:
            return
        self._begin_writes()
        version, now = current[0] + 1, self._instant()
        self._record(key, version, now, "DELETE", None)
        self._index.pop(key, None)
        self.results.append(WriteResult(Stored(key[0], key[1], str(version), now, deleted=True,
                                               method="DELETE"), created=False))

    def _begin_writes(self) -> None:
        if self._postgres and not self._locked:
            # the barrier's SHARE lock waits for this transaction from now on, so nothing
            # stamped below can commit after a barrier instant it predates (so the lock is
            # granted, one round trip, before the first stamp)
            if self._copy:
                _begin_and_lock(self.conn.connection.dbapi_connection)
            else:
                self.conn.execute(text(_LOCK_FOR_WRITES))
        self._locked = True

    def _record(self, key: Key, version: int, now: str, method: str, raw: str | None) -> None:
        rtype, id = key
        deleted = raw is None
        row = {"version_id": version, "last_updated": now, "deleted": deleted, "content": raw}
        if key in self._inserts:
            self._inserts[key].update(row)
        elif key in self._updates:
            self._updates[key].update(row)
        else:
            stored = self._stored[key]
            if stored is None:
                self._inserts[key] = {"res_type": rtype, "res_id": id, **row}
            else:
                self._updates[key] = {"k_type": rtype, "k_id": id, "k_version": stored[0], **row}
                if not stored[1]:  # a deleted resource has no index rows left
                    self._clear[key] = None
        self._versions.append({"res_type": rtype, "res_id": id, "method": method, **row})
        self._state[key] = (version, deleted)

    # ------------------------------------------------------------------ flush

    def flush(self) -> None:
        """Send every recorded write to the database (still inside the transaction)."""
        self._send((), commit=False)

    def finish(self, extra: Rows = ()) -> None:
        """Send the last batch before the commit, with ``extra`` rows (a rider's).

        PostgreSQL with psycopg: the batch's pipeline ends with ``COMMIT``, so rows and
        commit cost one round trip (the connection is then idle and the caller's commit
        sends nothing). A failure in the pipeline skips the ``COMMIT`` (the server skips
        the rest of a pipeline after an error) and the caller rolls back.
        """
        self._send(extra, commit=True)

    def _send(self, extra: Rows, *, commit: bool) -> None:
        if not self._versions and not extra:
            return
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for rows in self._index.values():
            for kind, items in rows.items():
                by_kind.setdefault(kind, []).extend(items)
        try:
            if self._copy:
                self._send_psycopg(by_kind, extra, commit=commit)
            else:
                self._clear_index()
                self._update_current()
                if self._inserts:
                    self._insert(_r.name, list(self._inserts.values()))
                if self._versions:
                    self._insert(S.resource_version.name, self._versions)
                for kind, items in by_kind.items():
                    self._insert(S.SP_TABLES[kind].name, items)
                for table, rows in extra:
                    if rows:
                        self._insert(table.name, rows)
        except (IntegrityError, self._dbapi_integrity_error) as exc:
            exc = getattr(exc, "orig", None) or exc
            detail = getattr(getattr(exc, "diag", None), "message_detail", None)
            raise VersionConflict(f"{_refs(self._inserts or self._state)} was created by someone "
                                  "else meanwhile"
                                  + (f" ({detail})" if detail else "")) from None
        for kind, items in by_kind.items():
            self.written[S.SP_TABLES[kind].name] += len(items)
        self.written[_r.name] += len(self._updates) + len(self._inserts)
        self.written[S.resource_version.name] += len(self._versions)
        self.written.update(f"resource:{v['res_type']}" for v in self._versions)  # per type
        self._stored.update(self._state)
        self._state.clear()
        self._inserts.clear()
        self._updates.clear()
        self._versions.clear()
        self._index.clear()
        self._clear.clear()

    def _update_current(self) -> None:
        """Move the current rows of updated resources on (each guarded by the version it had)."""
        if self._updates:
            if self._sqlite is not None:  # straight to sqlite3, as the inserts (see _insert)
                done = self._sqlite.executemany(_UPDATE_SQL.replace("%s", "?"), [
                    [row[c] for c in _UPDATE_COLUMNS] for row in self._updates.values()])
            else:
                done = self.conn.execute(_UPDATE_CURRENT, list(self._updates.values()))
            if done.rowcount != len(self._updates):
                raise VersionConflict(
                    f"{_refs(self._updates)} changed while this transaction wrote it")

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert rows that all have the same keys, in the keys' order.

        SQLite runs in this process, so SQLAlchemy's work per statement (cache key,
        parameter processing, result set-up) costs more than the insert itself: the rows
        go straight to the sqlite3 cursor's ``executemany`` with the statement's SQL text,
        built once per table and column list. PostgreSQL with psycopg 3 has
        :meth:`_send_psycopg`; other drivers' inserts stay with SQLAlchemy.
        """
        if self._sqlite is None:
            self.conn.execute(insert(S.metadata.tables[table]), rows)
            return
        columns = tuple(rows[0])
        sql = _SQLITE_INSERTS.get((table, columns))
        if sql is None:
            sql = _SQLITE_INSERTS[(table, columns)] = (
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})")
        self._sqlite.executemany(sql, [tuple(row.values()) for row in rows])

    def _send_psycopg(self, by_kind: dict[str, list[dict[str, Any]]], extra: Rows, *,
                      commit: bool) -> None:
        """Send the flush's statements on PostgreSQL (psycopg 3) in as few round trips as it can.

        Rewritten resources first: their old index rows deleted and their current rows
        moved on, in one pipeline (one round trip), whose row count is checked before
        anything else is sent. Then the current rows, the version rows, the index rows of
        tables with fewer than ``COPY_FROM`` rows and the ``extra`` rows as multi-row
        ``INSERT``s in one pipeline (sent together, one wait for all), ended by ``COMMIT``
        when ``commit``; larger index batches go by ``COPY``, which cannot be pipelined
        (then before that pipeline). A create thus waits once for its rows and commit.
        """
        raw = self.conn.connection.dbapi_connection
        assert raw is not None
        if self._updates:
            moved = []
            with raw.pipeline():
                for sql, params in self._clear_index_sql():
                    raw.execute(sql, params)
                for row in self._updates.values():
                    moved.append(raw.execute(_UPDATE_SQL, [row[c] for c in _UPDATE_COLUMNS]))
            if sum(cur.rowcount for cur in moved) != len(self._updates):
                raise VersionConflict(
                    f"{_refs(self._updates)} changed while this transaction wrote it")
        batches: list[tuple[str, list[dict[str, Any]]]] = []
        if self._inserts:
            batches.append((_r.name, list(self._inserts.values())))
        if self._versions:
            batches.append((S.resource_version.name, self._versions))
        copies = []
        for kind, items in by_kind.items():
            table = S.SP_TABLES[kind].name
            (copies if len(items) >= COPY_FROM else batches).append((table, items))
        batches += [(table.name, rows) for table, rows in extra if rows]
        for table, rows in copies:
            _copy_rows(self.conn, table, rows)
        with raw.pipeline():
            for table, rows in batches:
                for sql, params in _multi_row_inserts(table, rows):
                    raw.execute(sql, params)
            if commit:
                raw.execute("COMMIT")

    def _clear_index_sql(self) -> Iterable[tuple[str, list[Any]]]:
        """``DELETE`` statements (psycopg) of the index rows of rewritten resources."""
        by_type: dict[str, list[str]] = {}
        for rtype, id in self._clear:
            by_type.setdefault(rtype, []).append(id)
        for rtype, ids in by_type.items():
            for table in S.SP_TABLES.values():
                yield (f"DELETE FROM {table.name} WHERE res_type = %s AND res_id = ANY(%s)",
                       [rtype, ids])

    def _clear_index(self) -> None:
        by_type: dict[str, list[str]] = {}
        for rtype, id in self._clear:
            by_type.setdefault(rtype, []).append(id)
        for rtype, ids in by_type.items():
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                for table in S.SP_TABLES.values():
                    if self._sqlite is not None:  # no statement to build (see _insert)
                        self._sqlite.execute(
                            f"DELETE FROM {table.name} WHERE res_type = ? AND res_id IN "
                            f"({', '.join('?' * len(chunk))})", [rtype, *chunk])
                    else:
                        self.conn.execute(delete(table).where(table.c.res_type == rtype,
                                                              table.c.res_id.in_(chunk)))


def _begin_and_lock(raw: Any) -> None:
    """Take the writers' lock on psycopg, with the transaction's BEGIN in the same round trip.

    psycopg sends the BEGIN of a transaction on its own and waits for it (in a pipeline
    too), one round trip before the first statement. When the transaction has not begun
    (no lookup came first), ``BEGIN …; LOCK …`` goes as one simple query, the BEGIN
    with the connection's isolation options as psycopg would write it; psycopg reads
    the transaction state from the connection, so it then sends no BEGIN of its own,
    and its commit or rollback ends this one.
    """
    if raw.pgconn.transaction_status != pq.TransactionStatus.IDLE or raw.autocommit \
            or raw.pgconn.pipeline_status:
        raw.execute(_LOCK_FOR_WRITES)
        return
    begin = ["BEGIN"]
    if raw.isolation_level is not None:
        begin.append("ISOLATION LEVEL " + IsolationLevel(raw.isolation_level).name.replace("_", " "))
    if raw.read_only is not None:
        begin.append("READ ONLY" if raw.read_only else "READ WRITE")
    if raw.deferrable is not None:
        begin.append("DEFERRABLE" if raw.deferrable else "NOT DEFERRABLE")
    raw.pgconn.send_query(f"{' '.join(begin)}; {_LOCK_FOR_WRITES}".encode())
    for result in raw.wait(generators.execute(raw.pgconn)):
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise psycopg_errors.error_from_result(result, encoding=raw.info.encoding)


def _copy_rows(conn: Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows (all with the same keys) with PostgreSQL ``COPY`` (psycopg 3)."""
    columns = list(rows[0])
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


#: Values per multi-row ``INSERT`` at most (PostgreSQL takes up to 65 535 parameters).
_MAX_PARAMS = 30_000


def _multi_row_inserts(table: str, rows: list[dict[str, Any]]) -> Iterable[tuple[str, list[Any]]]:
    """``INSERT … VALUES (…), (…)`` statements (psycopg ``%s``) for rows with the same keys."""
    columns = list(rows[0])
    one = f"({', '.join(['%s'] * len(columns))})"
    per = max(1, _MAX_PARAMS // len(columns))
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        yield (f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([one] * len(chunk)),
               [row[c] for row in chunk for c in columns])


def _refs(keys: Iterable[Key]) -> str:
    """Name the resources a failed flush was writing (the first three of many)."""
    names = [f"{t}/{i}" for t, i in keys]
    if len(names) == 1:
        return names[0]
    more = ", …" if len(names) > 3 else ""
    return f"one of {', '.join(names[:3])}{more} ({len(names)} resources)"
