"""The SMS channel against a local server playing the vendor's API."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_vendor import (  # noqa: E402
    ACCOUNT_SID,
    AUTH_TOKEN,
    INVALID_NUMBER,
    UNSUBSCRIBED_NUMBER,
    FakeVendor,
)
from hw_fhir.channels import Message  # noqa: E402
from hw_fhir.errors import PermanentDeliveryError, TransientDeliveryError  # noqa: E402
from hw_fhir_sms_twilio_like import SID_SYSTEM, SmsChannel, signature  # noqa: E402


@pytest.fixture
def vendor():
    server = FakeVendor()
    yield server
    server.stop()


def _channel(vendor: FakeVendor) -> SmsChannel:
    return SmsChannel(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number="+15550100",
                      api_base=vendor.url, status_callback="https://hw.example.org/plugins/sms/status")


def _message(to: str) -> Message:
    return Message(kind="reminder", purpose="before-due", channel="sms", to=to, recipient="Patient/p1",
                   subject="Reminder", text="Reminder from Elm Clinic: https://hw.example.org/p/a.b",
                   idempotency_key="reminder/t/before-due#1")


def test_a_message_is_queued_at_the_vendor(vendor):
    delivery = _channel(vendor).send(_message("+15550123"))
    assert delivery.status == "in-progress" and delivery.vendor_system == SID_SYSTEM
    sent = vendor.messages[0]
    assert sent["sid"] == delivery.vendor_id and sent["To"] == "+15550123"
    assert sent["From"] == "+15550100" and sent["StatusCallback"].endswith("/plugins/sms/status")


def test_vendor_errors_map_to_retry_or_permanent(vendor):
    channel = _channel(vendor)
    with pytest.raises(PermanentDeliveryError, match="21211"):
        channel.send(_message(INVALID_NUMBER))
    with pytest.raises(PermanentDeliveryError) as unsubscribed:
        channel.send(_message(UNSUBSCRIBED_NUMBER))
    assert unsubscribed.value.opt_out is True
    vendor.fail_next = [503]
    with pytest.raises(TransientDeliveryError):
        channel.send(_message("+15550123"))
    wrong = SmsChannel(account_sid=ACCOUNT_SID, auth_token="bad", from_number="+1", api_base=vendor.url)
    with pytest.raises(PermanentDeliveryError, match="401"):
        wrong.send(_message("+15550123"))
    assert vendor.messages == []


def test_signature_matches_the_vendors_scheme():
    # the documented example of the scheme: HMAC-SHA1 over url + sorted key/value pairs
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
