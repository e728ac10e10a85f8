"""Bundle.total costs at most TOTAL_CAP matches unless the client asks for it exactly.

An exact total reads every match (about 100 000 for Observation?code&date at 1 000 000
Observations); a search that did not ask gets the exact count only while it is small, no
total beyond it. Real SQLite and PostgreSQL; the cap is lowered so a few resources cross it.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from hw_fhir.store import SqlStore
from hw_fhir.store import totals

MATCHES = 12


def _fill(store: SqlStore) -> None:
    entries = [{"resource": {"resourceType": "Observation", "status": "final",
                             "code": {"coding": [{"system": "http://loinc.org",
                                                  "code": "44261-6" if n < MATCHES else "8867-4"}]},
                             "subject": {"reference": f"Patient/p{n % 3}"}},
                "request": {"method": "POST", "url": "Observation"}} for n in range(MATCHES + 5)]
    store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})


@pytest.fixture
def store(sql_store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> SqlStore:
    _fill(sql_store)
    monkeypatch.setattr(totals, "TOTAL_CAP", 5)
    return sql_store


def _counted_rows(store: SqlStore, params: list[tuple[str, str]]) -> tuple[Any, list[str]]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        result = store.search("Observation", params)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    return result, [s for s in statements if "count(*)" in s.lower()]


CODE = ("code", "http://loinc.org|44261-6")


def test_a_total_nobody_asked_for_is_counted_up_to_the_cap(store: SqlStore) -> None:
    result, counts = _counted_rows(store, [CODE, ("_count", "2")])
    assert len(result.matches) == 2 and result.has_more
    assert result.total is None  # more than the cap (5) match: no total, the next link says more
    assert len(counts) == 1 and "LIMIT" in counts[0].upper()  # the count stopped at the cap
    few = store.search("Observation", [CODE, ("subject", "Patient/p0"), ("_count", "2")])
    assert few.total == 4 and few.has_more  # under the cap: exact


def test_accurate_and_summary_count_are_exact(store: SqlStore) -> None:
    result, counts = _counted_rows(store, [CODE, ("_count", "2"), ("_total", "accurate")])
    assert result.total == MATCHES
    assert len(counts) == 1 and "LIMIT" not in counts[0].upper()
    assert store.search("Observation", [CODE, ("_summary", "count")]).total == MATCHES
    assert store.search("Observation", [CODE, ("_count", "0")]).total == MATCHES


def test_estimate_beyond_the_cap(store: SqlStore) -> None:
    result = store.search("Observation", [CODE, ("_count", "2"), ("_total", "estimate")])
    if store.dialect == "postgresql":  # the planner's estimate, never below what was counted
        assert isinstance(result.total, int) and result.total > 5
    else:  # SQLite has no estimate to give
        assert result.total is None
    small = store.search("Observation", [CODE, ("subject", "Patient/p1"), ("_total", "estimate"),
                                         ("_count", "1")])
    assert small.total == 4


def test_none_counts_nothing(store: SqlStore) -> None:
    result, counts = _counted_rows(store, [CODE, ("_count", "2"), ("_total", "none")])
    assert result.total is None and counts == []
