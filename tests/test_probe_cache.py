"""The pages of one search probe its filter once: the probe's outcome is kept a few seconds.

A default-order search with an index filter probes it first (``SqlStore._plan_filters``: a
capped count on SQLite, a planning-only ``EXPLAIN`` round trip on PostgreSQL) to decide
whether the type's lastUpdated index drives. Ten ``_count=10`` pages of one patient's
Observations were 11 statements before the probe (ten pages and the first page's total),
21 with one probe per page; with the outcome kept (:mod:`hw_fhir.store.probes`) 12.

What goes to the database is counted where it goes: SQLAlchemy's statement events on SQLite;
libpq's own protocol trace on PostgreSQL, whose ``EXPLAIN`` goes through the driver's cursor
(no SQLAlchemy event sees it). A kept outcome only picks a plan: pages after the filter grew
or shrank under a stale one are the same as every match read in one query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import event

from hw_fhir.store import SqlStore
from hw_fhir.store import sql as sql_module
from hw_fhir.store.maintenance import refresh_statistics
from hw_fhir.store.probes import ProbeCache
from hw_fhir.store.query import parse_query

from wire_support import libpq_trace

PAGER = "Patient/pager"
PARAMS = [("subject", PAGER), ("_count", "10")]
#: ten pages and the first page's total: what ten pages cost before every page probed
OLD_STATEMENTS = 11


def _load(store: SqlStore, pager: int, others: int = 20, prefix: str = "o") -> None:
    """``pager`` Observations of the pager patient, after ``others`` of other patients."""
    entries = [{"resource": {"resourceType": "Observation", "id": f"{prefix}{n:04d}",
                             "status": "final", "code": {"text": "PHQ-9"},
                             "subject": {"reference": PAGER if n >= others
                                         else f"Patient/other{n}"}},
                "request": {"method": "PUT", "url": f"Observation/{prefix}{n:04d}"}}
               for n in range(others + pager)]
    for start in range(0, len(entries), 500):
        store.transaction({"resourceType": "Bundle", "type": "transaction",
                           "entry": entries[start:start + 500]})
    store.statistics.join(timeout=30)
    refresh_statistics(store)  # PostgreSQL's probe is its planner's estimate


def _ten_pages(store: SqlStore, params: list[tuple[str, str]] = PARAMS) -> list[str]:
    """The ids of the first ten pages, following the cursor."""
    ids: list[str] = []
    page_params = list(params)
    for _ in range(10):
        result = store.search("Observation", page_params)
        ids.extend(m.id for m in result.matches)
        if not result.has_more:
            break
        last = result.matches[-1]
        page_params = [*params, ("_cursor", f"{last.last_updated},{last.id}")]
    return ids


def _every(store: SqlStore, params: list[tuple[str, str]] = PARAMS) -> list[str]:
    return [m.id for m in store.search_every("Observation",
                                             [p for p in params if p[0] != "_count"])]


def _sent(store: SqlStore, tmp_path: Path, fn: Callable[[], Any]) -> tuple[list[str], Any]:
    """The statements ``fn`` sends to the database (no BEGIN, COMMIT or ROLLBACK), and what
    it returns. PostgreSQL: one per round trip of libpq's trace of this thread's connections
    (an extended-protocol Sync, or a simple-protocol Query), EXPLAIN included."""
    if store.dialect == "sqlite":
        seen: list[str] = []

        def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            seen.append(statement)

        event.listen(store.engine, "before_cursor_execute", note)
        try:
            out = fn()
        finally:
            event.remove(store.engine, "before_cursor_execute", note)
        return [s for s in seen if s.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK")], out
    store.engine.dispose()  # the searches run on new pooled connections, this thread's traced
    with libpq_trace(store.engine, tmp_path / "libpq.trace") as path:
        out = fn()
    sent: list[str] = []
    statement, executed = "", False
    for record in path.read_text().split("\n20"):  # a record starts with its timestamp
        parts = record.split("\t")
        if len(parts) < 4 or parts[1] != "F":
            continue
        message = " ".join(p.strip() for p in parts[3:])
        if message.startswith("Parse"):
            statement, executed = message, False
        elif message.startswith("Execute"):
            executed = True
        elif message.startswith("Sync"):
            # psycopg prepares a statement it has run five times on this connection with a
            # Parse + Sync of its own (once per connection and shape): not a statement run
            if executed:
                sent.append(statement)
            executed = False
        elif message.startswith("Query") and message.split()[1].strip('"').upper() not in (
                "BEGIN", "COMMIT", "ROLLBACK"):
            sent.append(message)
    return sent, out


def _probes(sent: list[str]) -> int:
    return sum(1 for s in sent if "EXPLAIN" in s or ("count(*)" in s and "FROM sp_" in s
                                                      and "FROM resource" not in s))


@pytest.mark.parametrize("walk", [False, True], ids=["filter drives", "walk"])
def test_ten_pages_probe_the_filter_once(sql_store: SqlStore, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, walk: bool) -> None:
    """Ten pages cost the statements they cost before the probe, plus the one probe:
    whether the filter drives (110 Observations) or, from ``_WALK_MIN`` lowered to 100
    index rows, the type's lastUpdated index is walked."""
    if walk:
        monkeypatch.setattr(sql_module, "_WALK_MIN", 100)
    _load(sql_store, 110)
    sent, ids = _sent(sql_store, tmp_path, lambda: _ten_pages(sql_store))
    assert ids == _every(sql_store)[:100]
    assert _probes(sent) == 1, sent
    assert len(sent) <= OLD_STATEMENTS + 1, sent
    # the pages were read as planned: ten walks of the index, or none
    walked = [s for s in sent if "AS walk" in s or "coalesce((SELECT resource.last_updated" in s]
    assert len(walked) == (10 if walk else 0), sent


def test_an_old_outcome_is_probed_again(sql_store: SqlStore, tmp_path: Path) -> None:
    """After the outcome's lifetime the next page probes again (once)."""
    now = [1000.0]
    sql_store.probes.clock = lambda: now[0]
    _load(sql_store, 30)
    first, _ = _sent(sql_store, tmp_path, lambda: _ten_pages(sql_store))
    again, _ = _sent(sql_store, tmp_path, lambda: _ten_pages(sql_store))
    now[0] += sql_store.probes.lifetime
    later, _ = _sent(sql_store, tmp_path, lambda: _ten_pages(sql_store))
    assert [_probes(first), _probes(again), _probes(later)] == [1, 0, 1]


def _walks(sent: list[str]) -> int:
    """Pages read by walking the type's lastUpdated index (PostgreSQL / SQLite)."""
    return sum(1 for s in sent if "AS walk" in s or "coalesce((SELECT resource.last_updated" in s)


def test_a_stale_outcome_changes_no_page(sql_store: SqlStore, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The outcome kept says few while the filter now has many (the filter drives), then
    many while it has few again (the walk finds too few and the filter drives): the pages
    are every match, in order, each time."""
    monkeypatch.setattr(sql_module, "_WALK_MIN", 100)
    key = ("Observation", _filter(sql_store))
    _load(sql_store, 30)
    assert _ten_pages(sql_store) == _every(sql_store)  # probed: about 30 index rows
    few = sql_store.probes.get(key, 5000)
    assert few is not None and few < 100
    _load(sql_store, 150, others=0, prefix="p")  # now 180, still "few" for the store
    assert sql_store.probes.get(key, 5000) == few
    sent, ids = _sent(sql_store, tmp_path, lambda: _ten_pages(sql_store))
    assert ids == _every(sql_store)[:100]
    assert _probes(sent) == 0 and _walks(sent) == 0, sent  # the filter drove every page

    sql_store.probes.clock = lambda: 1e12  # expired: probed again, about 180 (walked)
    assert _ten_pages(sql_store) == _every(sql_store)[:100]
    sql_store.probes.clock = lambda: 1e12 + 1
    many = sql_store.probes.get(key, 5000)
    assert many is not None and many >= 100
    for n in range(150):  # "many" kept, 30 left, far behind the walk's start
        sql_store.delete("Observation", f"p{n:04d}")
    _load(sql_store, 5, others=200, prefix="q")  # 200 Observations of others ahead of 5 more
    every = _every(sql_store)
    assert len(every) == 35
    sent, ids = _sent(sql_store, tmp_path, lambda: _ten_pages(sql_store))
    assert ids == every
    # four pages: two walked; two walked too far and were read again driven by the
    # filter; and the first page's total
    assert _probes(sent) == 0 and _walks(sent) == 4 and len(sent) == 4 + 2 + 1, sent
    offset = [*PARAMS, ("_offset", "20")]
    assert [m.id for m in sql_store.search("Observation", offset).matches] == every[20:30]


def _filter(store: SqlStore) -> Any:
    """The pager's filter, as the store keys its outcome."""
    return parse_query("Observation", PARAMS, base_url=store.base_url).filters[0]


def test_the_cache_is_bounded_and_knows_what_a_cap_hides() -> None:
    now = [0.0]
    cache = ProbeCache(lifetime=30, entries=3, clock=lambda: now[0])
    cache.put("exact", 40, 5000)  # all 40 counted
    cache.put("capped", 50, 50)  # reached its cap of 50: at least 50
    cache.put("estimate", 7000, None)  # PostgreSQL's estimate, not capped
    assert cache.get("exact", 5000) == 40 and cache.get("exact", 10) == 10
    assert cache.get("capped", 50) == 50 and cache.get("capped", 20) == 20
    assert cache.get("capped", 5000) is None  # beyond its cap: not known
    assert cache.get("estimate", 5000) == 5000 and cache.get("estimate", 10_000) == 7000
    assert cache.get("unknown", 5000) is None
    cache.put("fourth", 1, None)  # full: the others are forgotten
    assert len(cache) <= 3 and cache.get("fourth", 5) == 1
    now[0] = 30.0
    assert cache.get("fourth", 5) is None
    cache.put(("unhashable", [1]), 1, None)  # never kept, never fails
    assert cache.get(("unhashable", [1]), 5) is None
