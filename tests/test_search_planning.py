"""How SqlStore plans searches: which filter drives, page order, ``_sort``, date ends.

The speed itself is measured by bench/bench_dashboard.py and bench/bench_search.py; these
tests pin down the choices that make it fast and prove the answers stay the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from hw_fhir.store import SqlStore, every_match, iter_all, open_store
from hw_fhir.store.maintenance import refresh_statistics
from hw_fhir.store.query import parse_query


def _task(n: int, *, requester: str, due: str, patient: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": f"t{n:04d}",
        "status": "requested",
        "intent": "order",
        "for": {"reference": f"Patient/{patient}"},
        "requester": {"reference": f"Practitioner/{requester}"},
        "authoredOn": due,
        "restriction": {"period": {"end": due}},
    }


def _load(store: SqlStore, tasks: list[dict[str, Any]]) -> None:
    for start in range(0, len(tasks), 200):
        store.transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": t, "request": {"method": "PUT", "url": f"Task/{t['id']}"}}
                    for t in tasks[start : start + 200]
                ],
            }
        )


@pytest.fixture
def busy_store(sql_store: SqlStore) -> SqlStore:
    """700 old Tasks of one clinician, 3 recent ones, and 5 of another (both databases)."""
    return _fill(sql_store)


@pytest.fixture
def busy_sqlite(sqlite_url: str) -> Iterator[SqlStore]:
    """The same on SQLite alone (the only database probed)."""
    store = open_store(sqlite_url)
    yield _fill(store)
    store.dispose()


def _fill(sql_store: SqlStore) -> SqlStore:
    tasks = [
        _task(n, requester="dr-a", due=f"2025-0{1 + n % 9}-1{n % 10}T10:00:00Z", patient=f"p{n % 9}")
        for n in range(700)
    ]
    tasks += [_task(700 + n, requester="dr-a", due=f"2026-11-2{n}T10:00:00Z") for n in range(3)]
    tasks += [_task(800 + n, requester="dr-b", due=f"2026-11-2{n}T10:00:00Z") for n in range(5)]
    _load(sql_store, tasks)
    return sql_store


def _ranked(store: SqlStore, params: list[tuple[str, str]]) -> list[str]:
    q = parse_query("Task", params)
    with store._read() as conn:
        return [f.name for f in store._rank_filters(conn, "Task", q.filters)]


def test_the_filter_matching_fewest_rows_drives_on_sqlite(busy_store: SqlStore) -> None:
    params = [("requester", "Practitioner/dr-a"), ("due", "ge2026-11-01")]
    found = busy_store.search("Task", params + [("_count", "100")])
    assert sorted(s.id for s in found.matches) == ["t0700", "t0701", "t0702"]
    if busy_store.dialect == "sqlite":
        # a reference filter would drive by the static order; the probe picks the window
        assert _ranked(busy_store, params)[0] == "due"
        # and the other way round when the reference is the narrow one
        narrow = [("requester", "Practitioner/dr-b"), ("due", "ge2025-01-01")]
        assert _ranked(busy_store, narrow)[0] == "requester"
    else:  # PostgreSQL plans for itself: the static order is kept
        assert _ranked(busy_store, params)[0] == "requester"


def test_probes_read_a_capped_number_of_index_rows(busy_sqlite: SqlStore) -> None:
    busy_store = busy_sqlite
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(busy_store.engine, "before_cursor_execute", record)
    try:
        busy_store.search(
            "Task",
            [("requester", "Practitioner/dr-a"), ("due", "ge2026-11-01"), ("_total", "none")],
        )
    finally:
        event.remove(busy_store.engine, "before_cursor_execute", record)
    probes = [s for s in statements if s.lstrip().upper().startswith("SELECT COUNT(*)")]
    assert len(probes) == 2  # one per filter, each reading a capped number of rows
    assert all("FROM (SELECT 1" in p and "LIMIT" in p for p in probes)


def test_default_order_and_paging_survive_the_rowid_fetch(busy_store: SqlStore) -> None:
    params = [("requester", "Practitioner/dr-a"), ("_count", "50"), ("_total", "none")]
    seen: list[tuple[str, str]] = []
    offset = 0
    while True:
        page = busy_store.search("Task", [*params, ("_offset", str(offset))])
        seen += [(s.last_updated, s.id) for s in page.matches]
        if not page.has_more:
            break
        offset += len(page.matches)
    assert len(seen) == 703
    assert seen == sorted(seen)  # lastUpdated, then id
    assert len(set(seen)) == 703


def test_every_match_is_one_query_with_the_pages_answer(busy_store: SqlStore) -> None:
    params = [("requester", "Practitioner/dr-a"), ("due", "ge2025-03-01")]
    paged: list[str] = []
    offset = 0
    while True:  # what a remote server would need: pages of at most MAX_COUNT
        page = busy_store.search("Task", [*params, ("_count", "100"), ("_offset", str(offset))])
        paged += [s.id for s in page.matches]
        if not page.has_more:
            break
        offset += len(page.matches)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(busy_store.engine, "before_cursor_execute", record)
    try:
        # paging parameters of the caller are dropped: every match, whatever was asked
        every = every_match(busy_store, "Task", [*params, ("_count", "5"), ("_offset", "7")])
    finally:
        event.remove(busy_store.engine, "before_cursor_execute", record)
    assert [s.id for s in every] == paged and len(paged) > 500
    fetches = [s for s in statements if "content" in s]
    assert len(fetches) == 1  # one query for them all, not one per page
    assert [t["id"] for t in iter_all(busy_store, "Task", params)] == paged


def test_every_match_pages_through_a_store_without_search_every(busy_store: SqlStore) -> None:
    class Paged:  # a remote or scope-guarded store: only ``search``
        def __init__(self) -> None:
            self.calls = 0

        def search(self, resource_type: str, params: Any) -> Any:
            self.calls += 1
            params = [(k, "400") if k == "_count" else (k, v) for k, v in params]
            return busy_store.search(resource_type, params)

    paged = Paged()
    found = every_match(paged, "Task", [("requester", "Practitioner/dr-a")])  # type: ignore[arg-type]
    assert len(found) == 703 and len({s.id for s in found}) == 703
    assert paged.calls == 2


def test_the_total_is_the_same_on_every_page(busy_store: SqlStore) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    # (pages after the first count only when asked: _total=accurate)
    params = [("requester", "Practitioner/dr-a"), ("_count", "300"), ("_total", "accurate")]
    first = busy_store.search("Task", params)
    assert first.total == 703 and first.has_more
    event.listen(busy_store.engine, "before_cursor_execute", record)
    try:
        last = busy_store.search("Task", [*params, ("_offset", "600")])
    finally:
        event.remove(busy_store.engine, "before_cursor_execute", record)
    assert (last.total, len(last.matches), last.has_more) == (703, 103, False)
    # the last page by offset knows its total without a count over the matches
    assert not [s for s in statements if "count(*)" in s.lower() and "FROM resource" in s]
    beyond = busy_store.search("Task", [*params, ("_offset", "900")])
    assert (beyond.total, beyond.matches) == (703, [])
    cursor = f"{first.matches[-1].last_updated},{first.matches[-1].id}"
    second = busy_store.search("Task", [*params, ("_cursor", cursor)])
    after = busy_store.search(
        "Task",
        [*params, ("_cursor", f"{second.matches[-1].last_updated},{second.matches[-1].id}")],
    )
    assert (second.total, after.total, len(after.matches)) == (703, 703, 103)
    few = busy_store.search("Task", [("requester", "Practitioner/dr-b")])
    assert few.total == 5 and len(few.matches) == 5
    assert busy_store.search("Task", [("requester", "Practitioner/dr-b"),
                                      ("_total", "none")]).total is None
    assert busy_store.search("Task", [("requester", "Practitioner/dr-a"),
                                      ("_summary", "count")]).total == 703


def test_sort_by_a_date_over_many_resources(busy_store: SqlStore) -> None:
    page = busy_store.search(
        "Task", [("requester", "Practitioner/dr-a"), ("_sort", "-authored-on"), ("_count", "4")]
    )
    assert [s.id for s in page.matches][:3] == ["t0702", "t0701", "t0700"]
    authored = [s.resource["authoredOn"] for s in page.matches]
    assert authored == sorted(authored, reverse=True)
    assert page.has_more


def test_date_end_searches_match_with_the_high_index(busy_store: SqlStore) -> None:
    later = busy_store.search("Task", [("due", "gt2026-11-21T00:00:00Z"), ("_count", "100")])
    assert sorted(s.id for s in later.matches) == [
        "t0701", "t0702", "t0801", "t0802", "t0803", "t0804",
    ]
    window = busy_store.search(
        "Task", [("requester", "Practitioner/dr-b"), ("due", "ge2026-11-23"), ("_count", "100")]
    )
    assert sorted(s.id for s in window.matches) == ["t0803", "t0804"]


def test_statistics_are_refreshed_on_postgresql_after_a_load(sql_store: SqlStore) -> None:
    _load(sql_store, [_task(n, requester="dr-a", due="2026-01-01T10:00:00Z") for n in range(20)])
    ran = refresh_statistics(sql_store)
    if sql_store.dialect != "postgresql":
        assert ran is False  # SQLite probes instead of relying on statistics
        return
    assert ran is True
    with sql_store.engine.connect() as conn:
        analyzed = dict(
            conn.execute(
                text(
                    "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                    "WHERE schemaname = current_schema() AND relname IN "
                    "('resource', 'sp_token', 'sp_reference', 'sp_date', 'sp_string', 'sp_uri')"
                )
            ).all()
        )
    assert analyzed == dict.fromkeys(
        ["resource", "sp_token", "sp_reference", "sp_date", "sp_string", "sp_uri"], True
    )
