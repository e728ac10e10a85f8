"""The Web Push channel against a local push service over HTTP that checks VAPID and decrypts.

The push service (tests/push_support.py) is the only stand-in: it is outside this
machine in real life. Subscriptions are real P-256 key pairs made by the test, as a
browser makes them; the reminders run on real SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta, timezone

import pytest

from hw_fhir.channels import Message, WebPushChannel
from hw_fhir.egress import egress_policy
from hw_fhir.errors import InvalidInput, PermanentDeliveryError
from hw_fhir.plugins import channels
from hw_fhir.push import (
    VAPID_KEY_FILE,
    application_server_key,
    parse_subscription,
    save_subscription,
    subscriptions_for,
)
from hw_fhir.reminders import run_reminders

from push_support import PushService
from reminder_support import (
    BASE_URL,
    RecordingChannel,
    announce,
    channel_plugin,
    communications,
    jobs,
    make_patient,
    make_services,
    make_task,
    preferences_extension,
)

NOW = datetime(2026, 6, 15, 14, 0, tzinfo=timezone.utc)
#: the local push service is on loopback: allow-listed, as an operator would a private one
LOCAL = "127.0.0.1"


@pytest.fixture
def push():
    service = PushService()
    yield service
    service.stop()


@pytest.fixture
def email():
    return RecordingChannel("email", telecom_system="email")


def _patient_with_task(services, pid="p1", *, prefs=None):
    make_patient(services.store, pid, email=f"{pid}@example.org",
                 prefs=prefs or preferences_extension(channel="webpush"))
    task = make_task(services.store, pid, due=NOW + timedelta(days=1), opens=NOW - timedelta(minutes=5))
    announce(services, task)
    return task


def _subscribe(services, push, pid="p1"):
    browser = push.subscribe()
    save_subscription(services.store, pid, parse_subscription(browser.as_json()))
    return browser


def test_a_reminder_arrives_encrypted_signed_and_without_clinical_content(tmp_path, db_url, push, email):
    services = make_services(tmp_path, channel_plugin(email), db_url=db_url,
                             practice_name="Riverside Therapy", egress_allow=LOCAL)
    assert "webpush" in channels(services.plugins, services.settings, services.store)
    task = _patient_with_task(services)
    phone, laptop = _subscribe(services, push), _subscribe(services, push)
    run = run_reminders(services, worker="w", now=NOW)
    assert run.sent == 1 and email.sent == []
    assert not push.rejected, push.rejected
    assert sorted(r.token for r in push.received) == sorted([phone.token, laptop.token])
    payload = push.received[0].payload
    assert payload["title"] == "Riverside Therapy"
    assert payload["body"] == "You have an activity waiting"
    assert payload["url"] == f"{BASE_URL}/my/"
    text = json.dumps(payload).lower()
    for word in ("mood", "phq", "sam", "sample", "questionnaire", "/p/", task["id"].lower()):
        assert word not in text
    # the VAPID key is generated into the instance folder, private, and is the key the browser subscribes to
    key_file = tmp_path / "instance" / VAPID_KEY_FILE
    assert key_file.exists() and stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert push.received[0].claims["k"] == application_server_key(services.settings)
    assert push.received[0].claims["sub"].startswith("mailto:")
    assert len(push.received[0].headers["topic"]) <= 32
    comm = communications(services, ("about", f"Task/{task['id']}"))
    assert [c["status"] for c in comm] == ["completed"]
    assert comm[0]["payload"][0]["contentString"] == f"You have an activity waiting: {BASE_URL}/my/"
    services.close()


def test_an_expired_subscription_is_removed_and_the_next_channel_used(tmp_path, db_url, push, email):
    services = make_services(tmp_path, channel_plugin(email), db_url=db_url, egress_allow=LOCAL)
    task = _patient_with_task(services)
    gone = _subscribe(services, push)
    push.answers[gone.token] = 410
    run = run_reminders(services, worker="w", now=NOW)
    assert subscriptions_for(services.store, "p1") == []
    assert push.received == [] and push.requests == 1
    assert [m.purpose for m in email.sent] == ["assigned"] and run.sent == 1
    comms = communications(services, ("about", f"Task/{task['id']}"))
    by_status = {c["status"]: c for c in comms}
    assert set(by_status) == {"not-done", "completed"}
    assert "expired" in by_status["not-done"]["statusReason"]["text"]
    # the next reminder goes straight to email: no subscription left, push is not even tried
    run_reminders(services, worker="w", now=NOW + timedelta(hours=21, minutes=1))
    assert push.requests == 1 and [m.purpose for m in email.sent] == ["assigned", "before-due"]
    services.close()


def test_one_expired_device_of_two_still_delivers(tmp_path, push, email):
    services = make_services(tmp_path, channel_plugin(email), egress_allow=LOCAL)
    _patient_with_task(services)
    gone, kept = _subscribe(services, push), _subscribe(services, push)
    push.answers[gone.token] = 404
    run_reminders(services, worker="w", now=NOW)
    assert [r.token for r in push.received] == [kept.token] and email.sent == []
    assert [s.endpoint for s in subscriptions_for(services.store, "p1")] == [kept.endpoint]
    services.close()


def test_quiet_hours_and_the_daily_cap_apply_to_push(tmp_path, push, email):
    services = make_services(tmp_path, channel_plugin(email), reminders={"max_per_day": 1},
                             egress_allow=LOCAL)
    night = datetime(2026, 6, 16, 2, 0, tzinfo=timezone.utc)
    make_patient(services.store, "p1", email="p1@example.org",
                 prefs=preferences_extension(channel="webpush", quiet=("01:00:00", "07:30:00")))
    _subscribe(services, push)
    for _ in range(2):
        announce(services, make_task(services.store, "p1", due=night + timedelta(days=2),
                                     opens=night - timedelta(minutes=5)))
    run_reminders(services, worker="w", now=night)
    assert push.received == [] and email.sent == []  # quiet hours: nothing at all
    run_reminders(services, worker="w", now=datetime(2026, 6, 16, 7, 30, tzinfo=timezone.utc))
    assert len(push.received) == 1 and email.sent == []  # one a day
    assert any(j.status == "pending" and j.purpose == "assigned" for j in jobs(services, kind="reminder"))
    services.close()


def test_opting_out_of_push_uses_the_next_channel(tmp_path, push, email):
    services = make_services(tmp_path, channel_plugin(email), egress_allow=LOCAL)
    _patient_with_task(services, prefs=preferences_extension(channel="webpush", opt_out=["webpush"]))
    _subscribe(services, push)
    run_reminders(services, worker="w", now=NOW)
    assert push.requests == 0 and [m.purpose for m in email.sent] == ["assigned"]
    services.close()


def test_server_errors_are_retried_and_a_refusal_is_permanent(tmp_path, push):
    services = make_services(tmp_path, egress_allow=LOCAL)
    make_patient(services.store, "p1")
    browser = _subscribe(services, push)
    channel = WebPushChannel.from_settings(services.settings, services.store)
    message = Message(kind="reminder", purpose="assigned", channel="webpush", to="Patient/p1",
                      recipient="Patient/p1", subject="Reminder", text="x", idempotency_key="k#1")
    push.answers[browser.token] = 503
    from hw_fhir.errors import TransientDeliveryError

    with pytest.raises(TransientDeliveryError):
        channel.send(message)
    push.answers[browser.token] = 403
    with pytest.raises(PermanentDeliveryError, match="refused"):
        channel.send(message)
    assert len(subscriptions_for(services.store, "p1")) == 1  # a refusal is not an expiry
    del push.answers[browser.token]
    assert channel.send(message).status == "completed"
    assert channel.address({"resourceType": "Patient", "id": "p1"}) == "Patient/p1"
    assert channel.address({"resourceType": "Patient", "id": "p2"}) is None
    assert channel.address({"resourceType": "Practitioner", "id": "p1"}) is None
    services.close()


def test_push_is_off_when_configured_off(tmp_path):
    services = make_services(tmp_path, extra={"web_push": {"enabled": False}})
    assert "webpush" not in channels(services.plugins, services.settings, services.store)
    assert "webpush" not in channels(services.plugins, services.settings)  # no store: no push
    services.close()


def test_push_is_off_in_the_demo_and_checks_its_key(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "real").mkdir()
    demo = make_services(tmp_path / "demo", demo=True)  # nothing the demo sends leaves the machine
    assert "webpush" not in channels(demo.plugins, demo.settings, demo.store)
    demo.close()
    services = make_services(tmp_path / "real")
    channel = channels(services.plugins, services.settings, services.store)["webpush"]
    assert channel.check() is None and (tmp_path / "real" / "instance" / VAPID_KEY_FILE).exists()
    (tmp_path / "real" / "instance" / VAPID_KEY_FILE).write_text("not a key")
    broken = WebPushChannel.from_settings(services.settings, services.store)
    assert "VAPID key" in broken.check()
    services.close()


@pytest.mark.parametrize("bad, field", [
    ({"endpoint": "ftp://push.example.org/x", "keys": {"p256dh": "", "auth": ""}}, "endpoint"),
    ({"endpoint": "http://push.example.org/x"}, "endpoint"),
    ({"endpoint": "https://push.example.org/x", "keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}},
     "keys.p256dh"),
    ({"endpoint": "https://push.example.org/x", "keys": {"p256dh": "BAAA", "auth": "short"}}, "keys.auth"),
    ("not an object", None),
])
def test_a_malformed_subscription_is_refused_readably(bad, field):
    with pytest.raises(InvalidInput) as caught:
        parse_subscription(bad)
    if field:
        assert field in {i.expression for i in caught.value.issues}
    assert "Traceback" not in caught.value.message


def test_hook_register_channels_hands_plugins_the_store(tmp_path):
    from hw_fhir.hookspecs import hookimpl

    seen = []

    class NeedsStore:
        @hookimpl
        def register_channels(self, settings, store):
            seen.append(store)
            return []

    services = make_services(tmp_path, NeedsStore())
    channels(services.plugins, services.settings, services.store)
    assert seen == [services.store]
    services.close()


def test_the_egress_policy_guards_push_endpoints(tmp_path, push, email):
    """A push endpoint is an address a user chose: loopback/private ones need the allow-list."""
    services = make_services(tmp_path, channel_plugin(email))  # nothing allow-listed
    browser = push.subscribe()
    with pytest.raises(InvalidInput) as refused:
        parse_subscription(browser.as_json(), egress=egress_policy(services.settings))
    assert "egress" in refused.value.issues[0].message.lower() or "allow" in refused.value.issues[0].message
    # one stored before the policy changed is refused at send time, removed, and the next channel used
    _patient_with_task(services)
    save_subscription(services.store, "p1", parse_subscription(browser.as_json()))
    run_reminders(services, worker="w", now=NOW)
    assert push.requests == 0 and subscriptions_for(services.store, "p1") == []
    assert [m.purpose for m in email.sent] == ["assigned"]
    services.close()
