"""Keyset paging stays O(page): the search filter drives, the cursor only bounds.

Each test stores a few thousand Observations, one patient's 110 spread evenly through them,
captures the SQL the store sends for a ``_cursor`` page of that patient's Observations and
asks the database for its plan (``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN`` on
PostgreSQL, after fresh statistics on both). A plan that reaches the rows through the
type's lastUpdated index or the primary key range from the cursor reads every resource
written after the cursor (1 s for ten pages at 100 000 Observations); these tests fail on
it. How fast the pages are is measured by bench/bench_peers.py, not here.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from hw_fhir.store import SqlStore
from hw_fhir.store.maintenance import refresh_statistics

OBSERVATIONS = 4000
PAGER_OBSERVATIONS = 20


def _observation(n: int, subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
            "subject": {"reference": f"Patient/{subject}"},
            "effectiveDateTime": f"2026-03-{1 + n % 28:02d}T10:00:00Z",
            "valueQuantity": {"value": n % 28}}


def _fill(store: SqlStore) -> None:
    spacing = OBSERVATIONS // PAGER_OBSERVATIONS
    entries = []
    for n in range(OBSERVATIONS):
        pager = n % spacing == 0 and n // spacing < PAGER_OBSERVATIONS
        subject = "pager" if pager else f"p{n % 150}"
        entries.append({"resource": _observation(n, subject),
                        "request": {"method": "POST", "url": "Observation"}})
    for start in range(0, len(entries), 1000):
        store.transaction({"resourceType": "Bundle", "type": "transaction",
                           "entry": entries[start:start + 1000]})


def explain(store: SqlStore, statement: str, parameters: Any) -> str:
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        if store.dialect == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            plan = "\n".join(str(row[3]) for row in cur.fetchall())
        else:
            cur.execute("EXPLAIN " + statement, parameters)
            plan = "\n".join(str(row[0]) for row in cur.fetchall())
        cur.close()
    return plan


def _page_plans(store: SqlStore) -> tuple[list[str], list[str]]:
    """Page through the pager's Observations; return the ids in page order and each page's plan."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        if "ORDER BY" in statement:
            sent.append((statement, parameters))

    ids: list[str] = []
    params = [("subject", "Patient/pager"), ("_count", "2")]
    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        for _ in range(20):
            page = store.search("Observation", params)
            ids.extend(m.id for m in page.matches)
            if not page.has_more:
                break
            last = page.matches[-1]
            params = [("subject", "Patient/pager"), ("_count", "2"),
                      ("_cursor", f"{last.last_updated},{last.id}")]
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    return ids, [explain(store, statement, parameters) for statement, parameters in sent]


@pytest.mark.parametrize("statistics", [False, True], ids=["no-statistics", "analyzed"])
def test_cursor_pages_are_driven_by_the_filter(sql_store: SqlStore, statistics: bool) -> None:
    if not statistics and sql_store.dialect == "postgresql":
        pytest.skip("PostgreSQL always plans from statistics (autovacuum keeps some)")
    _fill(sql_store)
    if statistics:
        refresh_statistics(sql_store)
        if sql_store.dialect == "sqlite":
            with sql_store.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")

    ids, plans = _page_plans(sql_store)

    # the pages hold every one of the patient's Observations once, in lastUpdated order
    assert len(ids) == len(set(ids)) == PAGER_OBSERVATIONS
    every = sql_store.search_every("Observation", [("subject", "Patient/pager")])
    assert ids == [m.id for m in every]
    assert len(plans) == 10  # the first page and nine cursor pages
    for plan in plans:
        # the subject's index rows drive ...
        assert "ix_sp_reference_value" in plan, plan
        # ... and no page walks the type's lastUpdated order or the key range after the cursor
        assert "ix_resource_type_updated" not in plan, plan
        if sql_store.dialect == "sqlite":
            assert "MULTI-INDEX OR" not in plan, plan
            assert "res_id>?" not in plan.replace(" ", ""), plan
        else:
            assert "Seq Scan on resource" not in plan, plan
