"""Nothing fails silently: undelivered reminders on the dashboard and panel with Retry, held
reminders retried after the fix, ``hw-fhir reminders retry``, the worker banner, and the
reminder channel checked at assignment.

Real SQLite, a real SMTP server (aiosmtpd) that first refuses and then accepts.
"""

from __future__ import annotations

import email
import socket
from email import policy
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from clinician_support import clinician_app, open_launch
from hw_fhir import catalog
from hw_fhir.assignment import Assignment, assign
from hw_fhir.heartbeat import beat
from hw_fhir.reminders.retry import reminder_problems
from hw_fhir.reminders import run_reminders
from hw_fhir.schedule import Schedule
from hw_fhir.services import build_services
from hw_fhir.worker import Worker
from smart_app.state import app_state

MOOD_LOG = f"{catalog.CANONICAL_BASE}/Questionnaire/mood-log"


class Smtp:
    """An aiosmtpd handler that refuses every recipient (550) while ``refusing``."""

    def __init__(self) -> None:
        self.refusing = True
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        if self.refusing:
            return "550 5.7.1 Relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Any:
    handler = Smtp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def _awake_zone(now: datetime) -> str:
    """A fixed-offset zone where it is early afternoon now (no quiet hours in the way)."""
    offset = (13 - now.hour + 12) % 24 - 12
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


def _homework_for_ava(services: Any, channel: str = "email") -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    patient = services.store.read("Patient", "pat-ava").resource
    zone = _awake_zone(now)
    extensions = [e for e in patient.get("extension") or []
                  if e.get("url") != "http://hl7.org/fhir/StructureDefinition/timezone"]
    extensions.append({"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": zone})
    services.store.update(dict(patient, extension=extensions))
    local = now.astimezone(__import__("zoneinfo").ZoneInfo(zone))
    result = assign(services.store, Assignment(
        patient="Patient/pat-ava", practitioner="Practitioner/dr-rivera", activity=MOOD_LOG,
        schedule=Schedule(frequency="once", start=local.date() + timedelta(days=2), timezone=zone),
        instructions="Each evening", reminder_channel=channel), events=services.events, now=now)
    assert result.task is not None
    return result.task


def test_refused_reminder_shows_on_dashboard_and_panel_and_retry_delivers_it(app_config, smtp):
    handler, port = smtp
    app = clinician_app(app_config, base_url="http://hw.test", smtp_port=port)
    services = app.extensions["hw_fhir"]
    _homework_for_ava(services)
    run_reminders(services, worker="w")
    problems = reminder_problems(services.store, patients=["pat-ava"])
    assert [p.status for p in problems] == ["failed"] and "550" in problems[0].reason
    session = open_launch(app, app.test_client())
    dashboard = session.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert 'id="undelivered-reminders"' in dashboard and "Relaying denied" in dashboard
    panel = open_launch(app, app.test_client(), patient=None,
                        scope="launch openid fhirUser user/Patient.rs user/Practitioner.rs")
    panel_page = panel.get("/clinician/panel").get_data(as_text=True)
    assert 'id="undelivered-reminders"' in panel_page and "Ava Nguyen" in panel_page

    handler.refusing = False  # the mail relay is fixed
    retried = session.post("/clinician/patients/pat-ava/reminders/retry",
                           {"job": problems[0].id, "back": "dashboard"})
    assert retried.status_code == 303
    run_reminders(services, worker="w")
    assert [to for to, _ in handler.messages] == [["ava@example.org"]]
    assert reminder_problems(services.store, patients=["pat-ava"]) == []
    after = session.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert 'id="undelivered-reminders"' not in after


def test_retry_of_someone_elses_reminder_is_refused(app_config, smtp):
    _, port = smtp
    app = clinician_app(app_config, base_url="http://hw.test", smtp_port=port)
    services = app.extensions["hw_fhir"]
    _homework_for_ava(services)
    run_reminders(services, worker="w")
    job = reminder_problems(services.store, patients=["pat-ava"])[0].id
    session = open_launch(app, app.test_client())
    response = session.post("/clinician/patients/pat-ava/reminders/retry", {"job": "reminder/x/y"})
    assert response.status_code == 404
    assert reminder_problems(services.store, patients=["pat-ava"])[0].id == job


def test_reminder_held_for_base_url_is_sent_once_a_worker_starts_with_it(app_config, smtp):
    handler, port = smtp
    handler.refusing = False
    app = clinician_app(app_config, base_url="", smtp_port=port)
    services = app.extensions["hw_fhir"]
    _homework_for_ava(services)
    for _ in range(3):  # however often it runs, a missing setting is never final
        run_reminders(services, worker="w", now=datetime.now(timezone.utc) + timedelta(hours=1))
    [problem] = reminder_problems(services.store, patients=["pat-ava"])
    assert problem.status == "held" and "HW_FHIR_BASE_URL" in problem.reason
    session = open_launch(app, app.test_client())
    page = session.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert "waiting for a fix" in page and "HW_FHIR_BASE_URL is not set" in page

    fixed = build_services(replace(services.settings, base_url="http://hw.test"))
    Worker(fixed, poll_seconds=0).run(cycles=1)  # starting releases held reminders at once
    fixed.close()
    assert [to for to, _ in handler.messages] == [["ava@example.org"]]
    body = email.message_from_bytes(handler.messages[0][1], policy=policy.default)
    assert "http://hw.test/p/" in body.get_body(("plain",)).get_content()


def test_reminders_retry_command(app_config, smtp, monkeypatch):
    handler, port = smtp
    app = clinician_app(app_config, base_url="http://hw.test", smtp_port=port)
    services = app.extensions["hw_fhir"]
    _homework_for_ava(services)
    run_reminders(services, worker="w")
    assert reminder_problems(services.store)[0].status == "failed"
    monkeypatch.setenv("HW_FHIR_DATABASE_URL", app_config["database_url"])
    monkeypatch.setenv("HW_FHIR_INSTANCE_PATH", app_config["instance_path"])
    from hw_fhir.cli import cli

    future = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    result = CliRunner().invoke(cli, ["reminders", "retry", "--since", future])
    assert result.exit_code == 0 and "Nothing to retry" in result.output
    bad = CliRunner().invoke(cli, ["reminders", "retry", "--since", "yesterday"])
    assert bad.exit_code == 1 and "not a date" in bad.output
    result = CliRunner().invoke(cli, ["reminders", "retry"])
    assert result.exit_code == 0 and result.output.startswith("1 reminders")
    handler.refusing = False
    run_reminders(services, worker="w")
    assert len(handler.messages) == 1


def test_banner_when_no_worker_ran_for_five_minutes(app_config):
    app = clinician_app(app_config)
    services = app.extensions["hw_fhir"]
    session = open_launch(app, app.test_client())
    page = session.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert 'id="worker-banner"' in page and "no worker has run yet" in page
    Worker(services, poll_seconds=0).run_once()
    app_state(app).worker_banner.clear()
    assert 'id="worker-banner"' not in session.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert 'id="worker-banner"' not in session.get("/clinician/patients/pat-ava/assign").get_data(as_text=True)
    beat(services.store, "stopped", now=datetime.now(timezone.utc) - timedelta(minutes=6))
    app_state(app).worker_banner.clear()
    library = session.get("/clinician/patients/pat-ava/assign").get_data(as_text=True)
    assert 'id="worker-banner"' in library and "Reminders are not being sent" in library


def _tailor_form(session: Any, channel: str) -> dict[str, Any]:
    import re

    page = session.get("/clinician/patients/pat-ben/assign/mood-log").get_data(as_text=True)
    start = re.search(r'name="start"[^>]*value="([^"]+)"', page)
    assert start, page
    return {"frequency": "once", "start": start.group(1), "time": "19:00",
            "instructions": "Each evening", "wording": "homework", "channel": channel}


def test_channel_choice_checked_against_contact_points_and_installed_channels(app_config):
    app = clinician_app(app_config)
    services = app.extensions["hw_fhir"]
    session = open_launch(app, app.test_client(), patient="pat-ben")
    before = len(services.store.search("Task", [("patient", "Patient/pat-ben")]).matches)
    response = session.post("/clinician/patients/pat-ben/assign/mood-log", _tailor_form(session, "sms"))
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Reminders by text messages (SMS) are not installed on this server: choose email" in text
    assert len(services.store.search("Task", [("patient", "Patient/pat-ben")]).matches) == before


def test_channel_choice_refused_when_the_patient_has_no_address(app_config):
    from hw_fhir.channels.demo_inbox import demo_channels
    from hw_fhir.hookspecs import hookimpl

    class SmsPlugin:
        @hookimpl
        def register_channels(self, settings: Any) -> list[Any]:
            return [c for c in demo_channels(settings) if c.name == "sms"]

    app = clinician_app(app_config)
    services = app.extensions["hw_fhir"]
    services.plugins.register(SmsPlugin())
    session = open_launch(app, app.test_client(), patient="pat-ben")
    response = session.post("/clinician/patients/pat-ben/assign/mood-log", _tailor_form(session, "sms"))
    assert response.status_code == 422
    assert ("Ben Schmidt has no mobile number on file for text messages (SMS): add a mobile number "
            "in the EHR, or choose email.") in response.get_data(as_text=True)
    ok = session.post("/clinician/patients/pat-ben/assign/mood-log", _tailor_form(session, "email"))
    assert ok.status_code == 303


@pytest.mark.parametrize("demo", [True, False])
def test_confirmation_shows_the_secure_link_in_the_demo_only(app_config, demo):
    app = clinician_app(app_config, sandbox=demo, base_url="http://localhost")
    session = open_launch(app, app.test_client(), patient="pat-ben")
    response = session.post("/clinician/patients/pat-ben/assign/mood-log", _tailor_form(session, "email"))
    assert response.status_code == 303
    page = session.client.get(response.headers["Location"]).get_data(as_text=True)
    import re

    link = re.search(r'id="demo-link">(http://localhost/p/[^<]+)<', page)
    if not demo:
        assert link is None and 'id="demo-secure-link"' not in page
        return
    assert link, page
    opened = app.test_client().get(link.group(1).removeprefix("http://localhost"))
    assert opened.status_code == 302 and "/my/tasks/" in opened.headers["Location"]


def test_reminders_failed_for_good_over_the_base_url_by_earlier_versions_are_retried(app_config, smtp):
    from sqlalchemy import update

    from hw_fhir.reminders.tables import reminder_job

    handler, port = smtp
    handler.refusing = False
    app = clinician_app(app_config, base_url="", smtp_port=port)
    services = app.extensions["hw_fhir"]
    _homework_for_ava(services)
    run_reminders(services, worker="w")
    with services.store.begin() as conn:  # what earlier versions wrote
        conn.execute(update(reminder_job).where(reminder_job.c.purpose == "assigned").values(
            status="failed", last_error="HW_FHIR_BASE_URL is not set: reminder links need it"))
    fixed = build_services(replace(services.settings, base_url="http://hw.test"))
    Worker(fixed, poll_seconds=0).run(cycles=1)
    fixed.close()
    assert [to for to, _ in handler.messages] == [["ava@example.org"]]


def test_heartbeat_is_written_once_per_period(app_config):
    from hw_fhir.heartbeat import last_beat

    app = clinician_app(app_config)
    services = app.extensions["hw_fhir"]
    worker = Worker(services, poll_seconds=0)
    assert last_beat(services.store) is None
    worker.run_once()
    first = last_beat(services.store)
    assert first is not None and first.worker == worker.name
    worker.run_once()
    assert last_beat(services.store) == first  # not another write within 30 s
