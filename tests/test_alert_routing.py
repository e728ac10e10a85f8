"""Risk alerts reach a person: the escalation path level by level, over real SMTP (aiosmtpd).

A positive PHQ-9 item 9 is posted through /fhir over HTTP; the worker's reminder queue and
escalation task are driven directly (the escalation delay is configured in seconds).
"""

from __future__ import annotations

import email
import socket
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from hw_fhir import library
from hw_fhir.completion import RESPONSE_TASK_SYSTEM
from hw_fhir.config import load_settings
from hw_fhir.default_worker import alert_escalation
from hw_fhir.errors import ConfigurationError
from hw_fhir.outcomes import undelivered_alerts
from hw_fhir.reminders import failures, run_reminders
from hw_fhir.safety import SAFETY_CONTACT_REF, config_problems

from safety_support import Fhir, catalog_phq9

DELAY = 5  # seconds before an undelivered alert escalates
SAFETY = "duty@practice.test"


class Inbox:
    """An SMTP server's mailbox; ``gone@`` addresses are refused for good, ``busy@`` for now."""

    def __init__(self) -> None:
        self.to: list[str] = []
        self.bodies: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 No such user"
        if address.startswith("busy@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.to.extend(envelope.rcpt_tos)
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.bodies.append(message.get_body(("plain",)).get_content())
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def inbox():
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture
def app_config(tmp_path: Path, db_url: str, inbox: Inbox) -> dict:
    """The app on SQLite and on PostgreSQL, mail to the test's SMTP server, 5 s escalation."""
    return {"TESTING": True, "instance_path": str(tmp_path / "instance"),
            "database_url": db_url, "open_api": True, "secret_key": "test-secret",
            "base_url": "http://127.0.0.1:9", "smtp_port": inbox.port,
            "safety_name": "Duty clinician", "safety_channel": "email", "safety_address": SAFETY,
            "safety_escalate_after_seconds": DELAY}


@pytest.fixture
def services(app):
    svc = app.extensions["hw_fhir"]
    library.load_catalog(svc.store)
    svc.store.update({"resourceType": "Patient", "id": "pat-ava"})
    return svc


@pytest.fixture
def fhir(live_server) -> Fhir:
    return Fhir(live_server.url)


def clinician(store: Any, pid: str, address: str | None) -> str:
    resource: dict[str, Any] = {"resourceType": "Practitioner", "id": pid}
    if address:
        resource["telecom"] = [{"system": "email", "value": address}]
    store.update(resource)
    return f"Practitioner/{pid}"


def set_level(store: Any, level: str, ref: str) -> dict[str, Any]:
    """Make ``ref`` reachable at one level of the chain; return what the response needs."""
    if level == "task-requester":
        sdc = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
        store.update({"resourceType": "Task", "id": "t-1", "status": "in-progress",
                      "intent": "order", "for": {"reference": "Patient/pat-ava"},
                      "code": {"coding": [{"system": sdc, "code": "complete-questionnaire"}]},
                      "input": [{"type": {"coding": [{"system": sdc, "code": "questionnaire"}]},
                                 "valueCanonical": "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0"}],
                      "requester": {"reference": ref}})
        return {"identifier": {"system": RESPONSE_TASK_SYSTEM, "value": "t-1"}}
    if level == "careplan-author":
        store.update({"resourceType": "CarePlan", "id": "cp-1", "status": "active",
                      "intent": "plan", "subject": {"reference": "Patient/pat-ava"},
                      "author": {"reference": ref}})
        return {"basedOn": [{"reference": "CarePlan/cp-1"}]}
    if level == "general-practitioner":
        store.update({"resourceType": "Patient", "id": "pat-ava",
                      "generalPractitioner": [{"reference": ref}]})
        return {}
    if level == "care-team":
        store.update({"resourceType": "CareTeam", "id": "ct-1", "status": "active",
                      "subject": {"reference": "Patient/pat-ava"},
                      "participant": [{"member": {"reference": ref}}]})
        return {}
    raise AssertionError(level)


def post_item9(fhir: Fhir, **extra: Any) -> dict[str, Any]:
    resp = catalog_phq9([0, 0, 0, 0, 0, 0, 0, 0, 2])
    resp.update(extra)
    got = fhir.post(resp)
    assert got.status_code == 201, got.text
    [alert] = fhir.search("CommunicationRequest?category=http://hw-fhir.org/fhir/CodeSystem/"
                          "communication-category|risk-alert")
    return alert


def later(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


@pytest.mark.parametrize("level", ["task-requester", "careplan-author", "general-practitioner",
                                   "care-team"])
def test_each_level_of_the_chain_is_the_recipient(services, fhir, inbox, level) -> None:
    ref = clinician(services.store, "dr-one", "one@clinic.test")
    clinician(services.store, "dr-decoy", "decoy@clinic.test")  # on file, in no chain
    alert = post_item9(fhir, **set_level(services.store, level, ref))
    assert alert["recipient"] == [{"reference": ref}]
    run_reminders(services, worker="w")
    assert inbox.to == ["one@clinic.test"]
    assert "Patient" not in inbox.bodies[0] and "item 9" not in inbox.bodies[0], "no PHI"
    assert fhir.read("CommunicationRequest", alert["id"])["status"] == "completed"
    assert not undelivered_alerts(services.store)


def test_no_one_on_file_goes_to_the_safety_contact(services, fhir, inbox) -> None:
    alert = post_item9(fhir)
    assert alert["recipient"] == [{"reference": SAFETY_CONTACT_REF}]
    run_reminders(services, worker="w")
    assert inbox.to == [SAFETY]


def test_unreachable_clinicians_escalate_at_once_to_the_safety_contact(services, fhir, inbox) -> None:
    gp = clinician(services.store, "dr-noemail", None)  # no channel can reach them
    team = clinician(services.store, "dr-gone", "gone@clinic.test")  # SMTP 550
    set_level(services.store, "general-practitioner", gp)
    set_level(services.store, "care-team", team)
    alert = post_item9(fhir)
    assert alert["recipient"] == [{"reference": gp}]
    for _ in range(4):
        run_reminders(services, worker="w")
    assert inbox.to == [SAFETY]
    stored = fhir.read("CommunicationRequest", alert["id"])
    assert [r["reference"] for r in stored["recipient"]] == [gp, team, SAFETY_CONTACT_REF]
    assert "no channel can reach" in stored["note"][0]["text"]
    assert "550" in stored["note"][1]["text"] or "No such user" in stored["note"][1]["text"]
    assert stored["status"] == "completed"
    assert not failures(services), "nothing failed for good"


def test_undelivered_alert_escalates_after_the_configured_delay(services, fhir, inbox) -> None:
    gp = clinician(services.store, "dr-busy", "busy@clinic.test")  # SMTP 451: retried
    set_level(services.store, "general-practitioner", gp)
    alert = post_item9(fhir)
    run_reminders(services, worker="w")
    assert inbox.to == []
    [shown] = undelivered_alerts(services.store)
    assert shown.recipient == gp and "451" in shown.reason
    assert alert_escalation(services, now=later(DELAY - 2)) == 0, "not yet"
    assert alert_escalation(services, now=later(DELAY + 1)) == 1
    run_reminders(services, worker="w", now=later(DELAY + 1))
    assert inbox.to == [SAFETY]
    stored = fhir.read("CommunicationRequest", alert["id"])
    assert "not delivered within" in stored["note"][-1]["text"]
    assert stored["status"] == "completed"


def test_exhausted_chain_stays_on_screen_and_is_retried(tmp_path, services, fhir, inbox) -> None:
    gp = clinician(services.store, "dr-gone", "gone@clinic.test")
    set_level(services.store, "general-practitioner", gp)
    # the safety contact's own address is refused too
    from dataclasses import replace

    services.settings = replace(services.settings, safety_address="gone@practice.test")
    post_item9(fhir)
    for _ in range(3):
        run_reminders(services, worker="w")
    assert inbox.to == []
    [shown] = undelivered_alerts(services.store)
    assert shown.recipient == SAFETY_CONTACT_REF and shown.escalations == 1
    assert not failures(services), "retried, never failed for good"


def test_safety_config_problems(tmp_path) -> None:
    base = {"instance_path": str(tmp_path), "secret_key": "x"}
    assert config_problems(load_settings({}, **base, safety_name="Duty", safety_channel="email",
                                         safety_address=SAFETY)) == []
    problems = config_problems(load_settings({}, **base, production=True,
                                             base_url="https://hw.example"))
    assert problems and "required in production" in problems[0]
    bad = load_settings({}, **base, safety_name="Duty", safety_channel="email",
                        safety_address="not-an-address")
    assert "not an email address" in config_problems(bad)[0]
    assert "not a loaded channel" in config_problems(
        load_settings({}, **base, safety_name="D", safety_channel="pager", safety_address="1"),
        channels=["email"])[0]
    toml = tmp_path / "hw.toml"
    toml.write_text('[safety]\nname = "Duty"\nchannel = "email"\naddress = "d@p.test"\n'
                    'escalate_after_minutes = 2\n')
    settings = load_settings({"HW_FHIR_CONFIG": str(toml)}, **base)
    assert (settings.safety_name, settings.safety_escalate_after_seconds) == ("Duty", 120)
    toml.write_text('[safety]\nnme = "typo"\n')
    with pytest.raises(ConfigurationError, match="no setting 'nme'"):
        load_settings({"HW_FHIR_CONFIG": str(toml)}, **base)
