"""Outbox write-back of amendments and of patient references the EHR can resolve.

The EHR is a second hw-fhir served over HTTP (``sync_support.OutboxEhr``), stopped, made to
fail and made to lose its answers. An amended response and its re-scored Observation reach
it as updates of the same records, once per version; a record about a Patient the EHR cannot
resolve waits, visible to administrators, instead of going out with a dangling reference.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from sync_support import OutboxEhr, eventually, response, score

from hw_fhir.smart.mirror import ehr_identifier
from hw_fhir.sync.outbox import list_outbox, outbox_counts, retry_outbox, run_outbox


@pytest.fixture
def ehr(tmp_path: Path, db_url: str) -> Iterator[OutboxEhr]:
    setup = OutboxEhr(tmp_path, db_url)
    yield setup
    setup.close()


def _linked_patient(ehr: OutboxEhr, local_id: str = "local-ava", ehr_id: str = "ehr-123") -> None:
    link = ehr_identifier(f"{ehr.base}/fhir", "Patient", ehr_id)
    ehr.store.update({"resourceType": "Patient", "id": local_id, "identifier": [link]})


def _writes(ehr: OutboxEhr) -> list[tuple[str, str, int]]:
    return [c for c in ehr.switch.calls if c[0] in ("POST", "PUT") and c[1].startswith("/fhir/")]


def _amend(ehr: OutboxEhr, qr: Any, obs: Any) -> tuple[Any, Any]:
    item = [{"linkId": "1", "answer": [{"valueInteger": 3}]}]
    qr = ehr.store.update({**ehr.store.read("QuestionnaireResponse", qr.id).resource,
                           "status": "amended", "item": item}).stored
    current = ehr.store.read("Observation", obs.id).resource
    obs = ehr.store.update({**current, "status": "amended",
                            "valueQuantity": {**current["valueQuantity"], "value": 14}}).stored
    return qr, obs


def test_amendments_update_the_same_records_once_per_version(ehr: OutboxEhr) -> None:
    _linked_patient(ehr)
    run_outbox(ehr.services)
    qr = ehr.store.create(response("local-ava")).stored
    obs = ehr.store.create(score("local-ava", 11, derivedFrom=[
        {"reference": f"QuestionnaireResponse/{qr.id}"}])).stored
    ehr.server.start()
    assert run_outbox(ehr.services) == 2
    (first_copy,) = ehr.copies("QuestionnaireResponse", qr.id)

    _amend(ehr, qr, obs)
    assert run_outbox(ehr.services) == 2
    (qr_copy,) = ehr.copies("QuestionnaireResponse", qr.id)
    (obs_copy,) = ehr.copies("Observation", obs.id)
    assert qr_copy["id"] == first_copy["id"] and qr_copy["meta"]["versionId"] == "2"
    assert qr_copy["status"] == "amended" and qr_copy["item"][0]["answer"] == [{"valueInteger": 3}]
    assert qr_copy["subject"] == {"reference": "Patient/ehr-123"}
    assert obs_copy["status"] == "amended" and obs_copy["valueQuantity"]["value"] == 14
    assert obs_copy["meta"]["versionId"] == "2"
    writes = len(_writes(ehr))
    assert run_outbox(ehr.services, now=time.time() + 7200) == 0
    assert len(_writes(ehr)) == writes  # nothing sent twice
    assert outbox_counts(ehr.services) == {("chart", "delivered"): 2}


def test_amendment_through_downtime_and_a_lost_answer(ehr: OutboxEhr) -> None:
    _linked_patient(ehr)
    run_outbox(ehr.services)
    qr = ehr.store.create(response("local-ava")).stored
    obs = ehr.store.create(score("local-ava", 11)).stored
    t0 = time.time()
    ehr.server.start()
    # the EHR stores the first versions but the answers never arrive
    with ehr.client_timeout(1):
        ehr.switch.mode = "lost"  # answers are held until the next mode: the timeout runs out
        assert run_outbox(ehr.services, now=t0) == 0
    assert eventually(lambda: ehr.written_back("QuestionnaireResponse") == 1)
    # meanwhile the response is amended and re-scored; then the EHR goes down
    _amend(ehr, qr, obs)
    ehr.switch.mode = None
    ehr.server.stop()
    assert run_outbox(ehr.services, now=t0 + 3600) == 0
    assert outbox_counts(ehr.services) == {("chart", "pending"): 2}
    ehr.server.start()
    ehr.switch.mode = "500"
    assert run_outbox(ehr.services, now=t0 + 2 * 3600) == 0
    ehr.switch.mode = None
    assert run_outbox(ehr.services, now=t0 + 3 * 3600) == 2
    (qr_copy,) = ehr.copies("QuestionnaireResponse", qr.id)
    (obs_copy,) = ehr.copies("Observation", obs.id)
    assert qr_copy["status"] == "amended" and obs_copy["valueQuantity"]["value"] == 14
    assert ehr.written_back("QuestionnaireResponse") == 1 and ehr.written_back("Observation") == 1


def test_a_record_about_an_unknown_patient_waits_visibly(
    ehr: OutboxEhr, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ehr.store.update({"resourceType": "Patient", "id": "local-zed", "name": [{"text": "Zed"}]})
    _linked_patient(ehr)
    run_outbox(ehr.services)
    lonely = ehr.store.create(response("local-zed")).stored
    fine = ehr.store.create(response("local-ava")).stored
    ehr.server.start()
    t0 = time.time()
    assert run_outbox(ehr.services, now=t0) == 1  # the other record is not held up
    assert len(ehr.copies("QuestionnaireResponse", fine.id)) == 1
    assert ehr.copies("QuestionnaireResponse", lonely.id) == []
    (waiting,) = list_outbox(ehr.services, status="waiting")
    assert waiting.resource_id == lonely.id and "Patient/local-zed" in (waiting.last_error or "")
    assert not any("local-zed" in path for _, path, _ in ehr.switch.calls)

    monkeypatch.setenv("HW_FHIR_DATABASE_URL", db_url)
    monkeypatch.setenv("HW_FHIR_INSTANCE_PATH", str(tmp_path / "ours"))
    monkeypatch.setenv("HW_FHIR_SECRET_KEY", "ours")
    config = tmp_path / "hw.toml"
    config.write_text(f'[[ehr]]\nname = "chart"\nbase_url = "{ehr.base}/fhir"\n')
    monkeypatch.setenv("HW_FHIR_CONFIG", str(config))
    from hw_fhir.cli import cli

    status = CliRunner().invoke(cli, ["outbox", "status"])
    assert "chart: 0 pending, 1 waiting, 1 delivered, 0 failed" in status.output, status.output
    listing = CliRunner().invoke(cli, ["outbox", "failed"])
    assert f"#{waiting.id}" in listing.output and "waiting" in listing.output
    assert "Patient/local-zed" in listing.output

    # still unresolvable when its turn comes again: it keeps waiting, nothing is sent
    assert run_outbox(ehr.services, now=t0 + 3600) == 0
    assert list_outbox(ehr.services, status="waiting")[0].attempts == 2
    # the patient gains an identifier the EHR knows: the record goes out by that identifier
    zed = ehr.store.read("Patient", "local-zed").resource
    ehr.store.update({**zed, "identifier": [{"system": "urn:mrn", "value": "Z-1"}]})
    assert retry_outbox(ehr.services) == 1
    assert run_outbox(ehr.services) == 1
    (copy,) = ehr.copies("QuestionnaireResponse", lonely.id)
    assert copy["subject"] == {"type": "Patient", "identifier": {"system": "urn:mrn", "value": "Z-1"}}
    assert outbox_counts(ehr.services) == {("chart", "delivered"): 2}
