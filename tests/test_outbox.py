"""EHR write-back through the outbox, against a second hw-fhir served on another port as the EHR.

The EHR is a real app (its own database, the sandbox authorization server, /fhir behind
Backend Services tokens). It is stopped, made to answer 500, made slow, and made to lose
its answers after storing the write; once it behaves, every record must be there exactly once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl

import pytest
from click.testing import CliRunner
from sync_support import OutboxEhr as Ehr
from sync_support import eventually, response, run_worker_cycle, score

import orjson

from hw_fhir.audit_query import search_events
from hw_fhir.errors import ConfigurationError
from hw_fhir.smart.mirror import ehr_identifier
from hw_fhir.sync.outbox import (
    DEFAULT_IDENTIFIER_SYSTEM,
    EhrTarget,
    feed_outbox,
    list_outbox,
    outbox_counts,
    retry_outbox,
    run_outbox,
    write_back_copy,
)

@pytest.fixture
def ehr(tmp_path: Path, sqlite_url: str) -> Iterator[Ehr]:
    setup = Ehr(tmp_path, sqlite_url)
    yield setup
    setup.close()


def _records(store: Any) -> dict[str, list[str]]:
    """Write what qualifies (and what does not); return the local ids that must arrive."""
    qrs = [store.create(response(p)).stored.id for p in ("ava", "ben", "carmen")]
    store.create(response("ava", "in-progress"))  # not finished: stays home
    scores = [store.create(score(p, 11)).stored.id for p in ("ava", "ben")]
    vital = score("ava", 70)
    vital["category"] = [{"coding": [{"code": "vital-signs"}]}]
    store.create(vital)  # not a survey score: stays home
    return {"QuestionnaireResponse": qrs, "Observation": scores}


def _pending(ehr: Ehr) -> int:
    return outbox_counts(ehr.services).get(("chart", "pending"), 0)


def test_every_record_arrives_exactly_once_after_outages(ehr: Ehr) -> None:
    assert run_outbox(ehr.services) == 0  # the feeder starts at the current end
    records = _records(ehr.store)
    t0 = time.time()
    # the EHR is down (connection refused) for hours
    assert run_outbox(ehr.services, now=t0) == 0
    assert _pending(ehr) == 5
    for hour in range(1, 6):
        assert run_outbox(ehr.services, now=t0 + hour * 3600) == 0
    assert _pending(ehr) == 5 and not list_outbox(ehr.services)  # waiting, not failed
    first = list_outbox(ehr.services, status="pending")[0]
    assert first.attempts == 6 and "ConnectionError" in (first.last_error or "")
    assert all(
        r.attempts == 0 for r in list_outbox(ehr.services, status="pending")[1:]
    )  # not hammered
    # it comes back answering 500
    ehr.server.start()
    ehr.switch.mode = "500"
    assert run_outbox(ehr.services, now=t0 + 6 * 3600) == 0
    assert any(status == 500 for _, _, status in ehr.switch.calls)
    # it stores the write but the answer never arrives (client timeout)
    with ehr.client_timeout(1):
        ehr.switch.mode = "lost"  # answers are held until the next mode: the timeout runs out
        assert run_outbox(ehr.services, now=t0 + 7 * 3600) == 0
        # the EHR has it (or is storing it); we do not know yet
        assert eventually(lambda: ehr.written_back("QuestionnaireResponse") == 1)
        # it is slow: every request times out (and reaches the EHR after we gave up)
        ehr.switch.mode = "slow"
        assert run_outbox(ehr.services, now=t0 + 8 * 3600) == 0
    # it behaves again; the requests it held are handled now, alongside the new ones
    ehr.switch.mode = None
    assert run_outbox(ehr.services, now=t0 + 9 * 3600) == 5
    ehr.switch.settle()  # the late requests are finished: the counts below are final
    for rtype, ids in records.items():
        for local_id in ids:
            assert len(ehr.copies(rtype, local_id)) == 1, f"{rtype}/{local_id}"
        assert ehr.written_back(rtype) == len(ids)
    assert outbox_counts(ehr.services) == {("chart", "delivered"): 5}
    posts = len(ehr.switch.posts("/fhir/"))
    assert run_outbox(ehr.services, now=t0 + 10 * 3600) == 0
    assert len(ehr.switch.posts("/fhir/")) == posts  # nothing sent twice
    delivered = list_outbox(ehr.services, status="delivered")
    assert {r.remote_ref.split("/")[0] for r in delivered} == {
        "QuestionnaireResponse",
        "Observation",
    }


@pytest.mark.parametrize("mode", ["lost", "slow"])
def test_a_write_answered_after_the_timeout_is_not_stored_twice(ehr: Ehr, mode: str) -> None:
    """At-least-once delivery without a second copy.

    "lost": the EHR stores the record and answers after the client gave up; "slow": the
    request reaches the EHR only after the client gave up, while the next attempt is
    handled. The outbox retries (it cannot know), and every attempt is a conditional
    create on the record's identifier, so the EHR keeps one copy.
    """
    run_outbox(ehr.services)
    ehr.store.create(response("ben"))
    ehr.server.start()
    assert run_outbox(ehr.services) == 1  # the EHR is known, the token fetched
    qr = ehr.store.create(response("ava")).stored
    t0 = time.time()
    with ehr.client_timeout(1):
        ehr.switch.mode = mode  # held until the mode changes: the client's timeout runs out
        assert run_outbox(ehr.services, now=t0) == 0
        if mode == "lost":
            assert eventually(lambda: len(ehr.copies("QuestionnaireResponse", qr.id)) == 1)
        else:
            assert ehr.copies("QuestionnaireResponse", qr.id) == []
    (row,) = list_outbox(ehr.services, status="pending")
    assert "ReadTimeout" in (row.last_error or "")
    ehr.switch.mode = None  # the held requests go on, alongside the retry
    assert run_outbox(ehr.services, now=t0 + 3600) == 1
    ehr.switch.settle()
    (copy,) = ehr.copies("QuestionnaireResponse", qr.id)
    writes = [c for c in ehr.switch.conditions if c[1] == "/fhir/QuestionnaireResponse"][1:]
    assert len(writes) >= 3  # two timed-out attempts (the request's own retry) and the outbox's
    expected = [("identifier", f"{DEFAULT_IDENTIFIER_SYSTEM}|QuestionnaireResponse/{qr.id}")]
    assert all(m == "POST" and parse_qsl(c or "") == expected for m, _, c in writes)
    delivered = list_outbox(ehr.services, status="delivered")
    assert f"QuestionnaireResponse/{copy['id']}" in {r.remote_ref for r in delivered}
    assert ehr.written_back("QuestionnaireResponse") == 2


def test_copies_keep_their_meaning_in_the_ehr(ehr: Ehr) -> None:
    store = ehr.store
    link = ehr_identifier(f"{ehr.base}/fhir", "Patient", "ehr-123")
    store.update({"resourceType": "Patient", "id": "local-ava", "identifier": [link]})
    store.update(
        {
            "resourceType": "Patient",
            "id": "local-ben",
            "identifier": [{"system": "urn:mrn", "value": "B-7"}],
        }
    )
    run_outbox(ehr.services)
    qr = store.create(
        response("local-ava", identifier={"system": "urn:form", "value": "f-1"})
    ).stored
    obs = store.create(
        score(
            "local-ben",
            12,
            derivedFrom=[{"reference": f"QuestionnaireResponse/{qr.id}"}],
            performer=[{"reference": "Patient/unknown", "display": "Someone"}],
        )
    ).stored
    ehr.server.start()
    assert run_outbox(ehr.services) == 2
    (qr_copy,) = ehr.copies("QuestionnaireResponse", qr.id)
    assert qr_copy["subject"] == {"reference": "Patient/ehr-123"}  # the EHR's own patient
    assert qr_copy["identifier"] == {
        "system": DEFAULT_IDENTIFIER_SYSTEM,
        "value": f"QuestionnaireResponse/{qr.id}",
    }
    assert qr_copy["id"] != qr.id
    (obs_copy,) = ehr.copies("Observation", obs.id)
    assert obs_copy["subject"] == {
        "type": "Patient",
        "identifier": {"system": "urn:mrn", "value": "B-7"},
    }
    assert obs_copy["derivedFrom"] == [
        {
            "type": "QuestionnaireResponse",
            "identifier": {
                "system": DEFAULT_IDENTIFIER_SYSTEM,
                "value": f"QuestionnaireResponse/{qr.id}",
            },
        }
    ]
    assert obs_copy["performer"] == [{"reference": "Patient/unknown", "display": "Someone"}]


def test_write_back_copy_without_a_server() -> None:
    target = EhrTarget.from_config({"name": "x", "base_url": "https://ehr.example.org/fhir"})
    local = {
        "resourceType": "Observation",
        "id": "o1",
        "meta": {"versionId": "3", "lastUpdated": "2026-01-01T00:00:00Z", "profile": ["http://p"]},
        "status": "final",
        "code": {"text": "x"},
        "identifier": [{"system": "urn:other", "value": "1"}],
        "subject": {"reference": "Patient/p1"},
        "basedOn": [{"reference": "CarePlan/c1"}],
    }
    patients = {
        ("Patient", "p1"): {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [ehr_identifier("https://ehr.example.org/fhir", "Patient", "E9")],
        }
    }
    out = write_back_copy(local, target, lambda t, i: patients.get((t, i)))
    assert "id" not in out and out["meta"] == {"profile": ["http://p"]}
    assert out["identifier"] == [
        {"system": "urn:other", "value": "1"},
        {"system": DEFAULT_IDENTIFIER_SYSTEM, "value": "Observation/o1"},
    ]
    assert out["subject"] == {"reference": "Patient/E9"}
    assert out["basedOn"] == [
        {
            "type": "CarePlan",
            "identifier": {"system": DEFAULT_IDENTIFIER_SYSTEM, "value": "CarePlan/c1"},
        }
    ]
    assert local["subject"] == {"reference": "Patient/p1"}  # the original is untouched


def test_the_newest_qualifying_version_is_queued_once(ehr: Ehr) -> None:
    store = ehr.store
    existing = store.create(response("ava")).stored  # before the outbox started: not sent
    assert feed_outbox(ehr.services) == 0
    draft = store.create(response("ava", "in-progress")).stored
    assert feed_outbox(ehr.services) == 0
    done = store.update({**draft.resource, "status": "completed"}).stored
    amended = store.update({**done.resource, "status": "amended"}).stored
    assert feed_outbox(ehr.services) == 1  # one row, at the newest qualifying version
    (row,) = list_outbox(ehr.services, status="pending")
    assert (row.resource_id, row.version_id) == (draft.id, int(amended.version_id))
    assert existing.id not in {r.resource_id for r in list_outbox(ehr.services, status=None)}
    assert feed_outbox(ehr.services) == 0


def test_backfill_sends_what_existed_before(tmp_path: Path, sqlite_url: str) -> None:
    setup = Ehr(tmp_path, sqlite_url, backfill=True)
    try:
        old = setup.store.create(response("ava")).stored
        setup.server.start()
        assert run_outbox(setup.services) == 1
        assert len(setup.copies("QuestionnaireResponse", old.id)) == 1
    finally:
        setup.close()


def test_permanent_failures_are_shown_to_an_administrator(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the EHR registered this client for responses and scores only: a Flag is refused (403)
    setup = Ehr(
        tmp_path,
        sqlite_url,
        write_back=["QuestionnaireResponse", "Flag"],
        scope="system/QuestionnaireResponse.crs system/Flag.crs",
    )
    try:
        run_outbox(setup.services)
        setup.store.create(
            {
                "resourceType": "Flag",
                "status": "active",
                "code": {"text": "risk"},
                "subject": {"reference": "Patient/ava"},
            }
        )
        qr = setup.store.create(response("ava")).stored
        setup.server.start()
        assert run_outbox(setup.services) == 1  # the response goes, the Flag cannot
        (failed,) = list_outbox(setup.services)
        assert failed.resource_type == "Flag" and failed.status == "failed"
        assert "Forbidden" in (failed.last_error or "")
        assert len(setup.copies("QuestionnaireResponse", qr.id)) == 1
        monkeypatch.setenv("HW_FHIR_DATABASE_URL", sqlite_url)
        monkeypatch.setenv("HW_FHIR_INSTANCE_PATH", str(tmp_path / "ours"))
        monkeypatch.setenv("HW_FHIR_SECRET_KEY", "ours")
        config = tmp_path / "hw.toml"
        config.write_text(f'[[ehr]]\nname = "chart"\nbase_url = "{setup.base}/fhir"\n')
        monkeypatch.setenv("HW_FHIR_CONFIG", str(config))
        from hw_fhir.cli import cli

        listing = CliRunner().invoke(cli, ["outbox", "failed"])
        assert listing.exit_code == 0, listing.output
        assert f"#{failed.id}" in listing.output and "Flag/" in listing.output
        status = CliRunner().invoke(cli, ["outbox", "status"])
        assert "chart: 0 pending, 0 waiting, 1 delivered, 1 failed" in status.output
        retried = CliRunner().invoke(cli, ["outbox", "retry", "--all"])
        assert retried.exit_code == 0 and "1 records queued again" in retried.output
        assert outbox_counts(setup.services)[("chart", "pending")] == 1
        assert retry_outbox(setup.services) == 0  # nothing failed any more
        jwks = CliRunner().invoke(cli, ["outbox", "jwks", "chart"])
        assert jwks.exit_code == 0 and '"kty"' in jwks.output and '"d"' not in jwks.output
    finally:
        setup.close()


def test_gives_up_after_the_configured_time(tmp_path: Path, sqlite_url: str) -> None:
    setup = Ehr(tmp_path, sqlite_url)
    try:
        run_outbox(setup.services)
        setup.store.create(response("ava"))
        t0 = time.time()
        run_outbox(setup.services, now=t0)
        run_outbox(setup.services, now=t0 + 167 * 3600)
        assert outbox_counts(setup.services) == {("chart", "pending"): 1}
        run_outbox(setup.services, now=t0 + 169 * 3600)
        (row,) = list_outbox(setup.services)
        assert row.last_error.startswith("Gave up after 168 hours")
    finally:
        setup.close()


def test_concurrent_workers_send_each_record_once(tmp_path: Path, db_url: str) -> None:
    # A generous timeout: a conditional create that times out is retried by design (the
    # retry is answered by If-None-Exist), which would count as a second POST here; this
    # test is about two workers never claiming the same row.
    setup = Ehr(tmp_path, db_url, timeout=30)
    try:
        run_outbox(setup.services)
        ids = [setup.store.create(response(f"p{i}")).stored.id for i in range(30)]
        feed_outbox(setup.services)
        setup.server.start()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                run_outbox(setup.services)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        creates = [c for c in setup.switch.posts("/fhir/QuestionnaireResponse")]
        assert len(creates) == 30, "a record was POSTed more than once"
        assert all(len(setup.copies("QuestionnaireResponse", i)) == 1 for i in ids)
    finally:
        setup.close()


def test_the_worker_runs_the_outbox(ehr: Ehr) -> None:
    run_worker_cycle(ehr.services)
    qr = ehr.store.create(response("ava")).stored
    ehr.server.start()
    report = run_worker_cycle(ehr.services)
    assert report.work["ehr_outbox"] == 1
    assert len(ehr.copies("QuestionnaireResponse", qr.id)) == 1


def worker_events(store: Any, *params: tuple[str, str]) -> list[dict[str, Any]]:
    """The worker's AuditEvents (written at once), oldest first."""
    page = search_events(store, [("altid", "hw-fhir-worker"), *params, ("_count", "1000")])
    return [orjson.loads(content) for _, content in page.events]


def test_every_attempt_to_send_a_record_is_an_audited_disclosure(
    tmp_path: Path, db_url: str
) -> None:
    setup = Ehr(
        tmp_path,
        db_url,
        write_back=["QuestionnaireResponse", "Flag"],
        scope="system/QuestionnaireResponse.crs system/Flag.crs",
    )
    try:
        run_outbox(setup.services)
        setup.store.update(
            {
                "resourceType": "Patient",
                "id": "ava",
                "name": [{"family": "Zyxwright", "given": ["Avaline"]}],
                "identifier": [{"system": "urn:mrn", "value": "A-1"}],
            }
        )
        flag = setup.store.create(
            {
                "resourceType": "Flag",
                "status": "active",
                "code": {"text": "risk"},
                "subject": {"reference": "Patient/ava"},
            }
        ).stored
        secret = "I keep thinking about the bridge"
        qr = setup.store.create(
            response(
                "ava",
                item=[{"linkId": "1", "text": "Thoughts?", "answer": [{"valueString": secret}]}],
            )
        ).stored
        t0 = time.time()
        assert run_outbox(setup.services, now=t0) == 0  # the EHR is down: the Flag waits
        setup.server.start()
        # the response goes, the Flag is refused
        assert run_outbox(setup.services, now=t0 + 120) == 1
        events = worker_events(setup.store, ("subtype", "ehr-write-back"))
        got = [
            (e["entity"][1]["what"]["reference"], e["outcome"], e["action"]) for e in events
        ]
        assert got == [
            (f"Flag/{flag.id}", "4", "E"),
            (f"Flag/{flag.id}", "8", "E"),
            (f"QuestionnaireResponse/{qr.id}", "0", "E"),
        ]
        for event in events:
            assert event["type"]["code"] == "110106"  # DICOM Export: a disclosure
            assert event["entity"][0]["what"] == {"reference": "Patient/ava"}
            assert event["entity"][0]["role"]["code"] == "1"
            worker, _, destination = event["agent"]
            assert worker["requestor"] is True and worker["altId"] == "hw-fhir-worker"
            assert destination["who"] == {"display": "chart"}
            assert destination["network"] == {"address": f"{setup.base}/fhir", "type": "5"}
        assert search_events(setup.store, [("patient", "Patient/ava"), ("outcome", "0")]).events
        text = orjson.dumps(events).decode()
        assert "Avaline" not in text and "Zyxwright" not in text and secret not in text
        assert "Thoughts" not in text and "A-1" not in text
    finally:
        setup.close()


@pytest.mark.parametrize(
    "item, message",
    [
        ({"base_url": "https://e.example.org"}, "name"),
        ({"name": "e", "base_url": "ehr.example.org"}, "base_url"),
        ({"name": "e", "base_url": "https://e.example.org", "write_back": ["Patient"]}, "Patient"),
        ({"name": "e", "base_url": "https://e.example.org", "auth": "magic"}, "auth"),
        (
            {"name": "e", "base_url": "https://e.example.org", "auth": "backend-services"},
            "client_id",
        ),
        ({"name": "e", "base_url": "https://e.example.org", "colour": "red"}, "unknown"),
        (
            {
                "name": "e",
                "base_url": "https://e.example.org",
                "criteria": {"Flag": "status=active"},
            },
            "Flag",
        ),
        (
            {
                "name": "e",
                "base_url": "https://e.example.org",
                "criteria": {"Observation": "date=2026"},
            },
            "date",
        ),
    ],
)
def test_bad_ehr_configuration(item: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        EhrTarget.from_config(item)
