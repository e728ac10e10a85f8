"""SqlStore: the Store on SQLAlchemy 2 (SQLite embedded default, PostgreSQL in production).

Every write makes a new version row; the current version and its search index
rows are replaced in the same database transaction. Optimistic concurrency: an
update names the version it replaces and is applied with
``UPDATE … WHERE version_id = :expected`` so concurrent writers cannot lose an
update on either database. Writes go through a unit of work that sends them in
batches (one statement per table, see :mod:`hw_fhir.store.writes`), so a Bundle
of a thousand resources costs a handful of round trips, not thousands.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Any, Iterator
from urllib.parse import parse_qsl

from sqlalchemy import (
    Connection,
    and_,
    func,
    literal_column,
    not_,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Engine

from ..errors import (
    Gone,
    InvalidInput,
    InvalidSearch,
    NotFound,
    VersionConflict,
)
from ..models import validate
from . import schema as S
from . import statements as Q
from .base import HistoryResult, Params, SearchResult, Stored, WriteResult, as_params
from .bundles import process_bundle
from .canonicals import CanonicalCache
from .engine import make_engine, sqlite_first
from .maintenance import StatisticsKeeper
from .probes import ProbeCache
from .query import Filter, Query, parse_query
from .searchparams import PARAMS, date_range, params_for, prefix_range
from .totals import count_matches, literal_sql, planner_rows
from .walk import walk_beyond_cap, walk_end, walk_page
from .unit import StoreOps, UnitOfWork

__all__ = ["SqlStore", "now_instant"]

_MIN_INSTANT = "0001-01-01T00:00:00.000000Z"


def now_instant() -> str:
    """Return the current time as a FHIR instant with microseconds, UTC."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: Every SqlStore alive in this process, so a forked child can rebuild their pools.
_OPEN_STORES: "weakref.WeakSet[SqlStore]" = weakref.WeakSet()


def _rebuild_pools_after_fork() -> None:
    for store in list(_OPEN_STORES):
        store.after_fork()


os.register_at_fork(after_in_child=_rebuild_pools_after_fork)


def _check_type(resource_type: str) -> None:
    if resource_type not in PARAMS:
        raise NotFound(f"Resource type {resource_type!r} is not supported by this server")


def _check_id(id: str) -> None:
    if not id or len(id) > 64 or not all(c.isalnum() or c in "-." for c in id):
        raise InvalidInput(f"{id!r} is not a valid resource id")


class SqlStore:
    """The Store over a SQLAlchemy engine."""

    def __init__(self, url: str, *, echo: bool = False, base_url: str | None = None,
                 engine: Engine | None = None, **engine_kwargs: Any) -> None:
        self.url = url
        self.base_url = base_url
        self.engine = engine or make_engine(url, echo=echo, **engine_kwargs)
        self.dialect = self.engine.dialect.name
        self._clock_lock = threading.Lock()
        #: one writing thread at a time on SQLite (reentrant: a nested begin fails as before)
        self._writer = threading.RLock() if self.dialect == "sqlite" else None
        self._last_instant = ""
        #: refreshes planner statistics of tables this process changed a lot (see maintenance)
        self.statistics = StatisticsKeeper(self.engine)
        #: Questionnaires (any type) by canonical url|version, until one of the type is written
        self.canonicals = CanonicalCache(self)
        #: search conditions by (type, filter, drive) and probes by ("probe", type, filter,
        #: cap): built once (see _filter_clause)
        self._clauses: dict[tuple[Any, ...], Any] = {}
        #: recent probe outcomes by (type, filter): the pages of one search probe once
        self.probes = ProbeCache()
        _OPEN_STORES.add(self)

    # ------------------------------------------------------------------ setup

    def upgrade(self) -> None:
        """Bring the schema up to date (Alembic ``upgrade head``)."""
        from ..migrations import upgrade  # lazy: only processes that migrate load Alembic

        upgrade(self.engine)

    def dispose(self) -> None:
        """Close every pooled connection (after a statistics check running in the background)."""
        self.statistics.join(timeout=30)
        self.engine.dispose()

    def after_fork(self) -> None:
        """Start this (child) process with a pool and locks of its own.

        Connections pooled before a fork are the parent's sockets: the child drops them
        without closing them (``dispose(close=False)``, so the parent's stay usable) and
        opens its own on first use. Called by the ``os.register_at_fork`` hook for every
        open store, and again by the server after it forks a worker (harmless twice).
        """
        self.engine.dispose(close=False)
        self._clock_lock = threading.Lock()
        self._writer = threading.RLock() if self.dialect == "sqlite" else None
        self.statistics.after_fork()
        self.canonicals = CanonicalCache(self)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """Open a write transaction (``BEGIN IMMEDIATE`` on SQLite).

        SQLite has one writer at a time: the threads of this process take turns on a lock
        (woken in order) instead of all polling the database's busy handler, which sleeps
        up to 100 ms between tries; other processes still meet at the busy handler.
        """
        with self._writer_turn(), self.engine.connect() as conn:
            conn.info["hw_write"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("hw_write", None)

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Wait for this process's other SQLite writers (at most the busy timeout, then go on)."""
        if self._writer is None:
            yield
            return
        got = self._writer.acquire(timeout=_WRITER_WAIT)
        try:
            yield
        finally:
            if got:
                self._writer.release()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def read_one(self) -> Iterator[Connection]:
        """A connection for one read statement, outside any transaction (no BEGIN, no ROLLBACK)."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="AUTOCOMMIT")
            else:  # the begin listener of make_engine emits no BEGIN for it
                conn.info["hw_autocommit"] = True
            try:
                yield conn
            finally:
                conn.info.pop("hw_autocommit", None)

    def _instant(self) -> str:
        """Return a strictly increasing now (two writes never share a lastUpdated)."""
        with self._clock_lock:
            value = now_instant()
            if value <= self._last_instant:
                dt = datetime.strptime(self._last_instant, "%Y-%m-%dT%H:%M:%S.%fZ")
                value = (dt + timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self._last_instant = value
            return value

    # ------------------------------------------------------------------ reads

    def read(self, resource_type: str, id: str) -> Stored:
        """Return the current version; NotFound or Gone."""
        _check_type(resource_type)
        if self.dialect == "sqlite":  # the pooled sqlite3 connection runs it (sqlite_first)
            row = sqlite_first(self.engine, Q.READ_SQLITE, (resource_type, id))
            if row is not False:  # False: raised; the statement below raises it wrapped
                return _stored_current(resource_type, id, row)
        with self.read_one() as conn:
            return self._read_in(conn, resource_type, id)

    def _read_in(self, conn: Connection, resource_type: str, id: str) -> Stored:
        row = conn.execute(Q.READ, {"rtype": resource_type, "id": id}).first()
        return _stored_current(resource_type, id, row)


    def vread(self, resource_type: str, id: str, version_id: str) -> Stored:
        """Return one version; NotFound or Gone."""
        _check_type(resource_type)
        try:
            vid = int(version_id)
        except ValueError:
            raise NotFound(f"{resource_type}/{id} has no version {version_id!r}") from None
        with self.read_one() as conn:
            row = conn.execute(Q.VREAD, {"rtype": resource_type, "id": id, "vid": vid}).first()
        if row is None:
            raise NotFound(f"{resource_type}/{id} has no version {version_id}")
        if row.deleted:
            raise Gone(f"{resource_type}/{id} version {version_id} is a deletion")
        return Stored(resource_type, id, str(vid), row.last_updated, method=row.method,
                      raw=row.content)

    # ----------------------------------------------------------------- writes

    def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None) -> WriteResult:
        """Store a new resource with a new id; with ``if_none_exist`` return the match instead."""
        data = validate(resource)
        _check_type(data["resourceType"])
        with self.unit_of_work() as unit:
            return unit.create(data, if_none_exist=if_none_exist)

    def _conditional_match(self, conn: Connection, rtype: str, criteria: str) -> Stored | None:
        params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
        if not params:
            raise InvalidSearch("If-None-Exist has no search parameters")
        if self.dialect == "postgresql":  # serialise conditional creates on the same criteria
            key = int.from_bytes(hashlib.sha256(f"{rtype}?{criteria}".encode()).digest()[:8],
                                 "big", signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        query = parse_query(rtype, params + [("_count", "2")], strict=True, base_url=self.base_url)
        found = self._search_in(conn, query).matches
        if len(found) > 1:
            raise VersionConflict(f"If-None-Exist {criteria!r} matches more than one {rtype}")
        return found[0] if found else None

    def update(self, resource: dict[str, Any], *, if_match: str | None = None) -> WriteResult:
        """Store a new version (or create with the given id); VersionConflict on a stale If-Match."""
        data = validate(resource)
        _check_type(data["resourceType"])
        if not data.get("id"):
            raise InvalidInput("An update needs the resource id")
        _check_id(data["id"])
        with self.unit_of_work() as unit:
            return unit.update(data, if_match=if_match)

    def delete(self, resource_type: str, id: str) -> None:
        """Delete (a new, deleted version); deleting a missing or deleted resource is a no-op."""
        _check_type(resource_type)
        with self.unit_of_work() as unit:
            unit.delete(resource_type, id)

    # ----------------------------------------------------------------- search

    def search(self, resource_type: str, params: Params = (), *, strict: bool = False) -> SearchResult:
        """Return the resources matching FHIR search parameters."""
        _check_type(resource_type)
        query = parse_query(resource_type, as_params(params), strict=strict, base_url=self.base_url)
        with self._search_reader(query) as conn:
            return self._search_in(conn, query)

    def search_every(self, resource_type: str, params: Params = ()) -> list[Stored]:
        """Return every match of a search in one query (no pages; ``_include`` ignored).

        For readers in this process (:func:`~hw_fhir.store.base.every_match`): a page of
        ``MAX_COUNT`` at a time would evaluate the whole search again for each page.
        """
        _check_type(resource_type)
        pairs = [p for p in as_params(params)
                 if p[0] not in ("_count", "_offset", "_total", "_cursor", "_summary")]
        query = parse_query(resource_type, pairs, base_url=self.base_url)
        query.count, query.total, query.include, query.revinclude = _EVERY, "none", [], []
        with self._search_reader(query) as conn:
            return self._search_in(conn, query).matches

    def _search_reader(self, q: Query) -> AbstractContextManager[Connection]:
        """The connection a search runs on: outside a transaction wherever that reads the same.

        PostgreSQL at READ COMMITTED (the pool's level): every statement sees the data as
        of its own start, in a transaction or not, so a BEGIN and a ROLLBACK would only
        cost two round trips. SQLite: a transaction holds one snapshot for the page, its
        total and its includes; a search that reads its page in one statement (no sort, no
        total counted, no includes; the filters' row estimates may see another moment, as
        estimates) needs none.
        """
        if self.dialect == "postgresql":
            if self.engine.dialect.default_isolation_level == "READ COMMITTED":
                return self.read_one()
        elif not (q.sort or q.include or q.revinclude or q.summary_count) and q.total == "none":
            return self.read_one()
        return self._read()

    def _search_in(self, conn: Connection, q: Query) -> SearchResult:
        r = S.resource
        rtype = q.resource_type
        paged = not q.summary_count and q.count > 0
        # the most selective filter drives (IN subquery); the others are checked per row
        ranked, found = self._plan_filters(conn, rtype, q.filters, walk=paged and not q.sort)
        # what the total counts (the first filter drives: a count reads every match anyway)
        matching = [r.c.res_type == rtype, r.c.deleted == False,  # noqa: E712
                    *(self._filter_clause(rtype, f, drive=(n == 0)) for n, f in enumerate(ranked))]
        want_total = q.total != "none" or q.summary_count
        result = SearchResult(rtype, [], total=None, offset=q.offset, count=q.count,
                              params=q.echo, warnings=list(q.warnings))
        if not paged:
            if want_total:  # _summary=count asks for the count itself: exact unless told
                result.total = count_matches(conn, matching, q.total or "accurate")
            return result
        # the filters match many rows (every probe read at least _WALK_MIN index rows): the
        # order's index drives, each resource checked against the filters, and the page stops
        # after count+1 matches instead of sorting every match. The walk reads at most as
        # many resources as the filter has index rows (what driving by it would cost); when
        # that part of the order holds too few matches, the filter drives after all
        walk = found if (found is not None and found >= _WALK_MIN
                         and found > q.offset + q.count) else 0
        rows: list[Any] = []
        per_row = self.dialect == "postgresql"
        checks = [self._filter_clause(rtype, f, per_row=per_row) for f in ranked] if walk else []
        walked = False
        if walk:
            rows, walked = self._page(conn, q, checks, walk=walk)
        if walked:
            result.has_more = True
        else:
            rows, result.has_more = self._page(conn, q, matching[2:])
        result.matches = [Stored(rtype, rid, str(version), updated, raw=content)
                          for rid, version, updated, content in rows[:q.count]]
        if want_total:
            if not result.has_more and not q.cursor and (result.matches or not q.offset):
                # this page holds the last match (by offset): the total needs no count
                result.total = q.offset + len(result.matches)
            else:
                # PostgreSQL's capped count first reads every index row of the driving
                # filter: beyond _PROBE_CAP of them, walking for the cap's matches reads fewer
                # (at 51 000 Patients, 4 348 Okafors: 2 203 buffers counted, 5 136 walked)
                beyond = (walked and q.total != "accurate" and self.dialect == "postgresql"
                          and walk >= _PROBE_CAP
                          and walk_beyond_cap(conn, q.resource_type, checks, walk))
                result.total = count_matches(conn, matching, q.total, beyond_cap=beyond)
        if q.include or q.revinclude:
            result.included = self._includes(conn, q, result.matches)
        return result

    def _page(self, conn: Connection, q: Query, conds: list[Any], *,
              walk: int = 0) -> tuple[list[Any], bool]:
        """The page's rows (count+1 at most) and whether there are more.

        ``conds`` are the filters' conditions on the resource table. ``walk`` > 0: they are
        checked per resource while the type's lastUpdated index is walked, over at most
        ``walk`` resources from the cursor on (``has_more`` False may then be short of it).
        """
        r = S.resource
        where = [r.c.res_type == q.resource_type, r.c.deleted == False, *conds]  # noqa: E712
        order = []
        for key, desc in q.sort:
            col = self._sort_column(q.resource_type, key)
            # resources without the element sort last on both databases
            order.append((col.desc() if desc else col.asc()).nulls_last())
        last_updated: Any = r.c.last_updated
        res_id: Any = r.c.res_id
        if q.filters and self.dialect == "sqlite" and not walk:
            # the filter drives, the cursor only bounds: "+col" keeps SQLite off the
            # lastUpdated index and the primary key, which it would otherwise walk from the
            # cursor through every resource of the type (O(store), not O(page))
            last_updated, res_id = Q.PLUS_LAST_UPDATED, Q.PLUS_RES_ID
        if not q.sort and q.cursor:
            where.append(or_(last_updated > q.cursor[0],
                             and_(last_updated == q.cursor[0], res_id > q.cursor[1])))
            if walk:  # the walk starts at the cursor (a range of the index, not an OR)
                where.append(last_updated >= q.cursor[0])
        if walk and self.dialect == "postgresql":
            return walk_page(conn, q, [*where[:2], *where[2 + len(conds):]], conds, walk)
        if walk:
            where.append(last_updated <= walk_end(q, walk))
        order.extend([last_updated.asc(), r.c.res_id.asc()])
        if self.dialect == "sqlite" and not q.sort:
            # SQLite's sorter would copy every matching resource's JSON (three times slower
            # for 1 000 rows): sort the row ids alone, fetch those rows, order them here
            page = select(Q.ROWID).where(*where).order_by(*order)
            page = page.limit(q.count + 1)
            if q.offset and not q.cursor:
                page = page.offset(q.offset)
            rows = sorted(conn.execute(
                Q.FETCH_BY_ROWID.where(Q.FETCHED_ROWID.in_(page.scalar_subquery()))),
                key=itemgetter(2, 0))  # last_updated, res_id
            return rows, len(rows) > q.count
        if self.dialect == "sqlite":
            # explicit sort keys: order the ids alone, then fetch the page by id
            stmt = select(r.c.res_id).where(*where).order_by(*order).limit(q.count + 1)
            if q.offset and not q.cursor:
                stmt = stmt.offset(q.offset)
            ids = list(conn.execute(stmt).scalars())
            return self._rows_by_id(conn, q.resource_type, ids[:q.count]), len(ids) > q.count
        stmt = (select(r.c.res_id, r.c.version_id, r.c.last_updated, r.c.content)
                .where(*where).order_by(*order).limit(q.count + 1))
        if q.offset and not q.cursor:
            stmt = stmt.offset(q.offset)
        rows = conn.execute(stmt).all()
        return rows, len(rows) > q.count

    def _rows_by_id(self, conn: Connection, rtype: str, ids: list[str]) -> list[Any]:
        """Return the current rows of ``ids`` in that order (same read transaction)."""
        r = S.resource
        found: dict[str, Any] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start:start + _ID_CHUNK]
            found.update((row.res_id, row) for row in conn.execute(
                select(r.c.res_id, r.c.version_id, r.c.last_updated, r.c.content)
                .where(r.c.res_type == rtype, r.c.res_id.in_(chunk))))
        return [found[i] for i in ids if i in found]

    def _rank_filters(self, conn: Connection, rtype: str, filters: list[Filter]) -> list[Filter]:
        """The filters, the one matching fewest rows first (see :meth:`_plan_filters`)."""
        return self._plan_filters(conn, rtype, filters)[0]

    def _plan_filters(self, conn: Connection, rtype: str, filters: list[Filter], *,
                      walk: bool = False) -> tuple[list[Filter], int | None]:
        """Order filters so the one matching fewest rows comes first (it drives the query).

        PostgreSQL's planner has statistics and picks for itself. SQLite has none, so with
        two or more index filters each is probed with a capped count of its index rows
        (at most ``_PROBE_CAP`` index rows read per filter) and the smallest drives: a clinician
        with 20 000 Tasks and a four-week ``due`` window then reads the window, not the
        20 000. ``walk`` (a page in the default order is wanted): a single filter is probed
        too, on both databases, so the caller knows whether the order's index should drive.

        Returns the filters and the smallest probe's count (None: nothing probed), which is
        at least the number of matches' index rows, or ``_PROBE_CAP`` when every probe
        reached it.
        """
        static = sorted(filters, key=lambda f: _SELECTIVITY.get(f.type, 9))
        probed = [f for f in filters
                  if f.type in S.SP_TABLES and f.modifier not in ("missing", "not")]
        if not probed or static[0].type == "id":
            return static, None
        if not walk and (self.dialect != "sqlite" or len(probed) < 2):
            return static, None
        # each probe counts only up to the smallest count so far: a later filter can win
        # only by matching fewer rows, so no probe reads more than the current best
        best, winner = _PROBE_CAP, None
        for f in probed:
            found = self._estimate(conn, rtype, f, best)
            if found < best:
                best, winner = found, f
            if best <= _PROBE_ENOUGH:  # a few rows drive as well as fewer would
                break
        if winner is None or self.dialect != "sqlite":  # PostgreSQL: the planner orders them
            return static, best
        return [winner, *(f for f in static if f is not winner)], best

    def _estimate(self, conn: Connection, rtype: str, f: Filter, cap: int) -> int:
        """How many index rows ``f`` has, up to ``cap``: counted on SQLite, the planner's
        estimate on PostgreSQL (counting reads the table row of every index row until
        VACUUM has marked the pages all-visible: 41 ms for 4 348 rows right after a load).
        An outcome of the last seconds is used again (:mod:`~hw_fhir.store.probes`)."""
        known = self.probes.get((rtype, f), cap)
        if known is not None:
            return known
        key = ("probe", rtype, f, cap if self.dialect == "sqlite" else None)
        try:
            probe = self._clauses.get(key)
        except TypeError:
            probe, key = None, None
        if probe is None:
            table = S.SP_TABLES[f.type]
            inner = (select(literal_column("1"))
                     .where(table.c.res_type == rtype, table.c.param == f.name,
                            self._values_cond(table.c, f)))
            if self.dialect == "sqlite":
                probe = select(func.count()).select_from(inner.limit(cap).subquery())
            else:  # the statement's text with its values, compiled once
                probe = "EXPLAIN (FORMAT JSON) " + literal_sql(conn, inner)
            if key is not None:
                if len(self._clauses) >= _MAX_CLAUSES:
                    self._clauses.clear()
                self._clauses[key] = probe
        if self.dialect != "sqlite":
            found, counted_to = planner_rows(conn, probe) or 0, None
        else:
            found, counted_to = int(conn.execute(probe).scalar_one()), cap
        self.probes.put((rtype, f), found, counted_to)
        return min(found, cap)

    def _filter_clause(self, rtype: str, f: Filter, *, drive: bool = False,
                       per_row: bool = False) -> Any:
        """The condition of one filter, built once per ``(type, filter, drive)``.

        SQL expressions are immutable, so one built for an earlier search (the same
        patient's Tasks, the same status list, a dashboard polled again) is used again:
        building one costs more than running a small search.
        """
        key = (rtype, f, drive, per_row)
        try:
            clause = self._clauses.get(key)
        except TypeError:  # a value that cannot be a dict key: build it every time
            return self._build_filter_clause(rtype, f, drive=drive, per_row=per_row)
        if clause is None:
            clause = self._build_filter_clause(rtype, f, drive=drive, per_row=per_row)
            if len(self._clauses) >= _MAX_CLAUSES:
                self._clauses.clear()
            self._clauses[key] = clause
        return clause

    def _build_filter_clause(self, rtype: str, f: Filter, *, drive: bool = False,
                             per_row: bool = False) -> Any:
        r = S.resource
        if f.type == "id":
            return r.c.res_id.in_(list(f.values))
        if f.type == "lastUpdated":
            return or_(*(_date_cond(r.c.last_updated, r.c.last_updated, v) for v in f.values))
        table = S.SP_TABLES[f.type]
        base = [table.c.res_type == rtype, table.c.param == f.name]
        if f.modifier == "missing":
            cond = None
            negate = bool(f.values[0])
        else:
            negate = f.modifier == "not"
            # checked per row: SQLite must look up the resource's own index rows, not the
            # value index (more equality columns) that would scan every row with that value;
            # "+column" keeps it off the value index
            cols = table.c if (drive and not negate) or self.dialect != "sqlite" else Q.Unindexed(table)
            cond = self._values_cond(cols, f)
        if drive and not negate:
            extra = [] if cond is None else [cond]
            return r.c.res_id.in_(select(table.c.res_id).where(*base, *extra))
        correlated = select(table.c.res_id).where(
            table.c.res_type == r.c.res_type, table.c.res_id == r.c.res_id, table.c.param == f.name)
        if cond is not None:
            correlated = correlated.where(cond)
        if per_row:
            # OFFSET 0: PostgreSQL keeps the EXISTS a subplan run for each row in the order
            # it comes, instead of turning it into a (hash) join whose output it sorts again
            correlated = correlated.offset(0)
        return ~correlated.exists() if negate else correlated.exists()

    def _values_cond(self, c: Any, f: Filter) -> Any:
        """OR of a filter's values; many references of one type (or codes of one system)
        become one ``IN``, e.g. the panel's ``subject=Patient/a,Patient/b,…``."""
        if len(f.values) > 1 and f.type in ("reference", "token"):
            groups: dict[Any, list[str]] = {}
            rest: list[Any] = []
            for v in f.values:
                if f.type == "reference" and v[2] is None and v[0]:
                    groups.setdefault(v[0], []).append(v[1])
                elif f.type == "token" and v[0] and v[1] is not None:
                    groups.setdefault(v[0], []).append(v[1])
                else:
                    rest.append(v)
            if any(len(values) > 1 for values in groups.values()):
                parts = [
                    and_(c.target_type == key, c.target_id.in_(values))
                    if f.type == "reference"
                    else and_(c.system == key, c.code.in_(values))
                    for key, values in groups.items()
                ]
                parts += [self._value_cond(c, f, v) for v in rest]
                return or_(*parts)
        return or_(*(self._value_cond(c, f, v) for v in f.values))

    def _value_cond(self, c: Any, f: Filter, v: Any) -> Any:
        if f.type == "token":
            system, code = v
            parts = []
            if code is not None:
                parts.append(c.code == code)
            if system == "":
                parts.append(c.system.is_(None))
            elif system is not None:
                parts.append(c.system == system)
            return and_(*parts)
        if f.type == "string":
            if f.modifier == "exact":
                return c.exact == v
            if f.modifier == "contains":
                return c.value.contains(v, autoescape=True)
            # LIKE with a bound pattern cannot seek the value index: the code-point range of
            # the prefix can (SQLite's BINARY order; COLLATE "C" on PostgreSQL, migration 0009).
            # The range alone is exactly "starts with"; PostgreSQL takes LIKE beside it for a
            # second, independent condition and estimated 66 of 4 323 rows at 51 000 Patients
            bounds = prefix_range(c.value, v)
            if self.dialect == "postgresql" and bounds:
                return and_(*bounds)
            return and_(*bounds, c.value.startswith(v, autoescape=True))
        if f.type == "uri":
            return c.value == v
        if f.type == "date":
            return _date_cond(c.low, c.high, v)
        target_type, target_id, url = v
        if url is not None:
            return c.url == url
        parts = [c.target_id == target_id]
        if target_type:
            parts.append(c.target_type == target_type)
        return and_(*parts)

    def _sort_column(self, rtype: str, key: str) -> Any:
        r = S.resource
        if key == "_id":
            return r.c.res_id
        if key == "_lastUpdated":
            return r.c.last_updated
        sp = params_for(rtype)[key]
        table = S.SP_TABLES[sp.type]
        col = {"date": table.c.low if sp.type == "date" else None,
               "string": getattr(table.c, "value", None),
               "uri": getattr(table.c, "value", None),
               "token": getattr(table.c, "code", None)}[sp.type]
        # per row: SQLite must use the resource's own index rows; left to itself it picks
        # the value index for min() and scans every row of the parameter for each match
        param = Q.Unindexed(table).param if self.dialect == "sqlite" else table.c.param
        return (select(func.min(col)).where(table.c.res_type == rtype, param == key,
                                            table.c.res_id == r.c.res_id)
                .scalar_subquery())

    def _includes(self, conn: Connection, q: Query, matches: list[Stored]) -> list[Stored]:
        if not matches:
            return []
        ref = S.sp_reference
        ids = [m.id for m in matches]
        wanted: set[tuple[str, str]] = set()
        for source, param, target in q.include:
            stmt = select(ref.c.target_type, ref.c.target_id).where(
                ref.c.res_type == source, ref.c.param == param, ref.c.res_id.in_(ids),
                ref.c.target_type.is_not(None))
            if target:
                stmt = stmt.where(ref.c.target_type == target)
            wanted.update((t, i) for t, i in conn.execute(stmt))
        for source, param, target in q.revinclude:
            if target and target != q.resource_type:
                continue
            stmt = select(ref.c.res_id).where(
                ref.c.res_type == source, ref.c.param == param,
                ref.c.target_type == q.resource_type, ref.c.target_id.in_(ids))
            wanted.update((source, i) for (i,) in conn.execute(stmt))
        seen = {(m.resource_type, m.id) for m in matches}
        out: list[Stored] = []
        by_type: dict[str, list[str]] = {}
        for t, i in sorted(wanted - seen):
            by_type.setdefault(t, []).append(i)
        r = S.resource
        for t, id_list in by_type.items():
            rows = conn.execute(select(r.c.res_id, r.c.version_id, r.c.last_updated, r.c.content)
                                .where(r.c.res_type == t, r.c.res_id.in_(id_list),
                                       r.c.deleted == False))  # noqa: E712
            out.extend(Stored(t, row.res_id, str(row.version_id), row.last_updated,
                              raw=row.content) for row in rows)
        return out

    # ---------------------------------------------------------------- history

    def history(self, resource_type: str | None = None, id: str | None = None, *,
                since: str | None = None, count: int = 100,
                cursor: str | None = None) -> HistoryResult:
        """Return history entries (newest first) of one resource, a type, or the whole store.

        ``cursor`` (from the previous page) pages by the store-wide write sequence,
        so writes made while a client pages never shift entries between pages.
        """
        if resource_type is not None:
            _check_type(resource_type)
        if count < 1:
            raise InvalidSearch("_count must be at least 1 for _history")
        v = S.resource_version
        where = []
        if resource_type:
            where.append(v.c.res_type == resource_type)
        if id:
            where.append(v.c.res_id == id)
        if since:
            try:
                where.append(v.c.last_updated >= date_range(since)[0])
            except ValueError:
                raise InvalidSearch(f"_since {since!r} is not a valid instant") from None
        if cursor:
            if not cursor.isdigit() or len(cursor) > 18:  # a write sequence number: 0 … 10**18
                raise InvalidSearch("history cursor is malformed")
            where.append(v.c.seq < int(cursor))
        with self._read() as conn:
            if id and resource_type:
                exists = conn.execute(select(S.resource.c.res_id).where(
                    S.resource.c.res_type == resource_type, S.resource.c.res_id == id)).first()
                if exists is None:
                    raise NotFound(f"{resource_type}/{id} is not known")
            rows = conn.execute(select(v).where(*where).order_by(v.c.seq.desc())
                                .limit(count + 1)).all()
        entries = [Stored(row.res_type, row.res_id, str(row.version_id), row.last_updated,
                          deleted=row.deleted, method=row.method, raw=row.content)
                   for row in rows[:count]]
        next_cursor = str(rows[count - 1].seq) if len(rows) > count else None
        return HistoryResult(entries, next_cursor=next_cursor)

    # ------------------------------------------------------------ transaction

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Process a transaction (all-or-nothing) or batch Bundle; return the response Bundle."""
        return process_bundle(self, bundle)

    # hooks used by process_bundle ------------------------------------------

    def unit_of_work(self) -> UnitOfWork:
        """A connection-bound view of this store for one transaction."""
        return UnitOfWork(StoreOps(self.begin, self._instant, self.statistics, self.base_url,
                                   self._read_in, self._search_in, self._conditional_match))

    def count(self, resource_type: str | None = None) -> int:
        """Return how many current (not deleted) resources there are."""
        r = S.resource
        stmt = select(func.count()).select_from(r).where(r.c.deleted == False)  # noqa: E712
        if resource_type:
            stmt = stmt.where(r.c.res_type == resource_type)
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())


def _stored_current(resource_type: str, id: str, row: Any) -> Stored:
    """The current version from a ``statements.READ`` row; NotFound (no row) or Gone (deleted)."""
    if row is None:
        raise NotFound(f"{resource_type}/{id} is not known")
    version_id, last_updated, deleted, content = row
    if deleted:
        raise Gone(f"{resource_type}/{id} was deleted")
    return Stored(resource_type, id, str(version_id), last_updated, raw=content)


#: Which filter type narrows results most, to drive the query (lower first).
_SELECTIVITY = {"id": 0, "reference": 1, "uri": 2, "string": 3, "date": 4, "lastUpdated": 5,
                "token": 6}


#: Seconds a SQLite writer waits for the other threads' writes (as the busy timeout).
_WRITER_WAIT = 30

#: Matches read at most by one ``search_every`` (far above any patient's or panel's count).
_EVERY = 1_000_000
#: Index rows read at most to estimate how many resources one filter matches (SQLite).
_PROBE_CAP = 5000
#: A driving filter matching this few rows needs no further probing.
_PROBE_ENOUGH = 50
#: Index rows of the driving filter from which the order's index drives a default-order page
#: instead (at fewer, reading and sorting every match costs a few milliseconds at most).
_WALK_MIN = 1000
#: Search conditions kept per store at most (forgotten all at once when full).
_MAX_CLAUSES = 4096
#: Ids per ``IN (…)`` when fetching a page by id (below SQLite's variable limit).
_ID_CHUNK = 500


def _date_cond(low_col: Any, high_col: Any, v: tuple[str, str, str]) -> Any:
    prefix, low, high = v
    if prefix == "eq":
        return and_(low_col >= low, high_col <= high)
    if prefix == "ne":
        return not_(and_(low_col >= low, high_col <= high))
    if prefix in ("gt", "sa"):
        return high_col > high if prefix == "gt" else low_col > high
    if prefix in ("lt", "eb"):
        return low_col < low if prefix == "lt" else high_col < low
    if prefix == "ge":
        return high_col >= low
    return low_col <= high  # le
