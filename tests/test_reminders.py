"""Reminder rules on real stores: timing, quiet hours, time zones, DST, limits, opt-out, stopping."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from hw_fhir.errors import ConfigurationError, PermanentDeliveryError, TransientDeliveryError
from hw_fhir.reminders import (
    ATTEMPT_SYSTEM,
    REMINDER_PLAN_SYSTEM,
    ReminderPolicy,
    claim_jobs,
    failures,
    local_moment,
    preferences,
    reminder_times,
    run_reminders,
)
from hw_fhir.worker import Worker, single_sqlite_worker

from reminder_support import (
    RecordingChannel,
    announce,
    channel_plugin,
    communications,
    jobs,
    make_patient,
    make_risk_alert,
    make_services,
    make_task,
    preferences_extension,
)

UTC = timezone.utc
NY = ZoneInfo("America/New_York")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# -- preferences and pure timing rules ----------------------------------------------------


def test_preferences_are_read_from_the_patient_extensions():
    patient = {"resourceType": "Patient", "id": "p", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "Asia/Tokyo"},
        preferences_extension(channel="sms", time_of_day="19:30:00", quiet=("22:00:00", "07:00:00"),
                              opt_out=["email", "webhook"])]}
    prefs = preferences(patient)
    assert prefs.channel == "sms" and prefs.time_of_day == time(19, 30)
    assert (prefs.quiet_start, prefs.quiet_end) == (time(22), time(7))
    assert prefs.opt_out == {"email", "webhook"} and prefs.timezone == "Asia/Tokyo"
    defaults = preferences({"resourceType": "Patient", "id": "q"})
    assert (defaults.quiet_start, defaults.quiet_end, defaults.timezone) == (time(21), time(8), "UTC")


def test_quiet_hours_wrap_midnight_in_the_patients_time_zone():
    prefs = preferences({"resourceType": "Patient", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "America/New_York"},
        preferences_extension(quiet=("21:30:00", "07:15:00"))]})
    assert prefs.in_quiet_hours(at("2026-06-10T22:00:00-04:00"))
    assert prefs.in_quiet_hours(at("2026-06-11T07:00:00-04:00"))
    assert not prefs.in_quiet_hours(at("2026-06-11T07:15:00-04:00"))
    assert not prefs.in_quiet_hours(at("2026-06-11T21:29:00-04:00"))
    assert prefs.next_allowed(at("2026-06-10T23:00:00-04:00")) == at("2026-06-11T07:15:00-04:00")
    assert prefs.next_allowed(at("2026-06-11T03:00:00-04:00")) == at("2026-06-11T07:15:00-04:00")
    assert prefs.previous_allowed(at("2026-06-11T03:00:00-04:00")) == at("2026-06-10T21:29:00-04:00")


def test_dst_spring_forward_and_fall_back():
    # 2026-03-08 02:30 does not exist in New York: it moves forward to 03:30 EDT
    assert local_moment(date(2026, 3, 8), time(2, 30), NY) == at("2026-03-08T03:30:00-04:00")
    # 2026-11-01 01:30 happens twice: the first (EDT) is used
    assert local_moment(date(2026, 11, 1), time(1, 30), NY) == at("2026-11-01T01:30:00-04:00")
    # quiet hours ending at 07:00 on the spring-forward morning end at 07:00 EDT (11:00 UTC)
    prefs = preferences({"resourceType": "Patient", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "America/New_York"},
        preferences_extension(quiet=("22:00:00", "07:00:00"))]})
    assert prefs.next_allowed(at("2026-03-08T06:30:00Z")) == at("2026-03-08T11:00:00Z")
    # and on the fall-back morning at 07:00 EST (12:00 UTC)
    assert prefs.next_allowed(at("2026-11-01T06:30:00Z")) == at("2026-11-01T12:00:00Z")


def _task(due: str, opens: str) -> dict:
    return {"resourceType": "Task", "id": "t", "status": "requested",
            "restriction": {"period": {"start": opens, "end": due}}}


def test_reminder_times_follow_the_preferred_time_of_day_in_the_patients_zone():
    prefs = preferences({"resourceType": "Patient", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "Asia/Tokyo"},
        preferences_extension(time_of_day="19:00:00")]})
    task = _task(due="2026-05-20T14:00:00Z", opens="2026-05-18T00:00:00Z")  # 23:00 in Tokyo
    times = reminder_times(task, prefs, ReminderPolicy(), now=at("2026-05-18T01:00:00Z"))
    assert [(p, w) for p, w, _ in times] == [
        ("assigned", at("2026-05-18T01:00:00Z")),          # 10:00 Tokyo, at once
        ("before-due", at("2026-05-20T10:00:00Z")),        # 19:00 Tokyo on the due day
        ("overdue", at("2026-05-21T10:00:00Z")),           # 19:00 Tokyo the next day
    ]
    assert times[-1][2] == at("2026-05-21T14:00:00Z")      # due + 24 h grace


def test_reminder_times_avoid_quiet_hours_and_collapse_close_sends():
    prefs = preferences({"resourceType": "Patient", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "Europe/Berlin"}]})
    # due 07:30 Berlin: 3 h before is 04:30, in the default quiet hours (21-08): sent before 21:00
    task = _task(due="2026-07-02T05:30:00Z", opens="2026-06-30T10:00:00Z")
    times = dict((p, w) for p, w, _ in reminder_times(task, prefs, ReminderPolicy(),
                                                      now=at("2026-06-30T10:00:00Z")))
    assert times["before-due"] == at("2026-07-01T18:59:00Z")  # 20:59 Berlin
    assert times["overdue"] == at("2026-07-02T07:30:00Z")     # due + 2 h, 09:30 Berlin
    # assigned an hour before the before-due time: the later one is dropped
    short = _task(due="2026-07-02T12:00:00Z", opens="2026-07-02T08:30:00Z")
    purposes = [p for p, _, _ in reminder_times(short, prefs, ReminderPolicy(),
                                                now=at("2026-07-02T08:30:00Z"))]
    assert purposes == ["assigned", "overdue"]


# -- the queue on a real store --------------------------------------------------------------


@pytest.fixture
def rec():
    return RecordingChannel("rec")


@pytest.fixture
def services(tmp_path, rec):
    svc = make_services(tmp_path, channel_plugin(rec))
    yield svc
    svc.close()


NOW = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)  # 10:00 in New York


def _remind(services, pid="p1", *, tz="America/New_York", due=NOW + timedelta(days=1), prefs=None,
            channel="rec", **patient):
    make_patient(services.store, pid, tz=tz, prefs=prefs, **patient)
    task = make_task(services.store, pid, due=due, opens=NOW - timedelta(minutes=5), channel=channel)
    announce(services, task)
    return task


def test_a_task_gets_a_plan_and_one_communication_per_send(services, rec):
    task = _remind(services)
    run = run_reminders(services, worker="w", now=NOW)
    assert (run.planned, run.sent) == (1, 1)
    plan = services.store.search("CommunicationRequest",
                                 [("identifier", f"{REMINDER_PLAN_SYSTEM}|{task['id']}")]).resources[0]
    assert plan["status"] == "active" and plan["about"] == [{"reference": f"Task/{task['id']}"}]
    assert plan["subject"] == {"reference": "Patient/p1"}
    assert "https://hw.example.org/p/" in plan["payload"][0]["contentString"]
    purposes = [(j.purpose, j.status) for j in jobs(services, kind="reminder")]
    assert purposes == [("assigned", "sent"), ("before-due", "pending"), ("overdue", "pending")]
    run_reminders(services, worker="w", now=NOW + timedelta(hours=21, minutes=1))  # 3 h before due
    assert [m.purpose for m in rec.sent] == ["assigned", "before-due"]
    comms = communications(services, ("about", f"Task/{task['id']}"))
    assert len(comms) == 2 and {c["status"] for c in comms} == {"completed"}
    keys = {c["identifier"][0]["value"] for c in comms}
    assert keys == {m.idempotency_key for m in rec.sent}
    assert all(c["identifier"][0]["system"] == ATTEMPT_SYSTEM for c in comms)
    assert all(c["partOf"] == [{"reference": f"CommunicationRequest/{plan['id']}"}] for c in comms)


def test_message_text_has_no_clinical_content(services, rec):
    _remind(services)
    run_reminders(services, worker="w", now=NOW)
    text = rec.sent[0].text.lower()
    assert "your care team" in text and "activity" in text and "https://hw.example.org/p/" in text
    for word in ("mood", "phq", "depress", "sam", "sample", "questionnaire"):
        assert word not in text


def test_quiet_hours_move_a_send_to_their_end(services, rec):
    night = datetime(2026, 6, 16, 2, 0, tzinfo=UTC)  # 22:00 in New York
    _remind(services, prefs=preferences_extension(quiet=("21:00:00", "07:30:00")),
            due=night + timedelta(days=2))
    run = run_reminders(services, worker="w", now=night)
    assert run.sent == 0 and rec.sent == []
    first = jobs(services, kind="reminder")[0]
    assert first.purpose == "assigned" and first.due_at.startswith("2026-06-16T11:30:00")  # 07:30 EDT
    run_reminders(services, worker="w", now=datetime(2026, 6, 16, 11, 30, tzinfo=UTC))
    assert [m.purpose for m in rec.sent] == ["assigned"]


def test_preferences_changed_after_planning_apply_at_send_time(services, rec):
    _remind(services)
    run_reminders(services, worker="w", now=NOW)
    patient = services.store.read("Patient", "p1").resource
    patient["extension"].append(preferences_extension(quiet=("10:00:00", "20:00:00")))
    services.store.update(patient)
    run_reminders(services, worker="w", now=NOW + timedelta(hours=21, minutes=1))  # 07:01 NY
    assert [m.purpose for m in rec.sent] == ["assigned", "before-due"]
    run_reminders(services, worker="w", now=NOW + timedelta(hours=26))  # 12:00 NY: now quiet
    overdue = jobs(services, purpose="overdue")[0]
    assert overdue.status == "pending" and overdue.due_at.startswith("2026-06-17T00:00:00")  # 20:00 NY


def test_opt_out_uses_another_channel_or_none(tmp_path):
    sms, email = RecordingChannel("sms"), RecordingChannel("email")
    services = make_services(tmp_path, channel_plugin(sms, email))
    _remind(services, "p1", channel="sms", prefs=preferences_extension(opt_out=["sms"]))
    _remind(services, "p2", channel="sms", prefs=preferences_extension(opt_out=["sms", "email"]))
    run_reminders(services, worker="w", now=NOW)
    assert [m.recipient for m in email.sent] == ["Patient/p1"] and sms.sent == []
    assert jobs(services, patient_id="p2", purpose="assigned")[0].status == "failed"
    assert "opted out" in failures(services)[0]["error"]
    services.close()


def test_at_most_n_reminders_per_patient_and_local_day(tmp_path):
    rec = RecordingChannel("rec")
    services = make_services(tmp_path, channel_plugin(rec), reminders={"max_per_day": 2})
    for _ in range(3):
        task = make_task(services.store, "p1", due=NOW + timedelta(days=3), opens=NOW, channel="rec")
        announce(services, task)
    make_patient(services.store, "p1", tz="America/New_York",
                 prefs=preferences_extension(time_of_day="09:00:00"))
    run_reminders(services, worker="w", now=NOW)
    assert len(rec.sent) == 2
    deferred = [j for j in jobs(services, purpose="assigned") if j.status == "pending"]
    assert len(deferred) == 1 and deferred[0].due_at.startswith("2026-06-16T13:00:00")  # 09:00 NY
    run_reminders(services, worker="w", now=datetime(2026, 6, 16, 13, 0, tzinfo=UTC))
    assert len(rec.sent) == 3
    services.close()


def test_a_task_completed_outside_the_events_is_not_reminded(services, rec):
    task = _remind(services)
    run_reminders(services, worker="w", now=NOW)
    services.store.update(dict(services.store.read("Task", task["id"]).resource, status="completed"))
    run_reminders(services, worker="w", now=NOW + timedelta(days=3))
    assert [m.purpose for m in rec.sent] == ["assigned"]
    assert {j.status for j in jobs(services, kind="reminder") if j.purpose != "assigned"} == {"cancelled"}
    plan = services.store.search("CommunicationRequest", [("about", f"Task/{task['id']}")]).resources
    assert plan[0]["status"] == "completed"


def test_reminders_off_for_a_task(services, rec):
    _remind(services, channel="none")
    run_reminders(services, worker="w", now=NOW)
    assert rec.sent == [] and jobs(services)[0].status == "skipped"


def test_tasks_written_without_events_are_discovered(tmp_path):
    rec = RecordingChannel("rec")
    services = make_services(tmp_path, channel_plugin(rec), reminders={"discovery_lag_seconds": 0})
    make_patient(services.store, "p1")
    make_task(services.store, "p1", due=datetime.now(UTC) + timedelta(days=1), channel="rec")
    run_reminders(services, worker="w")
    assert [m.purpose for m in rec.sent] == ["assigned"]
    run_reminders(services, worker="w")  # the cursor moved on: nothing twice
    assert len(rec.sent) == 1
    services.close()


# -- failures and retries -------------------------------------------------------------------


def test_transient_failures_retry_with_backoff_and_a_new_key(tmp_path):
    rec = RecordingChannel("rec", failures=[TransientDeliveryError("503 from vendor")])
    services = make_services(tmp_path, channel_plugin(rec))
    _remind(services)
    run_reminders(services, worker="w", now=NOW)
    job = jobs(services, purpose="assigned")[0]
    assert job.status == "pending" and job.tries == 1 and job.attempt == 2
    delay = datetime.fromisoformat(job.due_at.replace("Z", "+00:00")) - NOW
    assert timedelta(seconds=20) <= delay <= timedelta(seconds=40)  # 30 s base ± jitter
    run_reminders(services, worker="w", now=NOW + timedelta(minutes=1))
    assert [m.idempotency_key for m in rec.sent] == [f"{job.id}#2"]
    statuses = sorted(c["status"] for c in communications(services))
    assert statuses == ["completed", "not-done"]  # one Communication per attempt
    services.close()


def test_an_attempt_that_may_have_been_sent_keeps_its_key(tmp_path):
    rec = RecordingChannel("rec", failures=[TransientDeliveryError("timeout", maybe_sent=True)])
    services = make_services(tmp_path, channel_plugin(rec))
    _remind(services)
    run_reminders(services, worker="w", now=NOW)
    run_reminders(services, worker="w", now=NOW + timedelta(minutes=1))
    job = jobs(services, purpose="assigned")[0]
    assert rec.sent[0].idempotency_key == f"{job.id}#1"
    assert len(communications(services)) == 1
    services.close()


def test_permanent_failure_tries_another_channel_then_gives_up(tmp_path):
    sms = RecordingChannel("sms", failures=[PermanentDeliveryError("21211 invalid number")])
    email = RecordingChannel("email", failures=[PermanentDeliveryError("550 no such mailbox")])
    services = make_services(tmp_path, channel_plugin(sms, email))
    _remind(services, channel="sms")
    run_reminders(services, worker="w", now=NOW)
    job = jobs(services, purpose="assigned")[0]
    assert job.status == "failed" and job.failed_channels == "sms,email"
    assert [c["statusReason"]["text"] for c in communications(services)] == [
        "21211 invalid number", "550 no such mailbox"] or sorted(
        c["statusReason"]["text"] for c in communications(services)) == [
        "21211 invalid number", "550 no such mailbox"]
    surfaced = failures(services)
    assert surfaced[0]["task"] == job.task_id and "550" in surfaced[0]["error"]
    services.close()


def test_transient_failures_give_up_after_max_tries(tmp_path):
    rec = RecordingChannel("rec", failures=[TransientDeliveryError("down")] * 10)
    services = make_services(tmp_path, channel_plugin(rec), reminders={"max_tries": 3})
    _remind(services, due=NOW + timedelta(days=3))
    moment = NOW
    for _ in range(5):
        run_reminders(services, worker="w", now=moment)
        moment += timedelta(hours=2)
    job = jobs(services, purpose="assigned")[0]
    assert job.status == "failed" and job.tries == 3 and rec.calls >= 3
    services.close()


def test_alerts_keep_retrying_past_max_tries_until_delivered(tmp_path):
    email = RecordingChannel("email", telecom_system="email",
                             failures=[TransientDeliveryError("relay down")] * 4)
    services = make_services(tmp_path, channel_plugin(email), reminders={"max_tries": 2})
    _, alert = make_risk_alert(services)
    moment = NOW
    for _ in range(6):
        run_reminders(services, worker="w", now=moment)
        moment += timedelta(minutes=20)
    assert [m.to for m in email.sent] == ["dr-alert@clinic.example"]
    assert services.store.read("CommunicationRequest", alert["id"]).resource["status"] == "completed"
    attempts = communications(services, ("part-of", f"CommunicationRequest/{alert['id']}"))
    assert sorted(c["status"] for c in attempts) == ["completed"] + ["not-done"] * 4
    services.close()


def test_a_worker_that_died_mid_send_loses_nothing_and_the_retry_reuses_the_key(services, rec):
    _remind(services)
    run_reminders(services, worker="w", now=NOW, limit=1)  # the plan only
    claimed = claim_jobs(services.store, worker="dead", limit=10, lease_seconds=120, now=NOW)
    assert [j.purpose for j in claimed] == ["assigned"]  # ...and then "dead" is killed
    assert run_reminders(services, worker="alive", now=NOW + timedelta(seconds=60)).sent == 0
    run_reminders(services, worker="alive", now=NOW + timedelta(seconds=121))
    assert [m.idempotency_key for m in rec.sent] == [f"{claimed[0].id}#1"]


def test_cli_reminders_run_once_and_the_sqlite_single_worker_rule(tmp_path, monkeypatch):
    rec = RecordingChannel("rec")
    services = make_services(tmp_path, channel_plugin(rec))
    with single_sqlite_worker(services):
        with pytest.raises(ConfigurationError, match="one worker"):
            Worker(services).run(cycles=1)
    monkeypatch.setenv("HW_FHIR_DATABASE_URL", services.settings.database_url)
    monkeypatch.setenv("HW_FHIR_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("HW_FHIR_BASE_URL", "https://hw.example.org")
    monkeypatch.setenv("HW_FHIR_PLUGINS", "none")
    make_patient(services.store, "p1", email="p1@example.org",
                 prefs=preferences_extension(quiet=("00:00:00", "00:00:00")))  # no quiet hours
    announce(services, make_task(services.store, "p1", due=datetime.now(UTC) + timedelta(days=1)))
    from hw_fhir.cli import cli

    result = CliRunner().invoke(cli, ["reminders", "run", "--once"])
    assert result.exit_code == 0, result.output
    assert "1 planned" in result.output
    # the built-in email channel found no SMTP server on 127.0.0.1:25: retried later, not lost
    assert "1 to retry" in result.output or "1 sent" in result.output
    services.close()


def test_an_alert_without_recipient_goes_to_the_patients_practitioner(tmp_path):
    email = RecordingChannel("email", telecom_system="email")
    services = make_services(tmp_path, channel_plugin(email))
    _, alert = make_risk_alert(services, practitioner="dr-gp")
    patient = services.store.read("Patient", "p-risk").resource
    services.store.update(dict(patient, generalPractitioner=[{"reference": "Practitioner/dr-gp"}]))
    services.store.update({k: v for k, v in alert.items() if k != "recipient"})
    run_reminders(services, worker="w")
    assert [m.to for m in email.sent] == ["dr-gp@clinic.example"]
    services.store.update(dict(patient, generalPractitioner=[]))
    _, orphan = make_risk_alert(services, practitioner="dr-other")
    services.store.update({k: v for k, v in orphan.items() if k != "recipient"})
    run_reminders(services, worker="w")
    assert len(email.sent) == 1  # never to the patient; never "failed for good" either:
    assert not failures(services)  # retried, and on screen as undelivered with its reason
    from hw_fhir.outcomes import undelivered_alerts

    [undelivered] = undelivered_alerts(services.store)
    assert undelivered.id == orphan["id"] and "no clinician" in undelivered.reason
    services.close()
