"""The SMS vendor plugin end to end: reminders out through the vendor API, callbacks back in.

The plugin package (``plugins/sms_twilio_like``) is put on ``sys.path`` here so the
repository's test run covers it; ``tests/test_plugins_install.py`` covers installing a
plugin package for real.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "sms_twilio_like"
sys.path[:0] = [str(PLUGIN), str(PLUGIN / "tests")]

import hw_fhir_sms_twilio_like as sms_plugin  # noqa: E402
from fake_vendor import (  # noqa: E402
    ACCOUNT_SID,
    AUTH_TOKEN,
    INVALID_NUMBER,
    UNSUBSCRIBED_NUMBER,
    FakeVendor,
    signed_post,
)

from hw_fhir.plugins import blueprints, build_plugin_manager  # noqa: E402
from hw_fhir.reminders import preferences, run_reminders  # noqa: E402

from reminder_support import announce, communications, jobs, make_patient, make_task  # noqa: E402

BASE = "http://localhost"


@pytest.fixture
def vendor():
    server = FakeVendor()
    yield server
    server.stop()


@pytest.fixture
def app(tmp_path, vendor):
    """The real app with the SMS plugin registered and its blueprint mounted."""
    from smart_app import create_app

    extra = {"sms": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "+15550100",
                     "api_base": vendor.url},
             "reminders": {"quiet_start": "00:00", "quiet_end": "00:00"}}
    application = create_app({"TESTING": True, "instance_path": str(tmp_path / "i"), "secret_key": "s",
                              "database_url": f"sqlite:///{tmp_path / 'app.db'}", "base_url": BASE,
                              "practice_name": "Elm Clinic", "extra": extra})
    services = application.extensions["hw_fhir"]
    services.plugins = build_plugin_manager(services.settings, entry_points=False, plugins=[sms_plugin])
    services.events.plugins = services.plugins
    for bp in blueprints(services.plugins, services.settings):
        application.register_blueprint(bp)
    yield application
    services.close()


def _remind(services, pid: str, phone: str):
    make_patient(services.store, pid, phone=phone)
    task = make_task(services.store, pid, due=datetime.now(timezone.utc) + timedelta(days=2), channel="sms")
    announce(services, task)
    return task


def test_reminder_sent_as_sms_then_delivered_by_callback(app, vendor):
    services = app.extensions["hw_fhir"]
    task = _remind(services, "p1", "+15550123")
    assert run_reminders(services, worker="w").sent == 1
    sent = vendor.messages[0]
    assert sent["To"] == "+15550123" and "Elm Clinic" in sent["Body"]
    assert f"{BASE}/p/" in sent["Body"] and sent["StatusCallback"] == f"{BASE}/plugins/sms/status"
    comm = communications(services, ("about", f"Task/{task['id']}"))[0]
    assert comm["status"] == "in-progress"
    assert comm["medium"][0]["coding"][0]["code"] == "SMSWRIT"
    client = app.test_client()
    for status in ("sent", "delivered"):
        answer = signed_post(client, BASE, "/plugins/sms/status",
                             {"MessageSid": sent["sid"], "MessageStatus": status, "AccountSid": ACCOUNT_SID})
        assert answer.status_code == 204
    done = services.store.read("Communication", comm["id"]).resource
    assert done["status"] == "completed" and done["received"]


def test_undelivered_callback_and_forged_callbacks(app, vendor):
    services = app.extensions["hw_fhir"]
    _remind(services, "p1", "+15550123")
    run_reminders(services, worker="w")
    sid = vendor.messages[0]["sid"]
    client = app.test_client()
    form = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    forged = client.post("/plugins/sms/status", data=form, headers={"X-Twilio-Signature": "bm9wZQ=="})
    assert forged.status_code == 403
    assert signed_post(client, BASE, "/plugins/sms/status", form, token="wrong").status_code == 403
    assert communications(services)[0]["status"] == "in-progress"  # nothing changed
    assert signed_post(client, BASE, "/plugins/sms/status", form).status_code == 204
    comm = communications(services)[0]
    assert comm["status"] == "not-done" and comm["statusReason"]["text"] == "SMS undelivered (error 30003)"


def test_vendor_error_then_retry_and_a_bad_number(app, vendor):
    services = app.extensions["hw_fhir"]
    vendor.fail_next = [500]
    _remind(services, "p1", "+15550123")
    run_reminders(services, worker="w")
    assert vendor.messages == []
    retry = jobs(services, patient_id="p1", purpose="assigned")[0]
    assert retry.status == "pending" and "500" in retry.last_error
    _remind(services, "p2", INVALID_NUMBER)
    run_reminders(services, worker="w", now=datetime.now(timezone.utc) + timedelta(minutes=2))
    assert [m["To"] for m in vendor.messages] == ["+15550123"]
    bad = jobs(services, patient_id="p2", purpose="assigned")[0]
    assert bad.status == "failed" and "21211" in bad.last_error


def test_stop_reply_and_unsubscribed_numbers_opt_out_of_sms(app, vendor):
    services = app.extensions["hw_fhir"]
    make_patient(services.store, "p1", phone="+15550123")
    answer = signed_post(app.test_client(), BASE, "/plugins/sms/inbound",
                         {"From": "+15550123", "To": "+15550100", "Body": " stop "})
    assert answer.status_code == 200 and b"<Response>" in answer.data
    assert preferences(services.store.read("Patient", "p1").resource).opt_out == {"sms"}
    task = make_task(services.store, "p1", due=datetime.now(timezone.utc) + timedelta(days=2), channel="sms")
    announce(services, task)
    run_reminders(services, worker="w")
    assert vendor.messages == []  # opted out: no SMS (and no other channel can reach p1)
    _remind(services, "p3", UNSUBSCRIBED_NUMBER)  # the vendor knows the number replied STOP
    run_reminders(services, worker="w")
    assert "sms" in preferences(services.store.read("Patient", "p3").resource).opt_out
