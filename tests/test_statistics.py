"""Planner statistics kept fresh: the store counts what its writes change and analyzes.

PostgreSQL records a manual ANALYZE in ``pg_stat_user_tables.last_analyze`` (autovacuum's
go to ``last_autoanalyze``), SQLite in ``sqlite_stat1``; both are read here.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from hw_fhir.config import load_settings
from hw_fhir.default_worker import statistics_upkeep
from hw_fhir.errors import VersionConflict
from hw_fhir.services import Services
from hw_fhir.store import SqlStore
from hw_fhir.store.maintenance import StatisticsKeeper, refresh_statistics


def _write(store: SqlStore, count: int, start: int = 0) -> None:
    entries = [{"resource": {"resourceType": "Observation", "status": "final",
                             "code": {"coding": [{"system": "http://loinc.org",
                                                  "code": "44261-6"}]},
                             "subject": {"reference": f"Patient/p{n % 7}"},
                             "valueQuantity": {"value": n % 28}},
                "request": {"method": "POST", "url": "Observation"}}
               for n in range(start, start + count)]
    store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def _analyzed(store: SqlStore) -> dict[str, Any]:
    """Which store tables have statistics from an ANALYZE (name -> when, or the stat row)."""
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            rows = conn.execute(text(
                "SELECT relname, last_analyze FROM pg_stat_user_tables "
                "WHERE relid IN (to_regclass('resource'), to_regclass('sp_token'), "
                "to_regclass('sp_reference'))"))
            return {name: when for name, when in rows if when is not None}
        if conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() is None:
            return {}
        return {name: stat for name, stat in conn.exec_driver_sql(
            "SELECT tbl, stat FROM sqlite_stat1 WHERE tbl IN ('resource', 'sp_token', "
            "'sp_reference')")}


def test_writes_past_the_threshold_analyze_the_changed_tables(sql_store: SqlStore) -> None:
    sql_store.statistics = StatisticsKeeper(sql_store.engine, fraction=0.5, min_rows=100,
                                            check_every=100, background=False)
    _write(sql_store, 40)  # 40 resources: below 100 rows in every table, nothing analyzed
    assert _analyzed(sql_store) == {}

    _write(sql_store, 80, start=40)  # 120 resources, more index rows: past the threshold
    first = _analyzed(sql_store)
    assert set(first) == {"resource", "sp_token", "sp_reference"}

    # less than half of each table again: not analyzed again
    _write(sql_store, 20, start=120)
    assert sql_store.statistics.refresh() == []
    assert _analyzed(sql_store) == first

    # more than half: analyzed again, the new size recorded
    _write(sql_store, 100, start=140)
    assert _analyzed(sql_store)["resource"] != first["resource"]
    if sql_store.dialect == "sqlite":
        assert _analyzed(sql_store)["resource"].split()[0] == "240"


def test_the_store_analyzes_in_the_background_by_default(sql_store: SqlStore) -> None:
    keeper = sql_store.statistics
    assert keeper.background
    keeper.min_rows = keeper.check_every = 100
    _write(sql_store, 150)  # answers before the check; the check runs in its own thread
    keeper.join(30)
    assert {"resource", "sp_token", "sp_reference"} <= set(_analyzed(sql_store))


def test_a_failed_write_counts_nothing(sql_store: SqlStore) -> None:
    sql_store.statistics = StatisticsKeeper(sql_store.engine, min_rows=10, check_every=10,
                                            background=False)
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "x"}}, "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Observation", "id": "gone", "status": "final",
                      "code": {"text": "y"}},
         "request": {"method": "PUT", "url": "Observation/gone", "ifMatch": 'W/"9"'}}]}
    with pytest.raises(VersionConflict):
        sql_store.transaction(bad)
    assert sql_store.statistics.refresh() == []
    assert _analyzed(sql_store) == {}


def test_a_check_that_fails_raises_nothing_and_keeps_its_counts(
        sql_store: SqlStore, caplog: pytest.LogCaptureFixture) -> None:
    """A table dropped under a check (a test's teardown, an operator's restore) is not an
    unhandled error in the statistics thread: the check is logged and tried again later."""
    sql_store.statistics = StatisticsKeeper(sql_store.engine, min_rows=100, check_every=10**6,
                                            background=False)
    _write(sql_store, 150)
    with sql_store.engine.begin() as conn:
        conn.exec_driver_sql('DROP TABLE "sp_reference"')
    assert sql_store.statistics.refresh() == []
    assert "refreshing planner statistics failed" in caplog.text
    assert sql_store.statistics._changed["resource"] >= 150  # counted again at the next check


def test_worker_task_analyzes_what_other_processes_changed(sql_store: SqlStore) -> None:
    """The worker's turn runs the check even when this process wrote nothing itself."""
    _write(sql_store, 150)
    # a keeper that never saw those writes, like a worker process's own store
    sql_store.statistics = StatisticsKeeper(sql_store.engine, fraction=0.1, min_rows=100,
                                            background=False)
    services = Services(settings=load_settings(database_url=sql_store.url), store=sql_store)
    done = statistics_upkeep(services)
    if sql_store.dialect == "postgresql":
        # the server counted the other connection's changes (n_mod_since_analyze); its
        # counters reach the shared statistics within a second or so of the commit
        import time

        deadline = time.time() + 15
        while not done and time.time() < deadline:
            time.sleep(0.5)
            done = len(sql_store.statistics.refresh())
        assert done >= 3 and {"resource", "sp_token", "sp_reference"} <= set(_analyzed(sql_store))
    else:
        # SQLite keeps no change counts: a process analyzes what it wrote itself
        assert done == 0
    assert statistics_upkeep(services) == 0  # not its turn again for five minutes


def test_postgresql_estimates_a_code_from_the_columns_together(sql_store: SqlStore) -> None:
    """Multivariate statistics (migration 0008): res_type, param, code and system depend on
    each other; estimated one by one, a code's rows came out 9x too few."""
    if sql_store.dialect != "postgresql":
        pytest.skip("SQLite plans from sqlite_stat1 and the store's probes")
    sql_store.statistics = StatisticsKeeper(sql_store.engine, background=False)
    codes = ["44261-6", "70274-6", "29463-7", "8867-4", "55758-7"]
    entries = [{"resource": {"resourceType": "Observation", "status": "final",
                             "category": [{"coding": [{"system": "urn:cat", "code": "survey"}]}],
                             "code": {"coding": [{"system": "http://loinc.org",
                                                  "code": codes[n % 5]}]},
                             "subject": {"reference": f"Patient/p{n % 50}"}},
                "request": {"method": "POST", "url": "Observation"}} for n in range(3000)]
    for start in range(0, 3000, 1000):
        sql_store.transaction({"resourceType": "Bundle", "type": "transaction",
                               "entry": entries[start:start + 1000]})
    refresh_statistics(sql_store)
    with sql_store.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN (FORMAT JSON) SELECT res_id FROM sp_token WHERE res_type = 'Observation' "
            "AND param = 'code' AND code = '29463-7' AND system = 'http://loinc.org'").scalar_one()
    estimate = plan[0]["Plan"]["Plan Rows"]
    assert 300 <= estimate <= 1200, estimate  # 600 rows match


def _tasks(store: SqlStore, count: int) -> None:
    entries = [{"resource": {"resourceType": "Task", "status": "requested", "intent": "order",
                             "for": {"reference": f"Patient/p{n % 40}"}},
                "request": {"method": "POST", "url": "Task"}} for n in range(count)]
    store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def test_a_new_type_is_analyzed_though_its_tables_changed_little(sql_store: SqlStore) -> None:
    """20 000 fresh Tasks beside 500 000 Observations: 4 % of the tables, all of the Tasks."""
    if sql_store.dialect != "postgresql":
        pytest.skip("per-type statistics are PostgreSQL's (SQLite plans from the store's probes)")
    sql_store.statistics = StatisticsKeeper(sql_store.engine, fraction=0.5, min_rows=100,
                                            check_every=100, background=False)
    _write(sql_store, 1000)  # analyzed: the tables know Observations, no Tasks
    before = _analyzed(sql_store)
    assert set(before) == {"resource", "sp_token", "sp_reference"}

    _tasks(sql_store, 150)  # 15 % of the resource table: below the tables' fraction (50 %)
    after = _analyzed(sql_store)
    assert after["resource"] != before["resource"] and after["sp_reference"] != before["sp_reference"]
    with sql_store.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) SELECT res_id FROM resource "
                                    "WHERE res_type = 'Task'").scalar_one()
    assert plan[0]["Plan"]["Plan Rows"] >= 100  # was 1 before the Tasks were analyzed

    _tasks(sql_store, 50)  # 50 more of 150 Tasks: under the per-type fraction, nothing analyzed
    assert sql_store.statistics.refresh() == []
