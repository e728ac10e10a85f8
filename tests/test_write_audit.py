"""A /fhir write and its AuditEvent commit in one database transaction (hw_fhir.store.riders).

On SQLite and PostgreSQL: every successful create, update, delete and transaction has
exactly one AuditEvent, committed by the write's own transaction (PostgreSQL: the same
``xmin`` as the resource rows; both: one BEGIN and one COMMIT on the wire); a write
that fails and rolls back leaves no resource and records a failure event; the rider's
rows and the write succeed or fail together. What goes over the wire is read from the
driver itself (SQLite's trace callback, libpq's protocol trace), not timed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select, text

from hw_fhir.audit import audit_event_table, trail_for
from hw_fhir.errors import VersionConflict
from hw_fhir.store import SqlStore, riders
from hw_fhir.store import schema as S

from wire_support import Wire

FHIR = "application/fhir+json"
FLAG = {"resourceType": "Flag", "status": "active", "subject": {"reference": "Patient/p1"},
        "code": {"text": "test"}}
OBSERVATION = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
               "subject": {"reference": "Patient/p1"}, "valueInteger": 7,
               "effectiveDateTime": "2026-04-20T10:00:00Z"}


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[Any]:
    from smart_app import create_app

    application = create_app({"TESTING": True, "instance_path": str(tmp_path / "instance"),
                              "database_url": db_url, "open_api": True,
                              "secret_key": "test-secret"})
    yield application
    application.extensions["hw_fhir"].close()


def _store(app: Any) -> SqlStore:
    return app.extensions["hw_fhir"].store  # type: ignore[no-any-return]


def _send(client: Any, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body) if body is not None else None
    return client.open(path, method=method, data=data, headers={"Content-Type": FHIR})


def _audit_rows(store: SqlStore) -> list[dict[str, Any]]:
    """Every AuditEvent committed so far, oldest first (nothing flushed: only what committed)."""
    t = audit_event_table
    with store.engine.connect() as conn:
        return [orjson.loads(c) for c in conn.execute(select(t.c.content).order_by(t.c.seq)).scalars()]


def _refs(event_: dict[str, Any]) -> set[str]:
    return {e["what"]["reference"] for e in event_.get("entity", []) if "what" in e}


def _same_transaction_on_postgres(store: SqlStore, event_id: str, rtype: str, rid: str,
                                  version: int) -> None:
    """PostgreSQL: the event row and the resource's version row were written by one transaction."""
    if store.dialect != "postgresql":
        return
    with store.engine.connect() as conn:
        event_xmin = conn.execute(text("SELECT xmin::text FROM audit_event WHERE id = :id"),
                                  {"id": event_id}).scalar_one()
        row_xmin = conn.execute(text(
            "SELECT xmin::text FROM resource_version WHERE res_type = :t AND res_id = :i "
            "AND version_id = :v"), {"t": rtype, "i": rid, "v": version}).scalar_one()
    assert event_xmin == row_xmin


def _one_new_event(store: SqlStore, before: int) -> dict[str, Any]:
    rows = _audit_rows(store)
    assert len(rows) == before + 1, [(_subtype(r), r["outcome"]) for r in rows[before:]]
    return rows[-1]


def _subtype(event_: dict[str, Any]) -> str:
    return str(event_["subtype"][0]["code"])


def test_each_write_commits_exactly_one_audit_event_in_its_own_transaction(app: Any) -> None:
    client, store = app.test_client(), _store(app)
    trail = trail_for(store)
    trail.flush()

    def write(method: str, path: str, body: Any, status: int) -> tuple[Any, dict[str, Any], Wire]:
        before = len(_audit_rows(store))
        with Wire(store).watch() as wire:
            reply = _send(client, method, path, body)
        assert reply.status_code == status, reply.data
        assert trail.pending == 0  # nothing queued for later: it committed with the write
        # one transaction on the wire: its BEGIN, its COMMIT, nothing else writing
        assert wire.count(r"BEGIN") == 1 and wire.count(r"COMMIT") == 1, wire.statements
        return reply, _one_new_event(store, before), wire

    created, event_, _ = write("POST", "/fhir/Flag", FLAG, 201)
    flag = created.get_json()
    ref = f"Flag/{flag['id']}"
    assert (_subtype(event_), event_["action"], event_["outcome"]) == ("create", "C", "0")
    assert ref in _refs(event_) and "Patient/p1" in _refs(event_)
    _same_transaction_on_postgres(store, event_["id"], "Flag", flag["id"], 1)

    _, event_, wire = write("PUT", f"/fhir/Flag/{flag['id']}", {**flag, "status": "inactive"}, 200)
    if store.dialect == "postgresql":  # BEGIN with the lock; the row locked; old index rows
        assert wire.round_trips == 4, wire.statements  # out and row moved; rows and COMMIT
    assert (_subtype(event_), event_["action"], event_["outcome"]) == ("update", "U", "0")
    assert ref in _refs(event_)
    _same_transaction_on_postgres(store, event_["id"], "Flag", flag["id"], 2)

    _, event_, _ = write("PUT", "/fhir/Flag/chosen-id", {**FLAG, "id": "chosen-id"}, 201)
    assert (_subtype(event_), event_["action"]) == ("create", "C")  # an update that created

    _, event_, _ = write("DELETE", f"/fhir/Flag/{flag['id']}", None, 204)
    assert (_subtype(event_), event_["action"], event_["outcome"]) == ("delete", "D", "0")
    assert ref in _refs(event_) and "Patient/p1" in _refs(event_)
    _same_transaction_on_postgres(store, event_["id"], "Flag", flag["id"], 3)

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": FLAG, "request": {"method": "POST", "url": "Flag"}},
        {"resource": OBSERVATION, "request": {"method": "POST", "url": "Observation"}}]}
    reply, event_, wire = write("POST", "/fhir", bundle, 200)
    if store.dialect == "postgresql":  # BEGIN with the lock; rows, audit rows and COMMIT
        assert wire.round_trips == 2, wire.statements
    locations = [e["response"]["location"].split("/_history")[0] for e in reply.get_json()["entry"]]
    assert (_subtype(event_), event_["outcome"]) == ("transaction", "0")
    assert set(locations) <= _refs(event_)
    rtype, rid = locations[1].split("/")
    _same_transaction_on_postgres(store, event_["id"], rtype, rid, 1)


def test_a_create_is_one_transaction_and_on_postgres_two_round_trips(app: Any) -> None:
    client, store = app.test_client(), _store(app)
    assert _send(client, "POST", "/fhir/Observation", OBSERVATION).status_code == 201  # warm
    for _ in range(3):
        with Wire(store).watch() as wire:
            assert _send(client, "POST", "/fhir/Observation", OBSERVATION).status_code == 201
        assert wire.count(r"BEGIN") == 1, wire.statements
        assert wire.count(r"COMMIT") == 1, wire.statements
        assert wire.count(r"INSERT INTO audit_event") == 1, wire.statements
        if store.dialect == "postgresql":
            # BEGIN with the writers' lock (before lastUpdated is stamped), then the rows,
            # the audit rows and the COMMIT in one pipeline
            assert wire.count(r"BEGIN[^;]*; LOCK TABLE") == 1, wire.statements
            assert wire.round_trips == 2, wire.statements


def test_a_failed_write_leaves_nothing_and_records_its_failure(app: Any) -> None:
    client, store = app.test_client(), _store(app)
    before = len(_audit_rows(store))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": FLAG, "request": {"method": "POST", "url": "Flag"}},
        {"resource": {**FLAG, "id": "nope"},
         "request": {"method": "PUT", "url": "Flag/nope", "ifMatch": 'W/"3"'}}]}
    reply = _send(client, "POST", "/fhir", bundle)
    assert reply.status_code in (409, 412), reply.data
    assert store.count("Flag") == 0  # the POSTed Flag rolled back with the rest
    event_ = _one_new_event(store, before)  # written before the response (now=True)
    assert (_subtype(event_), event_["outcome"]) == ("transaction", "4")

    reply = _send(client, "PUT", "/fhir/Flag/other", {**FLAG, "id": "other", "status": "bogus"})
    assert reply.status_code == 400
    event_ = _one_new_event(store, before + 1)
    assert (_subtype(event_), event_["outcome"]) == ("update", "4")
    assert store.count("Flag") == 0


def test_a_batch_still_has_one_event_for_the_request(app: Any) -> None:
    client, store = app.test_client(), _store(app)
    before = len(_audit_rows(store))
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": FLAG, "request": {"method": "POST", "url": "Flag"}},
        {"resource": FLAG, "request": {"method": "POST", "url": "Flag"}}]}
    reply = _send(client, "POST", "/fhir", bundle)
    assert reply.status_code == 200
    event_ = _one_new_event(store, before)
    assert _subtype(event_) == "batch"
    assert {e["response"]["location"].split("/_history")[0] for e in reply.get_json()["entry"]} \
        <= _refs(event_)


class _Rows(riders.Rider):
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self._rows = rows
        self.seen: list[str] = []

    def rows(self, written: Any) -> Any:
        self.seen = [r.stored.reference for r in written]
        return [(audit_event_table, self._rows)]


def _event_row(id_: str) -> dict[str, Any]:
    return {"id": id_, "recorded": "2026-01-01T00:00:00.000000Z", "type": "t", "subtype": "s",
            "action": "C", "outcome": "0", "agent": None, "client": None, "address": None,
            "content": "{}"}


def test_the_riders_rows_and_the_write_commit_together_or_not_at_all(sql_store: SqlStore) -> None:
    def audit_count() -> int:
        with sql_store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_event_table)).scalar_one())

    rider = _Rows([_event_row("e1")])
    riders.ride(rider)
    try:
        written = sql_store.create(dict(FLAG))
        assert rider.done and rider.seen == [written.stored.reference]
        assert audit_count() == 1
        sql_store.create(dict(FLAG))  # used once: the next write carries nothing
        assert audit_count() == 1 and sql_store.count("Flag") == 2

        clash = _Rows([_event_row("e1")])  # a taken id: the commit must fail as a whole
        riders.ride(clash)
        with pytest.raises(VersionConflict):
            sql_store.create(dict(FLAG))
        assert not clash.done
        assert sql_store.count("Flag") == 2 and audit_count() == 1
        with sql_store.engine.connect() as conn:  # no version row left behind either
            assert conn.execute(select(func.count()).select_from(S.resource_version)).scalar_one() == 2

        with riders.suspended():
            sql_store.create(dict(FLAG))
        assert not clash.done
    finally:
        riders.clear()
