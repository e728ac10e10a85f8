"""The webhook and EHR-inbox channels against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from hw_fhir.channels import FhirInboxChannel, Message, WebhookChannel, sign, verify_signature
from hw_fhir.errors import PermanentDeliveryError, TransientDeliveryError, Unauthorized
from hw_fhir.reminders import run_reminders

from reminder_support import (
    WebhookReceiver,
    announce,
    communications,
    make_patient,
    make_services,
    make_task,
)

SECRET = "whsec-test"


def _message(key: str = "reminder/t1/assigned#1", kind: str = "reminder") -> Message:
    return Message(kind=kind, purpose="assigned" if kind == "reminder" else "risk-alert",
                   channel="webhook", to=None, recipient="Patient/p1", subject="Reminder",
                   text="You have an activity: https://hw.example.org/p/x.y", idempotency_key=key,
                   link="https://hw.example.org/p/x.y", about=("Task/t1",))


def test_signature_and_replay_window():
    body = b'{"id": "k"}'
    stamp = int(time.time())
    signature = sign(SECRET, stamp, body)
    verify_signature(SECRET, body, str(stamp), signature)
    with pytest.raises(Unauthorized, match="does not match"):
        verify_signature(SECRET, body + b" ", str(stamp), signature)
    with pytest.raises(Unauthorized, match="does not match"):
        verify_signature("other", body, str(stamp), signature)
    with pytest.raises(Unauthorized, match="replay window"):
        verify_signature(SECRET, body, str(stamp - 301), sign(SECRET, stamp - 301, body))
    with pytest.raises(Unauthorized, match="not signed"):
        verify_signature(SECRET, body, None, signature)


@pytest.fixture
def receiver():
    server = WebhookReceiver(SECRET)
    yield server
    server.stop()


def test_webhook_delivers_signed_json_and_the_receiver_dedupes(receiver):
    channel = WebhookChannel(receiver.url, SECRET)
    channel.send(_message())
    channel.send(_message())  # a retry of the same attempt
    assert receiver.requests == ["reminder/t1/assigned#1"] * 2
    assert list(receiver.deliveries) == ["reminder/t1/assigned#1"]
    delivered = receiver.deliveries["reminder/t1/assigned#1"]
    assert delivered["link"] == "https://hw.example.org/p/x.y" and delivered["to"] is None
    wrong = WebhookChannel(receiver.url, "not-the-secret")
    with pytest.raises(PermanentDeliveryError, match="401"):
        wrong.send(_message("k#9"))
    assert receiver.refused == 1


def test_webhook_error_mapping(receiver):
    channel = WebhookChannel(receiver.url, SECRET)
    receiver.statuses = [503, 429, 400]
    with pytest.raises(TransientDeliveryError) as first:
        channel.send(_message("a#1"))
    assert first.value.maybe_sent is True
    with pytest.raises(TransientDeliveryError) as second:
        channel.send(_message("b#1"))
    assert second.value.maybe_sent is False
    with pytest.raises(PermanentDeliveryError):
        channel.send(_message("c#1"))
    with pytest.raises(TransientDeliveryError) as refused:
        WebhookChannel("http://127.0.0.1:9/x", SECRET, timeout=2).send(_message("d#1"))
    assert refused.value.maybe_sent is False  # connection refused: nothing left


def test_webhook_goes_through_the_proxy_the_environment_names(receiver, monkeypatch):
    proxy = receiver.url.split("/hooks/")[0]  # the receiver plays the HTTP proxy
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("http_proxy", proxy)
    channel = WebhookChannel("http://webhooks.invalid/hooks/reminders", SECRET)
    channel.send(_message("p#1"))
    channel.send(_message("p#2"))  # the environment is read once, and used for every send
    assert receiver.requests == ["p#1", "p#2"]


def test_webhook_channel_configured_from_settings_sends_reminders(tmp_path, receiver):
    receiver.statuses = [500]
    services = make_services(tmp_path, extra={"webhook": {"url": receiver.url, "secret": SECRET}})
    make_patient(services.store, "p1")
    task = make_task(services.store, "p1", due=datetime.now(timezone.utc) + timedelta(days=1),
                     channel="webhook")
    announce(services, task)
    run_reminders(services, worker="w")
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    run_reminders(services, worker="w", now=later)
    # the 500 may have been processed: the retry carried the same key, delivered once
    assert len(receiver.requests) == 2 and len(set(receiver.requests)) == 1
    assert len(receiver.deliveries) == 1
    assert [c["status"] for c in communications(services)] == ["completed"]
    services.close()


def test_ehr_inbox_creates_one_communication_per_attempt_at_the_ehr(live_server):
    ehr = live_server.app.extensions["hw_fhir"].store
    channel = FhirInboxChannel(f"{live_server.url}/fhir")
    practitioner = {"resourceType": "Practitioner", "id": "dr-ehr"}
    assert channel.address(practitioner) == "Practitioner/dr-ehr"
    assert channel.address({"resourceType": "Patient", "id": "p1"}) is None
    alert = Message(kind="alert", purpose="risk-alert", channel="ehr-inbox", to="Practitioner/dr-ehr",
                    recipient="Practitioner/dr-ehr", subject="Urgent: a safety alert needs your review",
                    text="Open hw-fhir from your EHR to review it now.", priority="stat",
                    idempotency_key="alert/cr-1#1", about=("Flag/f1", "QuestionnaireResponse/qr1"))
    first = channel.send(alert)
    second = channel.send(alert)  # an interrupted attempt retried: no second Communication
    assert first.vendor_id == second.vendor_id
    stored = ehr.search("Communication", [("recipient", "Practitioner/dr-ehr")]).resources
    assert len(stored) == 1 and stored[0]["priority"] == "stat"
    assert stored[0]["about"] == [{"reference": "Flag/f1"}, {"reference": "QuestionnaireResponse/qr1"}]
    bad = FhirInboxChannel(f"{live_server.url}/fhir")
    with pytest.raises(PermanentDeliveryError):
        bad.send(Message(kind="alert", purpose="risk-alert", channel="ehr-inbox", to="not a reference",
                         recipient="x", subject="s", text="t", idempotency_key="alert/cr-2#1",
                         priority="not-a-priority"))


def test_ehr_inbox_down_is_transient():
    channel = FhirInboxChannel("http://127.0.0.1:9/fhir")
    with pytest.raises(TransientDeliveryError):
        channel.send(_message(kind="alert"))
