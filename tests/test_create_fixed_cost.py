"""The fixed cost of a QuestionnaireResponse created through /fhir (issue 18), counted on the wire.

A mood log that answers no Task and that nothing scores: the Task workflow's search for
an open Task, the write (with its audit rows) and one check of the definition cache
for every definition type, and nothing else: no read transaction around a search
(BEGIN … ROLLBACK: two round trips on PostgreSQL), no search for Observations an earlier
scoring made (the response was created just now), no second check of the cache for the
answers' CodeSystems. Read from the driver (SQLite's trace callback, libpq's protocol
trace), on SQLite and PostgreSQL. A PHQ-9 created the same way still gets its scores and
its item-9 Flag. A transaction Bundle's entries are indexed once (the body check's rows
are the ones written) and only those naming another entry are rewritten.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from hw_fhir.library import load_catalog
from hw_fhir.store import bundles, sql, writes

from outcomes_support import instrument_response
from test_write_audit import FHIR, Wire, app  # noqa: F401  (fixture)

MOOD_LOG = "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0"


def _mood_log(patient: str, mood: int) -> dict[str, Any]:
    return {"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": MOOD_LOG, "subject": {"reference": f"Patient/{patient}"},
            "authored": "2026-03-02T20:15:00Z",
            "item": [{"linkId": "date", "answer": [{"valueDate": "2026-03-02"}]},
                     {"linkId": "mood", "answer": [{"valueInteger": mood}]},
                     {"linkId": "anxiety", "answer": [{"valueInteger": 3}]}]}


def _count_estimates(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every PostgreSQL planner estimate a search asks for (an EXPLAIN through the driver)."""
    seen: list[int] = []
    real = sql.planner_rows

    def counting(conn: Any, explain: Any) -> Any:
        seen.append(1)
        return real(conn, explain)

    monkeypatch.setattr(sql, "planner_rows", counting)
    return seen


def _send(client: Any, method: str, path: str, body: Any = None) -> Any:
    return client.open(path, method=method, json=body, headers={"Content-Type": FHIR})


def _store(app: Any) -> Any:  # noqa: F811
    return app.extensions["hw_fhir"].store


@contextmanager
def _executed(store: Any) -> Iterator[list[str]]:
    """The statements SQLAlchemy runs in the block, each followed by its parameters."""
    seen: list[str] = []

    def log(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append(f"{statement} -- {parameters!r}")

    event.listen(store.engine, "before_cursor_execute", log)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", log)


def test_a_response_nothing_scores_costs_one_search_the_write_and_one_check(
        app: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    client, store = app.test_client(), _store(app)
    estimates = _count_estimates(monkeypatch)
    patient = _send(client, "POST", "/fhir/Patient",
                    {"resourceType": "Patient", "name": [{"family": "Cost"}]}).get_json()["id"]
    assert _send(client, "POST", "/fhir/QuestionnaireResponse",
                 _mood_log(patient, 4)).status_code == 201  # warm: the caches
    estimates.clear()
    with Wire(store).watch() as wire, _executed(store) as executed:
        reply = _send(client, "POST", "/fhir/QuestionnaireResponse", _mood_log(patient, 5))
    assert reply.status_code == 201, reply.data
    assert reply.get_json()["meta"]["versionId"] == "1"  # nothing scored: no second version
    # the write's transaction alone: the searches read outside one
    assert wire.count(r"BEGIN") == 1 and wire.count(r"COMMIT") == 1, wire.statements
    assert wire.count(r"ROLLBACK") == 0, wire.statements
    # the definitions' check: one query, for the Questionnaire and its answers' CodeSystems
    checks = [s for s in executed if "max(resource_version.seq)" in s]
    assert len(checks) == 1, executed
    assert "max(resource_version.seq)" in executed[-1], executed  # the check comes last
    assert not any("'derived-from'" in s for s in executed), executed  # no Observation search
    assert not any("'Observation'" in s for s in executed), executed
    if store.dialect == "postgresql":  # the Task search (with the estimates it asks for);
        # (and the planner estimates it asks for, one trip each); the lock with the BEGIN;
        # rows, audit rows and COMMIT; the check
        assert wire.round_trips == 4 + len(estimates), wire.statements


def test_a_phq9_created_the_same_way_is_still_scored_and_flagged(app: Any) -> None:  # noqa: F811
    client = app.test_client()
    patient = _send(client, "POST", "/fhir/Patient",
                    {"resourceType": "Patient", "name": [{"family": "Flag"}]}).get_json()["id"]
    body = instrument_response("phq-9", [1, 1, 2, 1, 0, 1, 0, 1, 2], patient=patient)
    reply = _send(client, "POST", "/fhir/QuestionnaireResponse", body)
    assert reply.status_code == 201, reply.data
    rid = reply.get_json()["id"]
    found = client.get(f"/fhir/Observation?derived-from=QuestionnaireResponse/{rid}").get_json()
    assert any(e["resource"]["code"]["coding"][0]["code"] == "44261-6"
               for e in found.get("entry", []))
    flags = client.get(f"/fhir/Flag?patient=Patient/{patient}").get_json()
    assert flags.get("entry"), "the item-9 answer raised no Flag"


def test_a_transaction_indexes_each_entry_once_and_rewrites_only_entries_naming_others(
        app: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The body check's index rows are the write's (more entries than the few remembered
    outside a request); only entries that name another entry's fullUrl are rewritten."""
    client = app.test_client()
    indexed: list[str] = []
    rewritten: list[str] = []
    real_index, real_rewrite = writes._index_rows, bundles._rewrite

    def index_rows(data: dict[str, Any], id: str) -> Any:
        indexed.append(data["resourceType"])
        return real_index(data, id)

    def rewrite(node: Any, ids: dict[str, str]) -> Any:
        if isinstance(node, dict) and "resourceType" in node:
            rewritten.append(node["resourceType"])
        return real_rewrite(node, ids)

    monkeypatch.setattr(writes, "_index_rows", index_rows)
    monkeypatch.setattr(bundles, "_rewrite", rewrite)
    entries = [{"fullUrl": "urn:uuid:patient", "request": {"method": "POST", "url": "Patient"},
                "resource": {"resourceType": "Patient", "name": [{"family": "Many"}]}}]
    for n in range(40):  # distinct contents, more than the 16 remembered outside a request
        entries.append({"fullUrl": f"urn:uuid:obs-{n}", "request": {"method": "POST",
                                                                   "url": "Observation"},
                        "resource": {"resourceType": "Observation", "status": "final",
                                     "code": {"text": f"mood {n}"}, "valueInteger": n,
                                     "subject": {"reference": "Patient/elsewhere"}}})
    entries[-1]["resource"]["subject"] = {"reference": "urn:uuid:patient"}  # names an entry
    reply = _send(client, "POST", "/fhir", {"resourceType": "Bundle", "type": "transaction",
                                            "entry": entries})
    assert reply.status_code == 200, reply.data
    # once each (the body check's rows are written), and the rewritten one again: its
    # reference changed
    assert len(indexed) == 42
    assert rewritten == ["Observation"]  # the one naming the Patient's fullUrl
    out = reply.get_json()["entry"]
    patient = out[0]["response"]["location"].split("/_history")[0]
    assert out[-1]["resource"]["subject"]["reference"] == patient
    assert out[1]["resource"]["subject"]["reference"] == "Patient/elsewhere"
    found = client.get(f"/fhir/Observation?subject={patient}").get_json()
    assert [e["resource"]["valueInteger"] for e in found["entry"]] == [39]


def test_a_task_answer_nothing_scores_reads_outside_transactions_and_no_observations(
        app: Any) -> None:  # noqa: F811
    """The SDC workflow's path: its lookups read outside a transaction, and the scoring of
    the response just submitted (its first version) looks for no earlier Observations."""
    client, store = app.test_client(), _store(app)
    load_catalog(store)  # the Task's Questionnaire is stored
    patient = _send(client, "POST", "/fhir/Patient",
                    {"resourceType": "Patient", "name": [{"family": "Task"}]}).get_json()["id"]
    tasks = [_send(client, "POST", "/fhir/Task", _task(patient)).get_json()["id"]
             for _ in range(2)]
    answers = [{**_mood_log(patient, n), "basedOn": [{"reference": f"Task/{tid}"}]}
               for n, tid in enumerate(tasks)]
    assert _send(client, "POST", "/fhir/QuestionnaireResponse", answers[0]).status_code == 201
    with Wire(store).watch() as wire, _executed(store) as executed:
        reply = _send(client, "POST", "/fhir/QuestionnaireResponse", answers[1])
    assert reply.status_code == 201, reply.data
    assert client.get(f"/fhir/Task/{tasks[1]}").get_json()["status"] == "completed"
    assert wire.count(r"ROLLBACK") == 0, wire.statements  # no read transaction
    # the scoring's cache check comes last: no search for Observations made from the response
    assert "max(resource_version.seq)" in executed[-1], executed
    assert not any("'derived-from'" in s for s in executed), executed


def _task(patient: str) -> dict[str, Any]:
    return {"resourceType": "Task", "status": "requested", "intent": "order",
            "code": {"coding": [{"system": "http://hl7.org/fhir/uv/sdc/CodeSystem/temp",
                                 "code": "complete-questionnaire"}]},
            "for": {"reference": f"Patient/{patient}"}, "authoredOn": "2026-03-01T10:00:00Z",
            "input": [{"type": {"coding": [{"system": "http://hl7.org/fhir/uv/sdc/CodeSystem/temp",
                                            "code": "questionnaire"}]},
                       "valueCanonical": MOOD_LOG}]}
