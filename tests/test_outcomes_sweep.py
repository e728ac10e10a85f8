"""Catch-up scoring by the worker and the ``risk_raised`` hook on every scoring path.

On SQLite and PostgreSQL: the worker's ``response_rescoring`` job scores a response
written while scoring was broken, and its next cycle does nothing; ``risk_raised`` is
called once per new Flag (not again on a re-score or an amendment that keeps the
Flag), after the Flag and its alert are stored, and the alert is delivered once; a
plugin that raises loses nothing and its message (which may quote patient data) is
not logged. On PostgreSQL: two workers sweeping at once score each response once.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, time, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from hw_fhir import default_worker, library, outcomes
from hw_fhir.assignment import Assignment, assign
from hw_fhir.completion import amend_response, submit_response
from hw_fhir.hookspecs import hookimpl
from hw_fhir.outcomes import sweep
from hw_fhir.schedule import Schedule
from hw_fhir.store import iter_all
from hw_fhir.sync.tables import sync_cursor
from hw_fhir.worker import Worker

from outcomes_support import by_code, instrument_response
from reminder_support import RecordingChannel, channel_plugin, jobs, make_services

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 3, 2, 16, 30, tzinfo=timezone.utc)
RISK = [0, 0, 0, 0, 0, 0, 0, 0, 1]  # PHQ-9 item 9 alone: a self-harm risk


class Pager:
    """A vendor plugin that pages on every new risk."""

    def __init__(self) -> None:
        self.heard: list[dict[str, Any]] = []

    @hookimpl
    def risk_raised(self, store, flag, response, task, alert):
        assert store.read("Flag", flag["id"]).resource == flag  # stored before the call
        assert store.read("CommunicationRequest", alert["id"]).resource == alert
        self.heard.append({"flag": flag["id"], "response": response["id"],
                           "alert": alert["id"], "task": task["id"] if task else None})


class BrokenPager:
    """A plugin whose risk_raised always fails, with patient data in the message."""

    @hookimpl
    def risk_raised(self, response):
        raise RuntimeError(f"cannot page about {response['subject']['reference']} (Ava Sample)")


def _services(tmp_path, db_url, *plugins):
    email = RecordingChannel("email", telecom_system="email")
    services = make_services(tmp_path, channel_plugin(email), *plugins, db_url=db_url)
    store = services.store
    library.load_catalog(store)
    store.update({"resourceType": "Practitioner", "id": "dr-rivera",
                  "telecom": [{"system": "email", "value": "dr-rivera@clinic.example"}]})
    store.update({"resourceType": "Patient", "id": "pat-ava", "name": [{"family": "Sample"}],
                  "generalPractitioner": [{"reference": "Practitioner/dr-rivera"}]})
    services.extras["email"] = email
    return services


@pytest.fixture
def pager() -> Pager:
    return Pager()


@pytest.fixture
def services(tmp_path, db_url, pager):
    services = _services(tmp_path, db_url, pager)
    yield services
    services.close()


@pytest.fixture
def every_cycle(monkeypatch):
    """Every worker cycle is the sweep's turn (instead of once a minute)."""
    monkeypatch.setattr(default_worker, "RESCORE_EVERY_SECONDS", 0)


def cycle(services) -> int:
    """Run one real worker cycle; return what the rescoring job did."""
    report = Worker(services, name="w-test").run_once()
    assert not report.errors, report.errors
    return report.work["response_rescoring"]


def derived(store, response_id: str) -> list[dict[str, Any]]:
    return iter_all(store, "Observation",
                    [("derived-from", f"QuestionnaireResponse/{response_id}")])


def versions(store) -> set[tuple[str, str, str]]:
    return {(e.resource_type, e.id, e.version_id) for e in store.history(count=100000).entries}


def cursor(store) -> int | None:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sync_cursor.c.seq)
                            .where(sync_cursor.c.name == sweep.RESCORE_CURSOR)).scalar()


# -- the worker's catch-up sweep ---------------------------------------------------------------


def test_the_worker_scores_a_response_stored_while_scoring_was_broken(services, every_cycle):
    store = services.store
    assert "response_rescoring" in [j.__name__ for j in Worker(services).jobs]
    # written by a path that did not score it (scoring was broken): no Observations
    missed = store.create(instrument_response("phq-9", [1, 2, 3, 0, 1, 2, 3, 1, 0])).resource
    store.create(instrument_response("phq-9", [1] * 9, status="in-progress"))  # a draft: left
    assert derived(store, missed["id"]) == []

    assert cycle(services) == 1
    found = derived(store, missed["id"])
    assert len(found) == 11 and by_code(found)["44261-6"]["valueQuantity"]["value"] == 13
    assert store.read("QuestionnaireResponse", missed["id"]).resource["meta"]["versionId"] == "2"

    # the next cycle looks at nothing (not even the version the sweep itself wrote)
    before, mark = versions(store), cursor(store)
    assert cycle(services) == 0
    assert versions(store) == before and cursor(store) == mark

    # a response written later: only it is looked at, the first one is left alone
    later = store.create(instrument_response("gad-7", [1, 1, 1, 1, 1, 1, 1])).resource
    assert cycle(services) == 1
    assert by_code(derived(store, later["id"]))["70274-6"]["valueQuantity"]["value"] == 7
    assert {o["meta"]["versionId"] for o in derived(store, missed["id"])} == {"1"}
    assert cycle(services) == 0


def test_the_worker_audits_the_responses_it_scores(services, every_cycle):
    import orjson

    from hw_fhir.audit_query import search_events

    store = services.store

    def worker_events():
        page = search_events(store, [("altid", "hw-fhir-worker"), ("subtype", "response-rescored"),
                                     ("_count", "1000")])
        return [orjson.loads(content) for _, content in page.events]

    missed = store.create(instrument_response("phq-9", [1, 2, 3, 0, 1, 2, 3, 1, 0])).resource
    assert cycle(services) == 1
    [event] = worker_events()
    assert event["type"]["code"] == "110100" and event["action"] == "U"
    assert event["outcome"] == "0" and event["agent"][0]["altId"] == "hw-fhir-worker"
    assert event["entity"][0]["what"] == {"reference": "Patient/pat-ava"}
    refs = [e["what"]["reference"] for e in event["entity"][1:]]
    assert refs[0] == f"QuestionnaireResponse/{missed['id']}"
    scores = derived(store, missed["id"])
    assert sorted(refs[1:]) == sorted(f"Observation/{o['id']}" for o in scores)
    text = orjson.dumps(event).decode()
    assert "Sample" not in text and "Several days" not in text and "valueCoding" not in text
    # scored when it was submitted (the completion path, audited by its own request): the
    # sweep looks at it, writes nothing, and records nothing
    outcomes.subscribe(services.events, settings=services.settings)
    task = assign(store, Assignment(
        patient="pat-ava", practitioner="dr-rivera",
        activity="http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0",
        schedule=Schedule(frequency="once", start=date(2026, 3, 3), time_of_day=time(20, 0),
                          timezone="America/New_York")), now=NOW).task
    given = instrument_response("phq-9", [1, 1, 1, 1, 1, 1, 1, 1, 0])
    submit_response(store, task["id"], {"item": given["item"]}, patient="pat-ava",
                    events=services.events, now=NOW)
    assert cycle(services) == 1 and len(worker_events()) == 1


def test_the_sweep_takes_its_turn_once_a_minute(services):
    store = services.store
    store.create(instrument_response("phq-9", [1] * 9))
    assert cycle(services) == 1
    store.create(instrument_response("phq-9", [2] * 9))
    assert cycle(services) == 0  # not its turn yet: the minute has not passed
    assert sweep.rescore_changes(store, plugins=services.plugins).rescored == 1  # still waiting


def test_a_store_error_keeps_the_cursor_before_the_response(services, monkeypatch, caplog):
    store = services.store
    response = store.create(instrument_response("phq-9", [1] * 9)).resource

    def down(*_args, **_kwargs):
        raise RuntimeError("database unreachable while writing Patient/pat-ava Ava Sample")

    monkeypatch.setattr(sweep, "record_scores", down)
    caplog.set_level(logging.INFO)
    for _ in range(2):  # the cursor stays before it: each sweep stops at it again
        run = sweep.rescore_changes(store, plugins=services.plugins)
        assert run.failed and run.rescored == 0 and not run.more
    assert derived(store, response["id"]) == []
    failures = [r.getMessage() for r in caplog.records if r.name == "hw_fhir.outcomes"]
    expected = (f"Re-scoring QuestionnaireResponse/{response['id']} failed (RuntimeError); "
                "the sweep resumes there next time")
    assert failures == [expected] * 2
    assert "Ava" not in caplog.text and "pat-ava" not in caplog.text
    monkeypatch.undo()

    run = sweep.rescore_changes(store, plugins=services.plugins)
    assert run.rescored == 1 and run.caught_up == 1 and not run.failed
    assert len(derived(store, response["id"])) == 11


def test_a_full_batch_makes_the_next_turn_due_at_once(services, monkeypatch):
    store = services.store
    monkeypatch.setattr(sweep, "RESCORE_BATCH", 2)
    ids = [store.create(instrument_response("gad-7", [n % 4] * 7)).resource["id"]
           for n in range(3)]
    counts = [cycle(services) for _ in range(6)]
    assert counts[:2] == [2, 2]  # a full batch: the next turn is due at once
    assert counts[-2:] == [0, 0]  # all done: the next turn is a minute away
    assert all(len(derived(store, i)) == 9 for i in ids)


# -- risk_raised -------------------------------------------------------------------------------


def test_risk_raised_is_called_once_per_flag_not_again_on_rescoring_or_amendment(services, pager,
                                                                                every_cycle):
    store = services.store
    response = store.create(instrument_response("phq-9", RISK)).resource
    recorded = outcomes.record_scores(store, response, plugins=services.plugins, now=NOW)
    [flag], [alert] = recorded.flags, recorded.alerts
    assert recorded.raised == (flag,)
    assert pager.heard == [{"flag": flag["id"], "response": response["id"], "alert": alert["id"],
                            "task": None}]
    assert [j.request_id for j in jobs(services, kind="alert")] == [alert["id"]]  # built-in

    # scored again, then amended with the risk still there: the same Flag, no new call
    again = outcomes.record_scores(store, recorded.response, plugins=services.plugins, now=LATER)
    assert again.flags == (flag,) and again.raised == ()
    amended = store.update(dict(instrument_response("phq-9", [1, 0, 0, 0, 0, 0, 0, 0, 2],
                                                    status="amended"), id=response["id"])).resource
    after = outcomes.record_scores(store, amended, plugins=services.plugins, now=LATER)
    assert [f["id"] for f in after.flags] == [flag["id"]] and after.raised == ()
    assert len(pager.heard) == 1

    # the worker re-scores what changed and discovers alerts: still one call, one delivery
    for _ in range(3):
        cycle(services)
    assert len(pager.heard) == 1
    assert len(iter_all(store, "Flag", [])) == 1
    assert len(jobs(services, kind="alert")) == 1
    assert [m.to for m in services.extras["email"].sent] == ["dr-rivera@clinic.example"]


def test_the_worker_sweep_raises_a_missed_risk_and_announces_it_once(services, pager,
                                                                      every_cycle):
    store = services.store
    response = store.create(instrument_response("phq-9", RISK)).resource
    assert cycle(services) == 1
    [flag] = outcomes.flags_for_response(store, response)
    [alert] = iter_all(store, "CommunicationRequest", [("about", f"Flag/{flag['id']}")])
    assert pager.heard == [{"flag": flag["id"], "response": response["id"], "alert": alert["id"],
                            "task": None}]
    for _ in range(2):
        cycle(services)  # the reminder queue delivers it; discovery finds it already queued
    assert len(pager.heard) == 1 and len(jobs(services, kind="alert")) == 1
    assert [m.to for m in services.extras["email"].sent] == ["dr-rivera@clinic.example"]
    assert store.read("CommunicationRequest", alert["id"]).resource["status"] == "completed"


def test_the_completion_path_announces_the_flag_with_its_task(services, pager):
    store = services.store
    outcomes.subscribe(services.events, settings=services.settings)
    task = assign(store, Assignment(
        patient="pat-ava", practitioner="dr-rivera",
        activity="http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0",
        schedule=Schedule(frequency="once", start=date(2026, 3, 3), time_of_day=time(20, 0),
                          timezone="America/New_York")), now=NOW).task
    given = instrument_response("phq-9", [2, 2, 2, 2, 2, 2, 2, 2, 1])
    done = submit_response(store, task["id"], {"item": given["item"]}, patient="pat-ava",
                           events=services.events, now=NOW)
    [flag] = outcomes.flags_for_response(store, done.response)
    assert [(h["flag"], h["task"]) for h in pager.heard] == [(flag["id"], task["id"])]
    fixed = instrument_response("phq-9", [1, 1, 1, 1, 1, 1, 1, 1, 3])
    amend_response(store, task["id"], {"item": fixed["item"]}, patient="pat-ava",
                   events=services.events, now=LATER)
    assert len(pager.heard) == 1


def test_a_plugin_failing_in_risk_raised_loses_nothing(tmp_path, db_url, pager, caplog):
    services = _services(tmp_path, db_url, pager, BrokenPager())
    store = services.store
    caplog.set_level(logging.INFO)
    try:
        response = store.create(instrument_response("phq-9", RISK)).resource
        recorded = outcomes.score_quietly(store, response, plugins=services.plugins, now=NOW)
        [flag], [alert] = recorded.flags, recorded.alerts
        assert recorded.raised == (flag,) and recorded.scored and not recorded.warnings
        assert store.read("Flag", flag["id"]).resource["status"] == "active"
        assert store.read("CommunicationRequest", alert["id"]).resource["status"] == "active"
        assert len(derived(store, response["id"])) == 11
        assert [h["flag"] for h in pager.heard] == [flag["id"]]  # the others still heard of it
        assert [j.request_id for j in jobs(services, kind="alert")] == [alert["id"]]
        assert f"failed in risk_raised for Flag/{flag['id']} (RuntimeError)" in caplog.text
        assert "Ava" not in caplog.text and "pat-ava" not in caplog.text
        assert "Traceback" not in caplog.text
    finally:
        services.close()


# -- several workers on PostgreSQL -------------------------------------------------------------


@pytest.mark.postgres
def test_workers_on_postgresql_take_turns_and_score_each_response_once(tmp_path, pg_url):
    pager = Pager()
    first = _services(tmp_path / "a", pg_url, pager)
    second = make_services(tmp_path / "b", pager, db_url=pg_url)
    try:
        store = first.store
        ids = [store.create(instrument_response("phq-9", RISK)).resource["id"] for _ in range(6)]

        # a worker holding the cursor makes the other skip, without moving it
        sweep.rescore_changes(store, plugins=first.plugins, batch=1)  # scores one response
        mark = cursor(store)
        with store.engine.connect() as conn, conn.begin():
            conn.execute(sa.select(sync_cursor.c.seq).where(
                sync_cursor.c.name == sweep.RESCORE_CURSOR).with_for_update())
            assert sweep.rescore_changes(second.store, plugins=second.plugins).skipped
        assert cursor(store) == mark

        errors: list[BaseException] = []

        def work(services) -> None:
            try:
                for _ in range(20):
                    sweep.rescore_changes(services.store, plugins=services.plugins, batch=2)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        while sweep.rescore_changes(store, plugins=first.plugins, batch=2).more:
            pass  # whatever the two did not get to in their 20 tries each
        assert len(iter_all(store, "Flag", [])) == 6
        assert len(iter_all(store, "CommunicationRequest", [])) == 6
        assert all(len(derived(store, i)) == 11 for i in ids)
        assert sorted(h["response"] for h in pager.heard) == sorted(ids)  # each Flag once
        assert len({h["flag"] for h in pager.heard}) == 6
    finally:
        first.close()
        second.close()
