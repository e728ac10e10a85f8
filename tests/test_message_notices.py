"""New-message notifications go through the reminder queue: nothing is lost when the channel is down.

A real SMTP server (aiosmtpd) that is down (nothing listens on its port), then started on
that port: the clinician's message is stored at once, its notification waits, shown on
the dashboard and by ``hw-fhir reminders status`` (exit 1), and once SMTP is back the
worker's pass sends it exactly once, with no content and no names.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.policy import default as email_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from clinician_support import clinician_app, open_launch
from sync_support import free_port
from hw_fhir import messages
from hw_fhir.reminders import run_reminders
from hw_fhir.reminders.retry import reminder_problems

TIMEZONE_URL = "http://hl7.org/fhir/StructureDefinition/timezone"


class Inbox:
    """An aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def _awake(services: Any, patient_id: str = "pat-ava") -> None:
    """Put the patient in a zone where it is early afternoon now: no quiet hours in the way."""
    now = datetime.now(timezone.utc)
    offset = (13 - now.hour + 12) % 24 - 12
    zone = "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"
    patient = services.store.read("Patient", patient_id).resource
    extensions = [e for e in patient.get("extension") or [] if e.get("url") != TIMEZONE_URL]
    services.store.update(dict(patient, extension=[*extensions,
                                                   {"url": TIMEZONE_URL, "valueCode": zone}]))


@pytest.fixture
def down_smtp(app_config: dict[str, Any]) -> Any:
    port = free_port()  # nothing listens here yet: the SMTP server is down
    app = clinician_app(app_config, base_url="https://hw.example.org", smtp_port=port)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    try:
        yield app, inbox, controller
    finally:
        try:
            controller.stop()
        except AssertionError:  # never started
            pass
        app.extensions["hw_fhir"].close()


def _cli(app_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("HW_FHIR_DATABASE_URL", app_config["database_url"])
    monkeypatch.setenv("HW_FHIR_INSTANCE_PATH", app_config["instance_path"])
    from hw_fhir.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_a_notification_smtp_could_not_take_waits_visibly_and_is_sent_once_when_it_is_back(
        down_smtp: Any, app_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    app, inbox, controller = down_smtp
    services = app.extensions["hw_fhir"]
    _awake(services)
    session = open_launch(app, app.test_client())
    reply = "About the argument with Sam: let us talk on Tuesday"
    assert session.post("/clinician/patients/pat-ava/messages", {"text": reply}).status_code == 303
    assert [m.text for m in messages.thread(services.store, "pat-ava")] == [reply]  # stored

    # SMTP is down: the notification waits for its retry, and says so
    (problem,) = [p for p in reminder_problems(services.store, patients=["pat-ava"])
                  if p.kind == "message"]
    assert problem.status == "retrying" and "SMTP server unreachable" in problem.reason
    assert problem.tries == 1 and problem.next_try
    dashboard = session.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert 'id="undelivered-reminders"' in dashboard and "New-message notification" in dashboard
    status = _cli(app_config, monkeypatch, "reminders", "status")
    assert status.exit_code == 1, status.output
    assert f"{problem.id} (message, retrying, 1 tries): SMTP server unreachable" in status.output
    assert reply not in status.output and "Ava" not in status.output

    # a pass before the retry is due sends nothing; SMTP comes back; the due retry sends it
    run_reminders(services, worker="w")
    assert inbox.messages == []
    controller.start()
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    run = run_reminders(services, worker="w", now=later)
    assert run.sent == 1
    run_reminders(services, worker="w", now=later + timedelta(hours=1))
    assert messages.notify(services, {"id": problem.id.split("/", 1)[1],
                                      "subject": {"reference": "Patient/pat-ava"}}) is None
    assert len(inbox.messages) == 1  # exactly once
    to, raw = inbox.messages[0]
    assert to == ["ava@example.org"]
    parsed = message_from_bytes(raw, policy=email_policy)
    body = parsed.get_body(preferencelist=("plain",)).get_content()
    assert str(parsed["Subject"]) == "You have a new message"
    assert "You have a new message from your care team" in body
    assert "https://hw.example.org/my/messages" in body
    for phi in (reply, "Sam", "Ava", "Nguyen", "Rivera", "pat-ava"):
        assert phi not in raw.decode("utf-8", "replace")
    assert not [p for p in reminder_problems(services.store) if p.kind == "message"]
    status = _cli(app_config, monkeypatch, "reminders", "status")
    assert status.exit_code == 0 and "Everything queued was delivered" in status.output

    # the attempts are on record: one not done (SMTP down), one completed; part of the message
    attempts = services.store.search("Communication", [
        ("part-of", f"Communication/{problem.id.split('/', 1)[1]}"), ("_count", "10")]).resources
    assert sorted(a["status"] for a in attempts) == ["completed", "not-done"]
    assert all(reply not in str(a) for a in attempts)


def test_a_message_to_a_patient_in_quiet_hours_is_notified_when_they_end(
        down_smtp: Any) -> None:
    app, inbox, controller = down_smtp
    controller.start()
    services = app.extensions["hw_fhir"]
    store = services.store
    patient = store.read("Patient", "pat-ava").resource
    zone = [e for e in patient.get("extension") or [] if e.get("url") == TIMEZONE_URL]
    assert zone and zone[0]["valueCode"] == "America/New_York"
    sent = messages.send_message(store, patient="pat-ava", sender="Practitioner/dr-rivera",
                                 recipient="Patient/pat-ava", text="hello")
    night = datetime(2026, 3, 3, 7, 0, tzinfo=timezone.utc)  # 02:00 in New York
    assert messages.notify(services, sent, now=night) is None
    assert inbox.messages == []  # put off, not dropped
    assert not reminder_problems(store)  # waiting for the morning is not a problem
    run_reminders(services, worker="w", now=night + timedelta(hours=3))  # 05:00: still quiet
    assert inbox.messages == []
    run_reminders(services, worker="w", now=night + timedelta(hours=6, minutes=1))  # 08:01
    assert len(inbox.messages) == 1
    run_reminders(services, worker="w", now=night + timedelta(hours=8))
    assert len(inbox.messages) == 1
