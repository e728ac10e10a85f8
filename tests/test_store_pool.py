"""The PostgreSQL pool pings a connection only after it sat idle, and the ping leaves it clean."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from sqlalchemy import create_engine, event, text

from hw_fhir.store import engine as store_engine
from hw_fhir.store import SqlStore, open_store

pytestmark = pytest.mark.postgres

@pytest.fixture
def pg_store(pg_url: str) -> Iterator[SqlStore]:
    store = open_store(pg_url)
    yield store
    store.dispose()

def _pings(store: SqlStore, run: Any) -> int:
    seen: list[str] = []
    calls = {"n": 0}
    real = store.engine.dialect.do_ping

    def counting(dbapi_conn: Any) -> bool:
        calls["n"] += 1
        return real(dbapi_conn)

    store.engine.dialect.do_ping = counting  # type: ignore[method-assign]
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        run()
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)
        del store.engine.dialect.do_ping
    return calls["n"]

def test_a_connection_in_steady_use_is_not_pinged(pg_store: SqlStore) -> None:
    created = pg_store.create({"resourceType": "Patient", "name": [{"family": "Steady"}]}).stored
    assert _pings(pg_store, lambda: [pg_store.read("Patient", created.id) for _ in range(5)]) == 0

def test_an_idle_connection_is_pinged_and_then_reads_and_writes(pg_store: SqlStore,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    created = pg_store.create({"resourceType": "Patient", "name": [{"family": "Idle"}]}).stored
    monkeypatch.setattr(store_engine, "PING_AFTER_IDLE", 0.0)  # every checkout counts as idle

    def work() -> None:
        # a read outside any transaction (autocommit) right after the ping: the ping
        # must not leave a transaction open on the connection
        assert pg_store.read("Patient", created.id).id == created.id
        pg_store.create({"resourceType": "Patient", "name": [{"family": "After"}]})
        assert pg_store.search("Patient", [("family", "after")]).matches

    assert _pings(pg_store, work) >= 3

def test_a_broken_idle_connection_is_replaced_before_use(pg_store: SqlStore,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    created = pg_store.create({"resourceType": "Patient", "name": [{"family": "Broken"}]}).stored
    with pg_store.engine.connect() as conn:  # the pool now holds this one connection, idle
        backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = create_engine(pg_store.url)  # the server ends it, as a restart would
    try:
        with admin.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
            other.commit()
    finally:
        admin.dispose()
    monkeypatch.setattr(store_engine, "PING_AFTER_IDLE", 0.0)
    for _ in range(3):  # whichever pooled connection comes out, the read succeeds
        assert pg_store.read("Patient", created.id).id == created.id
