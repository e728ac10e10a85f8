"""String search is "starts with", case- and accent-insensitive; it seeks the value index.

The prefix is matched by the code-point range ``prefix <= value < successor(prefix)``
(``searchparams.prefix_range``; SQLite also keeps ``LIKE 'prefix%'`` beside it), which a
btree can seek: SQLite's BINARY collation is code-point order, and on PostgreSQL
``sp_string.value`` is ``COLLATE "C"`` (migration 0009). Real SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import event

from hw_fhir.store import SqlStore
from hw_fhir.store.maintenance import StatisticsKeeper
from hw_fhir.store.searchparams import normalize_string

FAMILIES = [
    "Rivera", "Riviere", "Rivas", "Rïvka", "RIVERS", "Riw", "Ri", "Rossi", "Smith", "Smíth",
    "Straße", "Strasse", "Øster", "Œuvre", "100% Smith", "100_Smith", "1000Smith", "a_b", "axb",
    "a%b", "a/b", "a\\b", "Nguyễn", "Ngu", "Ωmega", "ωmega", "Żak", "Zak", "李", "李小龍",
    "李\U0010ffff", "李\U0010ffffz", "\U0010ffff", "\U0010ffff\U0010ffff", "\ud7ffx", "\ue000x",
    "\U0001f600 smile", "z\U0010ffff", "{brace", "~tilde", "\x7fdel",
]

PREFIXES = [
    "riv", "RIV", "rï", "rív", "ri", "r", "smi", "smí", "straß", "strass", "stras", "ø", "oe",
    "œ", "100%", "100_", "100", "%", "_", "a_", "a%", "a/", "a", "ngu", "nguyen", "ω",
    "Ω", "ż", "z", "李", "李\U0010ffff", "\U0010ffff", "\U0010ffff\U0010ffff", "\ud7ff", "\ue000",
    "\U0001f600", "z\U0010ffff", "{", "~", "\x7f", " riv ", "nobody",
]


def _family(store: SqlStore, prefix: str) -> list[str]:
    found = store.search("Patient", [("family", prefix), ("_count", "1000")]).matches
    return sorted(m.resource["name"][0]["family"] for m in found)


def test_prefix_results_are_starts_with_of_the_normalised_text(sql_store: SqlStore) -> None:
    """Identical on both databases: what Python's ``startswith`` of the normalised texts says,
    for accents, case folding (ß is ss), LIKE's own '%' and '_', the escape character and the
    highest code points (where the range's upper bound has to bump an earlier character)."""
    for name in FAMILIES:
        sql_store.create({"resourceType": "Patient", "name": [{"family": name}]})
    for prefix in PREFIXES:
        wanted = sorted(n for n in FAMILIES
                        if normalize_string(n).startswith(normalize_string(prefix)))
        assert _family(sql_store, prefix) == wanted, prefix
    # a few that must match something, so the comparison above is not empty-handed
    assert _family(sql_store, "100%") == ["100% Smith"]
    assert _family(sql_store, "a_") == ["a_b"]
    assert _family(sql_store, "李\U0010ffff") == ["李\U0010ffff", "李\U0010ffffz"]
    assert _family(sql_store, "straß") == ["Strasse", "Straße"]
    assert _family(sql_store, "a\\\\") == ["a\\b"]  # FHIR escapes a backslash as \\


def _explain(store: SqlStore, params: list[tuple[str, str]]) -> tuple[Any, str, Any]:
    """Run the search; return it and EXPLAIN of its page statement with the same values."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        result = store.search("Patient", params)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    statement, parameters = next(s for s in sent if "ORDER BY" in s[0] and "sp_string" in s[0])
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        cur.execute("EXPLAIN " + statement, parameters)
        plan = "\n".join(str(row[0]) for row in cur.fetchall())
        cur.close()
    return result, plan, (statement, parameters)


def _generic_plan(store: SqlStore, statement: str, parameters: dict[str, Any]) -> str:
    """EXPLAIN of the statement's generic plan: the one PostgreSQL may keep for a statement
    psycopg prepared (its 5th run on a connection), planned without the values."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", number, statement).replace("%%", "%")
    values = ", ".join("'" + str(parameters[n]).replace("'", "''") + "'" for n in names)
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()  # no parameters: psycopg leaves '%' alone
        cur.execute("SET plan_cache_mode = force_generic_plan")
        cur.execute(f"PREPARE family_page AS {sql}")
        cur.execute(f"EXPLAIN EXECUTE family_page({values})")
        rows = cur.fetchall()
        cur.execute("DEALLOCATE family_page")
        cur.execute("RESET plan_cache_mode")
        cur.close()
    return "\n".join(str(row[0]) for row in rows)


def test_postgresql_prefix_search_seeks_the_value_index(sql_store: SqlStore) -> None:
    """5 000 Patients with 2 500 family names, analyzed: Patient?family=riv&_count=20 seeks
    ix_sp_string_value by the range (under the database's C.UTF-8 collation it read every
    family name of the type: a Seq Scan or a scan of the index on res_type and param)."""
    if sql_store.dialect != "postgresql":
        pytest.skip("SQLite's plan: test_totals.test_sqlite_string_prefix_seeks_the_value_index")
    sql_store.statistics = StatisticsKeeper(sql_store.engine, background=False)  # ours below
    syllables = ["ba", "ko", "ri", "su", "ta", "ve", "mo", "ne", "lu", "pi"]
    names = [f"{syllables[n % 10]}{syllables[n // 10 % 10]}{syllables[n // 100 % 10]}{n}"
             for n in range(2500)]
    entries = [{"resource": {"resourceType": "Patient", "name": [{"family": names[n % 2500],
                                                                   "given": [f"G{n}"]}]},
                "request": {"method": "POST", "url": "Patient"}} for n in range(5000)]
    for start in range(0, 5000, 1000):
        sql_store.transaction({"resourceType": "Bundle", "type": "transaction",
                               "entry": entries[start:start + 1000]})
    with sql_store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE sp_string")
        conn.exec_driver_sql("ANALYZE resource")
    result, plan, sent = _explain(sql_store, [("family", "rikoba"), ("_count", "20")])
    wanted = sum(1 for n in range(5000) if names[n % 2500].startswith("rikoba"))
    assert 0 < wanted <= 20 and len(result.matches) == wanted
    assert "ix_sp_string_value" in plan, plan
    seek = next(line for line in plan.splitlines() if "Index Cond" in line
                and "'family'" in line)
    # the range is the index condition, not a filter on every family name of the type
    assert "(value)::text >= 'rikoba'" in seek and "(value)::text < 'rikobb'" in seek, plan
    assert "Seq Scan on sp_string" not in plan, plan

    # planned without the values (LIKE's pattern unknown) the range still seeks
    generic = _generic_plan(sql_store, *sent)
    assert "Seq Scan on sp_string" not in generic, generic
    seek = next(line for line in generic.splitlines() if "Index Cond" in line
                and "(param)::text" in line)
    assert "(value)::text >= ($4)::text" in seek and "(value)::text < ($5)::text" in seek, generic


def test_migration_0009_on_a_database_with_patients(db_url: str) -> None:
    """Migration 0009 on an existing database: the values stay, the index is rebuilt in
    code-point order (PostgreSQL), the searches find the same; a no-op on SQLite; reversible."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from hw_fhir.migrations import alembic_config, upgrade

    store = SqlStore(db_url)
    try:
        cfg = alembic_config(store.engine)
        script = ScriptDirectory.from_config(cfg)
        others = [h for h in script.get_heads()  # the heads that do not need 0009 first
                  if all(r.revision != "0009_string_c" for r in script.iterate_revisions(h, "base"))]
        for head in [*others, "0008_sp_stats"]:
            upgrade(store.engine, head)
        for name in FAMILIES:
            store.create({"resourceType": "Patient", "name": [{"family": name}]})
        before = {p: _family(store, p) for p in PREFIXES}

        def collation() -> Any:
            if store.dialect != "postgresql":
                return None
            with store.engine.connect() as conn:
                return conn.exec_driver_sql(
                    "SELECT collation_name FROM information_schema.columns WHERE table_schema = "
                    "current_schema() AND table_name = 'sp_string' AND column_name = 'value'"
                ).scalar_one()

        assert collation() is None  # the database's default
        upgrade(store.engine, "0009_string_c")
        assert collation() == ("C" if store.dialect == "postgresql" else None)
        assert {p: _family(store, p) for p in PREFIXES} == before
        if store.dialect == "postgresql":
            with store.engine.connect() as conn:
                index = conn.exec_driver_sql(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                    "AND indexname = 'ix_sp_string_value'").scalar_one()
            assert index.endswith("(res_type, param, value)"), index  # rebuilt, same columns
        command.downgrade(cfg, "0009_string_c-1")
        assert collation() is None
        assert {p: _family(store, p) for p in PREFIXES} == before
    finally:
        store.dispose()
