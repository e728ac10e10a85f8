"""Bundle.total costs at most TOTAL_CAP matches unless the client asks for it exactly.

An exact total reads every match (about 100 000 for Observation?code&date at 1 000 000
Observations); a search that did not ask gets the exact count only while it is small, no
total beyond it. Real SQLite and PostgreSQL; the cap is lowered so a few resources cross it.
"""

from __future__ import annotations

import re
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
    # the totals' counts, not the probes of how many index rows a filter has (sql._estimate)
    return result, [s for s in statements if "count(*)" in s.lower()
                    and not re.match(r"SELECT count\(\*\) AS count_1\s+FROM \(SELECT 1\s+FROM sp_", s)]


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


# ---------------------------------------------------------------- plans on SQLite


def _plan_of(store: SqlStore, params: list[tuple[str, str]], rtype: str,
             pick: Any) -> tuple[Any, str]:
    """Run a search; return it and the EXPLAIN QUERY PLAN of the statement ``pick`` chooses."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        result = store.search(rtype, params)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    statement, parameters = next(s for s in sent if pick(s[0]))
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        plan = "\n".join(str(row[3]) for row in cur.fetchall())
        cur.close()
    return result, plan


def _dated(store: SqlStore, n: int) -> None:
    entries = [{"resource": {"resourceType": "Observation", "status": "final",
                             "code": {"coding": [{"system": "http://loinc.org",
                                                  "code": ["44261-6", "8867-4"][k % 2]}]},
                             "subject": {"reference": f"Patient/p{k % 7}"},
                             "effectiveDateTime": f"2026-{1 + k % 12:02d}-10T10:00:00Z"},
                "request": {"method": "POST", "url": "Observation"}} for k in range(n)]
    store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def test_sqlite_capped_count_walks_the_driving_index_and_stops(tmp_path: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No list of every res_id the driving filter matches: the count stops at the cap."""
    from hw_fhir.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/count.db")
    try:
        _dated(store, 300)
        monkeypatch.setattr(totals, "TOTAL_CAP", 20)
        params = [("date", "ge2026-03-01"), ("code", "http://loinc.org|44261-6"), ("_count", "5")]
        result, plan = _plan_of(store, params, "Observation",
                                lambda s: "count(*)" in s and "DISTINCT" in s)
        assert result.total is None and result.has_more
        assert "LIST SUBQUERY" not in plan, plan  # no list of every match built first
        assert "ix_sp_date_high" in plan or "ix_sp_token_value" in plan, plan
        assert "TEMP B-TREE FOR DISTINCT" in plan, plan  # not the res_id-ordered index
        # and the counted total is right where it is below the cap
        monkeypatch.setattr(totals, "TOTAL_CAP", 1000)
        expected = len([k for k in range(300) if k % 2 == 0 and 1 + k % 12 >= 3])
        assert store.search("Observation", params).total == expected
        assert store.search("Observation", params + [("_total", "accurate")]).total == expected
    finally:
        store.dispose()


def test_sqlite_string_prefix_seeks_the_value_index(tmp_path: Any) -> None:
    """Patient?family=riv seeks the value index by a code-point range (LIKE cannot)."""
    from hw_fhir.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/family.db")
    names = ["Rivera", "Riviere", "Rivas", "Rossi", "Rïvka", "Riv\U0010ffffz", "Riw", "Ri"]
    try:
        for name in names:
            store.create({"resourceType": "Patient", "name": [{"family": name}]})
        result, plan = _plan_of(store, [("family", "riv")], "Patient",
                                lambda s: "ORDER BY" in s)
        assert "value>? AND value<?" in plan.replace(" ", "").replace("AND", " AND "), plan
        found = sorted(m.resource["name"][0]["family"] for m in result.matches)
        assert found == sorted(["Rivera", "Riviere", "Rivas", "Rïvka", "Riv\U0010ffffz"])  # accents too
        edge = store.search("Patient", [("family", "riv\U0010ffff")]).matches
        assert [m.resource["name"][0]["family"] for m in edge] == ["Riv\U0010ffffz"]
    finally:
        store.dispose()


def test_prefix_range_bounds() -> None:
    from sqlalchemy import column

    from hw_fhir.store.searchparams import prefix_range

    def bounds(prefix: str) -> list[str]:
        return [c.right.value for c in prefix_range(column("v"), prefix)]

    assert bounds("riv") == ["riv", "riw"]
    assert bounds("a\ud7ff") == ["a\ud7ff", "a\ue000"]
    assert bounds("a\U0010ffff") == ["a\U0010ffff", "b"]
    assert bounds("\U0010ffff") == ["\U0010ffff"]
    assert bounds("") == []
