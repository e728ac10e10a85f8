"""A default-order page of a filter matching many resources walks the type's lastUpdated index.

``Patient?family=<a name one Patient in 12 has>&_count=20`` at 1 000 000 resources: driven by
the filter, the page reads and sorts all ~4 300 matches (SQLite 27 ms; PostgreSQL, which
estimated 90 of them, 46–133 ms); walking the Patients in page order and checking each
against the filter reads about 20 × 12 of them. The store probes how many index rows the filter
has (a capped count on SQLite, the planner's estimate on PostgreSQL) and walks from
``sql._WALK_MIN`` of them on, lowered here so 1 200 Patients cross it (1 in 4 is an Okafor).

PostgreSQL estimates how many Patients the filter's index rows join from ``res_id``'s distinct
values over every resource of every type, so the test puts other resources beside the
Patients (rows of another type straight into the resource table: only their number matters
to the planner); with them the statement before this change sorted every match.

The plans are asked of the database (``EXPLAIN QUERY PLAN`` / ``EXPLAIN``, fresh statistics);
the pages are compared with :meth:`SqlStore.search_every`, which never walks. How fast
it is: ``bench/bench_scale.py`` (Patient?family&_count=20).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event
from test_paging_plans import explain

from hw_fhir.store import SqlStore
from hw_fhir.store import sql as sql_module
from hw_fhir.store.maintenance import refresh_statistics

PATIENTS = 1200
FAMILIES = ["Okafor", "Rivera", "Nguyen", "Schmidt"]
OTHERS = 100_000


def _fill(store: SqlStore, late: int = 0) -> None:
    """PATIENTS Patients, families in turn; then ``late`` more, all named Late."""
    families = [FAMILIES[n % 4] for n in range(PATIENTS)] + ["Late"] * late
    entries = [{"resource": {"resourceType": "Patient", "id": f"pt{n:05d}",
                             "name": [{"family": family, "given": ["Alex"]}],
                             "gender": ["female", "male"][n % 2]},
                "request": {"method": "PUT", "url": f"Patient/pt{n:05d}"}}
               for n, family in enumerate(families)]
    for start in range(0, len(entries), 400):
        store.transaction({"resourceType": "Bundle", "type": "transaction",
                           "entry": entries[start:start + 400]})
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO resource (res_type, res_id, version_id, last_updated, deleted, content) "
                "SELECT 'Basic', 'other-' || g, 1, '2026-01-01T00:00:00.000000Z', false, '{}' "
                f"FROM generate_series(1, {OTHERS}) g")
        refresh_statistics(store)
    else:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def _pages(store: SqlStore, params: list[tuple[str, str]],
           pages: int) -> tuple[list[Any], list[str]]:
    """The first ``pages`` pages by the cursor; return them and each page statement's plan."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if "ORDER BY" in statement and not statement.lstrip().startswith("SELECT count("):
            sent.append((statement, parameters))

    results = []
    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        page_params = list(params)
        for _ in range(pages):
            result = store.search("Patient", page_params)
            results.append(result)
            if not result.has_more:
                break
            last = result.matches[-1]
            page_params = [*params, ("_cursor", f"{last.last_updated},{last.id}")]
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    return results, [explain(store, statement, parameters) for statement, parameters in sent]


def _every(store: SqlStore, params: list[tuple[str, str]]) -> list[str]:
    return [m.id for m in store.search_every("Patient", [p for p in params if p[0] != "_count"])]


def test_a_filter_matching_many_walks_the_lastupdated_index(
        sql_store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_module, "_WALK_MIN", 100, raising=False)
    _fill(sql_store)
    params = [("family", "okafor"), ("_count", "20")]

    results, plans = _pages(sql_store, params, 3)

    # the same pages, in the same order, as every match in one query; the total (300
    # Okafors) is beyond the cap of 100: none on the first page, more to come
    every = _every(sql_store, params)
    assert len(every) == PATIENTS // 4
    assert [m.id for r in results for m in r.matches] == every[:60]
    assert [r.has_more for r in results] == [True] * 3
    assert results[0].total is None
    assert len(plans) == 3  # the first page and two cursor pages, each one statement
    for plan in plans:
        # the Patients are read in page order and checked against the filter one by one ...
        assert "ix_resource_type_updated" in plan, plan
        assert "ix_sp_string_resource" in plan, plan
        # ... not every Okafor found by the value index and sorted
        assert "ix_sp_string_value" not in plan, plan
        if sql_store.dialect == "sqlite":
            assert "TEMP B-TREE" not in plan, plan  # the index is in page order
        else:
            assert "SubPlan" in plan, plan  # checked per row, not joined and sorted
            assert "Sort" not in plan, plan  # the index is in page order
            assert "Hash" not in plan, plan


def test_matches_far_along_the_order_fall_back_to_the_filter(
        sql_store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 Patients named Late, created after the other 1 200: the walk reads as many
    Patients as the filter has index rows, finds none, and the filter drives the page; the
    next page walks from the cursor, among the Late ones."""
    monkeypatch.setattr(sql_module, "_WALK_MIN", 100, raising=False)
    _fill(sql_store, late=300)
    params = [("family", "late"), ("_count", "20")]
    results, plans = _pages(sql_store, params, 2)
    every = _every(sql_store, params)
    assert len(every) == 300
    assert [m.id for r in results for m in r.matches] == every[:40]
    assert results[0].has_more and results[0].total is None
    assert len(plans) == 3, plans
    assert "ix_resource_type_updated" in plans[0] and "ix_sp_string_value" not in plans[0]
    assert "ix_sp_string_value" in plans[1]  # the first page again, driven by the filter
    assert "ix_resource_type_updated" in plans[2] and "ix_sp_string_value" not in plans[2]
    # the last page by offset, and two filters, are right too
    tail = sql_store.search("Patient", [*params, ("_offset", "290")])
    assert [m.id for m in tail.matches] == every[290:] and not tail.has_more
    mixed = [("family", "okafor"), ("gender", "female"), ("_count", "20")]
    assert [m.id for m in sql_store.search("Patient", mixed).matches] == _every(sql_store, mixed)[:20]


def test_postgresql_total_beyond_the_cap_is_found_on_the_walk(
        sql_store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the filter has more index rows than the probe's cap, the default total (counted
    up to TOTAL_CAP) is decided on the walk too: the capped count would first read every
    index row of the filter. Probe cap lowered to 100 rows and the total's to 10 here."""
    if sql_store.dialect != "postgresql":
        pytest.skip("SQLite's capped count already stops at the cap (test_totals)")
    from hw_fhir.store import totals

    monkeypatch.setattr(sql_module, "_WALK_MIN", 100, raising=False)
    monkeypatch.setattr(sql_module, "_PROBE_CAP", 100)
    monkeypatch.setattr(totals, "TOTAL_CAP", 10)
    _fill(sql_store)
    counts: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith("SELECT count("):
            counts.append(statement)

    params = [("family", "okafor"), ("_count", "5")]
    event.listen(sql_store.engine, "before_cursor_execute", capture)
    try:
        result = sql_store.search("Patient", params)
        estimate = sql_store.search("Patient", [*params, ("_total", "estimate")])
    finally:
        event.remove(sql_store.engine, "before_cursor_execute", capture)
    assert [m.id for m in result.matches] == _every(sql_store, params)[:5]
    assert result.total is None and result.has_more
    assert isinstance(estimate.total, int) and estimate.total > 10  # the planner's
    assert len(counts) == 2 and all("AS walk" in c for c in counts), counts
    assert not any("sp_string.res_id FROM sp_string" in c for c in counts), counts


def test_migration_0010_on_a_database_with_patients(db_url: str) -> None:
    """Migration 0010 on an existing database: ``ix_resource_type_updated`` gains ``res_id``
    and the pages stay the same; its downgrade gives back ``(res_type, last_updated)`` (and
    0010 runs again after it), on SQLite and PostgreSQL."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    from hw_fhir.migrations import alembic_config, upgrade

    store = SqlStore(db_url)
    try:
        cfg = alembic_config(store.engine)
        script = ScriptDirectory.from_config(cfg)
        others = [h for h in script.get_heads()  # the heads that do not need 0010 first
                  if all(r.revision != "0010_type_upd_id"
                         for r in script.iterate_revisions(h, "base"))]
        for head in [*others, "0009_string_c"]:
            upgrade(store.engine, head)
        store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": f"pt{n:02d}",
                          "name": [{"family": FAMILIES[n % 4]}]},
             "request": {"method": "PUT", "url": f"Patient/pt{n:02d}"}} for n in range(30)]})

        def columns() -> list[str]:
            with store.engine.connect() as conn:
                found = [ix["column_names"] for ix in inspect(conn).get_indexes("resource")
                         if ix["name"] == "ix_resource_type_updated"]
            assert len(found) == 1, found
            return found[0]

        def pages() -> list[str]:
            results, _plans = _pages(store, [("_count", "7")], 10)
            return [m.id for r in results for m in r.matches]

        assert columns() == ["res_type", "last_updated"]
        before = pages()
        assert sorted(before) == [f"pt{n:02d}" for n in range(30)]

        upgrade(store.engine, "0010_type_upd_id")
        assert columns() == ["res_type", "last_updated", "res_id"]
        assert pages() == before

        command.downgrade(cfg, "0010_type_upd_id-1")
        assert columns() == ["res_type", "last_updated"]
        with store.engine.connect() as conn:
            revisions = set(conn.exec_driver_sql("SELECT version_num FROM alembic_version")
                            .scalars())
        assert "0009_string_c" in revisions and "0010_type_upd_id" not in revisions
        assert pages() == before

        upgrade(store.engine, "0010_type_upd_id")  # the downgraded database takes 0010 again
        assert columns() == ["res_type", "last_updated", "res_id"]
        assert pages() == before
    finally:
        store.dispose()
