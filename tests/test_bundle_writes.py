"""Batched writes (hw_fhir/store/writes.py): Bundles and units of work behave as row-by-row writes.

Every test runs on SQLite and PostgreSQL. After each one the search index is
checked against the stored resources themselves: every current resource has
exactly the index rows its JSON gives, and nothing else has any.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from sqlalchemy import event, select, update

from hw_fhir.cli import load_file
from hw_fhir.errors import Gone, InvalidInput, NotFound, VersionConflict
from hw_fhir.store import SqlStore
from hw_fhir.store import schema as S
from hw_fhir.store.writes import index_rows

SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
MRN = "urn:mrn"
PHQ9 = "http://hw-fhir.org/fhir/Questionnaire/phq-9"


def patient(family: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], **extra}


def task(status: str = "requested", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "status": status, "intent": "order",
            "code": {"coding": [{"system": SDC_TEMP, "code": "complete-questionnaire"}]}, **extra}


def bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def put(resource: dict[str, Any], **request: Any) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url, **request}}


def post(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource,
                             "request": {"method": "POST", "url": resource["resourceType"],
                                         **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def ids(store: SqlStore, rtype: str, *params: tuple[str, str]) -> set[str]:
    return {m.id for m in store.search(rtype, [*params, ("_count", "1000")], strict=True).matches}


def tables(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the resource, version and index tables (seq left out), sorted."""
    out = {}
    with store.engine.connect() as conn:
        for table in [S.resource, S.resource_version, *S.SP_TABLES.values()]:
            cols = [c for c in table.c if c.name != "seq"]
            out[table.name] = sorted(tuple(row) for row in conn.execute(select(*cols)))
    return out


def check_index(store: SqlStore) -> None:
    """The index holds exactly the rows of the current resources, and none of deleted ones."""
    expected: dict[str, Counter[tuple[Any, ...]]] = {kind: Counter() for kind in S.SP_TABLES}
    with store.engine.connect() as conn:
        for row in conn.execute(select(S.resource.c.content).where(
                S.resource.c.deleted == False)):  # noqa: E712
            for kind, items in index_rows(orjson.loads(row.content)).items():
                expected[kind].update(tuple(sorted(item.items())) for item in items)
        for kind, table in S.SP_TABLES.items():
            cols = [c.name for c in table.c]
            found = Counter(tuple(sorted(zip(cols, row))) for row in conn.execute(select(table)))
            assert found == expected[kind], f"sp_{kind} does not match the stored resources"


class Statements:
    """Count the statements sent (an executemany counts once)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.count = 0

    def _on(self, *_args: Any) -> None:
        self.count += 1

    def __enter__(self) -> "Statements":
        event.listen(self.store.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.store.engine, "before_cursor_execute", self._on)


# --------------------------------------------------------------- Bundles


def test_a_mixed_bundle_writes_and_indexes_like_single_writes(sql_store: SqlStore) -> None:
    store = sql_store
    old_pat = store.update(patient("Oldname", id="p-old", gender="female",
                                   identifier=[{"system": MRN, "value": "old"}])).stored
    store.update(patient("Gone", id="p-del"))
    known = store.create(patient("Known", identifier=[{"system": MRN, "value": "known"}])).stored
    old_task = store.update(task("requested", id="t-old", **{"for": {"reference": "Patient/p-old"}},
                                 authoredOn="2026-01-05T09:00:00Z")).stored
    new_pat, new_task, matched = (f"urn:uuid:{uuid.uuid4()}" for _ in range(3))
    response = store.transaction(bundle(
        post(patient("Newperson", identifier=[{"system": MRN, "value": "new"}],
                     birthDate="1990-02-03"), new_pat),
        post(task("in-progress", **{"for": {"reference": new_pat}},
                  focus={"reference": matched}, authoredOn="2026-03-01T10:00:00Z",
                  restriction={"period": {"end": "2026-03-08T20:00:00Z"}}), new_task),
        post(patient("Ignored", identifier=[{"system": MRN, "value": "known"}]), matched,
             ifNoneExist=f"identifier={MRN}|known"),
        post(patient("Conditional", identifier=[{"system": MRN, "value": "cond"}]),
             ifNoneExist=f"identifier={MRN}|cond"),
        put(task("completed", id="t-old", **{"for": {"reference": new_pat}},
                 partOf=[{"reference": new_task}], authoredOn="2026-02-01T09:00:00Z")),
        put(patient("Renamed", id="p-old", gender="male"), ifMatch=f'W/"{old_pat.version_id}"'),
        put({"resourceType": "Questionnaire", "id": "q-new", "status": "active",
             "url": f"{PHQ9}-copy", "version": "2.0.0", "name": "PHQ9Copy"}),
        {"request": {"method": "DELETE", "url": "Patient/p-del"}},
        {"request": {"method": "GET", "url": "Task?status=completed,in-progress"}},
        {"request": {"method": "GET", "url": "Patient/p-old"}},
    ))
    codes = [e["response"]["status"].split()[0] for e in response["entry"]]
    assert codes == ["201", "201", "200", "201", "200", "200", "201", "204", "200", "200"]
    new_pat_id = response["entry"][0]["fullUrl"].split("/")[-1]
    new_task_id = response["entry"][1]["fullUrl"].split("/")[-1]
    cond_id = response["entry"][3]["fullUrl"].split("/")[-1]
    assert response["entry"][2]["fullUrl"].endswith(known.reference)
    # the search and read inside the Bundle saw the Bundle's own writes
    inner = response["entry"][8]["resource"]
    assert {e["resource"]["id"] for e in inner["entry"]} == {new_task_id, "t-old"}
    assert response["entry"][9]["resource"]["name"][0]["family"] == "Renamed"

    # versions and history
    assert store.read("Task", "t-old").version_id == "2"
    assert [e.version_id for e in store.history("Task", "t-old").entries] == ["2", "1"]
    assert [e.method for e in store.history("Patient", "p-del").entries] == ["DELETE", "PUT"]
    assert store.read("Patient", "p-old").version_id == "2"
    assert store.read("Patient", known.id).version_id == "1"
    stored_task = store.read("Task", new_task_id).resource
    assert stored_task["for"]["reference"] == f"Patient/{new_pat_id}"
    assert stored_task["focus"]["reference"] == known.reference
    assert store.read("Task", "t-old").resource["partOf"][0]["reference"] == f"Task/{new_task_id}"

    # every index type finds the new values and none of the replaced ones
    assert ids(store, "Task", ("status", "completed")) == {"t-old"}
    assert ids(store, "Task", ("status", "requested")) == set()
    assert ids(store, "Task", ("patient", f"Patient/{new_pat_id}")) == {new_task_id, "t-old"}
    assert ids(store, "Task", ("patient", "Patient/p-old")) == set()
    assert ids(store, "Task", ("part-of", f"Task/{new_task_id}")) == {"t-old"}
    assert ids(store, "Task", ("focus", known.reference)) == {new_task_id}
    assert ids(store, "Task", ("authored-on", "2026-02-01")) == {"t-old"}
    assert ids(store, "Task", ("authored-on", "2026-01-05")) == set()
    assert ids(store, "Task", ("due", "le2026-03-08")) == {new_task_id}
    assert ids(store, "Patient", ("name", "renamed")) == {"p-old"}
    assert ids(store, "Patient", ("name", "oldname")) == set()
    assert ids(store, "Patient", ("gender", "male")) == {"p-old"}
    assert ids(store, "Patient", ("identifier", f"{MRN}|old")) == set()
    assert ids(store, "Patient", ("identifier", f"{MRN}|cond")) == {cond_id}
    assert ids(store, "Patient", ("birthdate", "1990-02-03")) == {new_pat_id}
    assert ids(store, "Patient", ("name", "gone")) == set()
    assert ids(store, "Questionnaire", ("url", f"{PHQ9}-copy")) == {"q-new"}
    assert ids(store, "Questionnaire", ("name", "phq9copy")) == {"q-new"}
    with pytest.raises(Gone):
        store.read("Patient", "p-del")
    check_index(store)
    assert old_task.version_id == "1"


def test_the_same_resource_twice_in_a_bundle_keeps_both_versions(sql_store: SqlStore) -> None:
    sql_store.update(task("requested", id="twice"))
    sql_store.transaction(bundle(
        put(task("in-progress", id="twice")),
        put(task("completed", id="twice")),
        put(patient("Fresh", id="fresh")),
        put(patient("Fresher", id="fresh")),
    ))
    assert [(e.version_id, e.resource["status"]) for e in
            sql_store.history("Task", "twice").entries] == [("3", "completed"), ("2", "in-progress"),
                                                             ("1", "requested")]
    assert [e.version_id for e in sql_store.history("Patient", "fresh").entries] == ["2", "1"]
    assert ids(sql_store, "Task", ("status", "in-progress")) == set()
    assert ids(sql_store, "Patient", ("name", "fresh")) == {"fresh"}
    assert sql_store.read("Patient", "fresh").resource["name"][0]["family"] == "Fresher"
    check_index(sql_store)


def test_delete_then_put_in_one_bundle_recreates(sql_store: SqlStore) -> None:
    sql_store.update(patient("Before", id="back"))
    response = sql_store.transaction(bundle(
        put(patient("After", id="back")),
        {"request": {"method": "DELETE", "url": "Patient/back"}},  # runs first (FHIR order)
    ))
    assert [e["response"]["status"] for e in response["entry"]] == ["201 Created", "204 No Content"]
    assert [(e.version_id, e.method) for e in sql_store.history("Patient", "back").entries] == [
        ("3", "PUT"), ("2", "DELETE"), ("1", "PUT")]
    assert ids(sql_store, "Patient", ("name", "after")) == {"back"}
    assert ids(sql_store, "Patient", ("name", "before")) == set()
    check_index(sql_store)


def _seed(store: SqlStore) -> list[str]:
    made = [f"seed-{n}" for n in range(40)]
    store.transaction(bundle(*(put(task("requested", id=i, description=f"seed {i}")) for i in made)))
    return made


@pytest.mark.parametrize("bad", ["stale-if-match", "if-match-on-missing", "missing-read",
                                 "invalid-resource"])
def test_a_failing_entry_in_the_middle_writes_nothing(sql_store: SqlStore, bad: str) -> None:
    seeded = _seed(sql_store)
    before = tables(sql_store)
    entries = [put(task("completed", id=i)) for i in seeded[:20]]
    entries += [put(task("requested", id=f"new-{n}")) for n in range(20)]
    entries += [post(patient(f"Posted{n}")) for n in range(20)]
    middle = len(entries) // 2
    # POSTs run before PUTs: half the Bundle is recorded when entry 10 or 30 fails
    if bad == "stale-if-match":
        entries[10]["request"]["ifMatch"] = 'W/"7"'  # a PUT of a seeded Task
        expected: type[Exception] = VersionConflict
    elif bad == "if-match-on-missing":
        entries[30]["request"]["ifMatch"] = 'W/"1"'  # a PUT of a Task that is not there
        expected = VersionConflict
    elif bad == "missing-read":  # fails after every write has been sent to the database
        entries.insert(middle, {"request": {"method": "GET", "url": "Task/no-such-task"}})
        expected = NotFound
    else:
        entries.insert(middle, post(task("no-such-status")))
        expected = InvalidInput
    with pytest.raises(expected):
        sql_store.transaction(bundle(*entries))
    assert tables(sql_store) == before
    check_index(sql_store)


def test_a_bundle_costs_the_same_statements_for_10_or_200_resources(sql_store: SqlStore) -> None:
    def run(n: int, prefix: str) -> int:
        entries = [put(task("requested", id=f"{prefix}-{i}", **{"for": {"reference": f"Patient/{i}"}}))
                   for i in range(n)]
        entries += [post(patient(f"P{i}")) for i in range(n)]
        with Statements(sql_store) as counted:
            sql_store.transaction(bundle(*entries))
        return counted.count

    assert run(200, "big") == run(10, "small")
    # updating them all (old index rows deleted by type) is batched too
    again = [put(task("completed", id=f"big-{i}")) for i in range(200)]
    with Statements(sql_store) as counted:
        sql_store.transaction(bundle(*again))
    assert counted.count < 20
    assert len(ids(sql_store, "Task", ("status", "completed"))) == 200
    check_index(sql_store)


def test_load_file_twice_makes_second_versions(sql_store: SqlStore, tmp_path: Path) -> None:
    lines = [task("requested", id=f"load-{n}", **{"for": {"reference": "Patient/loader"}})
             for n in range(30)] + [patient(f"Loaded{n}") for n in range(5)]
    path = tmp_path / "load.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in lines))
    services = SimpleNamespace(store=sql_store)
    assert load_file(services, path) == 35  # type: ignore[arg-type]
    assert load_file(services, path) == 35  # type: ignore[arg-type]
    assert {sql_store.read("Task", f"load-{n}").version_id for n in range(30)} == {"2"}
    assert len(ids(sql_store, "Task", ("patient", "Patient/loader"))) == 30
    assert len(ids(sql_store, "Patient", ("name", "loaded"))) == 10  # POSTs make new ones
    check_index(sql_store)


# ------------------------------------------------------------ units of work


def test_a_unit_sees_its_own_writes_before_it_commits(sql_store: SqlStore) -> None:
    with sql_store.unit_of_work() as unit:
        first = unit.create(patient("Unit", identifier=[{"system": MRN, "value": "u-1"}]))
        again = unit.create(patient("Again"), if_none_exist=f"identifier={MRN}|u-1")
        assert again.created is False and again.stored.id == first.stored.id
        unit.update(dict(first.resource, gender="other"))
        assert unit.read("Patient", first.stored.id).version_id == "2"
        assert [m.id for m in unit.search("Patient", [("gender", "other")]).matches] == [
            first.stored.id]
        unit.update(dict(first.resource, gender="unknown"))  # after a flush: old rows go again
        unit.delete("Patient", first.stored.id)
        unit.update(patient("Reborn", id=first.stored.id))
        made = unit.create(task("requested"))
        unit.delete("Task", made.stored.id)  # created and deleted before any flush
    history = sql_store.history("Patient", first.stored.id).entries
    assert [(e.version_id, e.method) for e in history] == [
        ("5", "PUT"), ("4", "DELETE"), ("3", "PUT"), ("2", "PUT"), ("1", "POST")]
    assert [e.method for e in sql_store.history("Task", made.stored.id).entries] == [
        "DELETE", "POST"]
    assert ids(sql_store, "Patient", ("gender", "other")) == set()
    assert ids(sql_store, "Patient", ("name", "reborn")) == {first.stored.id}
    assert ids(sql_store, "Task", ("status", "requested")) == set()
    check_index(sql_store)


def test_a_unit_that_raises_writes_nothing(sql_store: SqlStore) -> None:
    sql_store.update(patient("Kept", id="kept"))
    before = tables(sql_store)
    with pytest.raises(RuntimeError), sql_store.unit_of_work() as unit:
        unit.update(patient("Changed", id="kept"))
        unit.create(task("requested"))
        unit.read("Patient", "kept")  # flushed: the rows are in the transaction
        raise RuntimeError("boom")
    assert tables(sql_store) == before


def test_a_version_changed_before_the_flush_is_a_conflict(sql_store: SqlStore) -> None:
    sql_store.update(patient("Raced", id="raced"))
    sql_store.update(patient("Other", id="other"))
    before = tables(sql_store)
    with pytest.raises(VersionConflict, match="Patient/raced"), \
            sql_store.unit_of_work() as unit:
        unit.preload([("Patient", "raced"), ("Patient", "other")])
        unit.update(patient("Mine", id="other"))
        unit.update(patient("Mine", id="raced"))
        # what a concurrent writer would do if the row were not locked
        unit._conn.execute(update(S.resource).where(S.resource.c.res_id == "raced")
                           .values(version_id=9))
    assert tables(sql_store) == before


def test_creating_a_taken_id_is_a_conflict_and_writes_nothing(sql_store: SqlStore) -> None:
    taken = sql_store.create(patient("Taken")).stored
    before = tables(sql_store)
    with pytest.raises(VersionConflict, match="created by someone else"), \
            sql_store.unit_of_work() as unit:
        unit.create(patient("Fresh"))
        unit.create(patient("Clash"), id=taken.id)
    assert tables(sql_store) == before
    with pytest.raises(VersionConflict), sql_store.unit_of_work() as unit:
        made = unit.create(patient("Once"))
        unit.create(patient("Twice"), id=made.stored.id)
