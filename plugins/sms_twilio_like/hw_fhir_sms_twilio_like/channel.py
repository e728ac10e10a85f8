"""The SMS channel: ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form-encoded, basic auth).

Answers: 201 with ``{"sid": "SM…", "status": "queued"}`` → the Communication stays
``in-progress`` until the status callback says ``delivered`` (→ ``completed``) or
``undelivered``/``failed`` (→ ``not-done``). Errors carry ``{"code", "message"}``:
429 and 5xx (and connection errors) are retried; 21610 (the number replied STOP) is a
permanent failure that also records the opt-out; other 4xx are permanent.

Guarantee: the Messages API has no idempotency key. A request that fails before the
vendor answers (timeout, dropped connection) may have been accepted, so it is
retried (at least once; a duplicate needs the worker to die or the network to fail in
that one round trip). The vendor's message sid is recorded on the Communication.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import requests

from hw_fhir.channels import Delivery, Message, medium, telecom
from hw_fhir.errors import PermanentDeliveryError, TransientDeliveryError

__all__ = ["SmsChannel", "SID_SYSTEM", "STATUS_MAP", "signature"]

#: ``Communication.identifier`` system of the vendor's message sid.
SID_SYSTEM = "http://hw-fhir.org/fhir/sid/sms-twilio-like-message"
#: Vendor message status → Communication status.
STATUS_MAP = {
    "accepted": "in-progress", "scheduled": "in-progress", "queued": "in-progress",
    "sending": "in-progress", "sent": "in-progress",
    "delivered": "completed", "read": "completed",
    "undelivered": "not-done", "failed": "not-done", "canceled": "not-done",
}
UNSUBSCRIBED = 21610
_RETRY = frozenset({429, 500, 502, 503, 504})


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Return the vendor's request signature: base64 HMAC-SHA1 of url + sorted key/values."""
    data = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class SmsChannel:
    """Send reminders as SMS through the vendor's REST API."""

    name = "sms"
    medium = medium("SMSWRIT", "SMS message")
    guarantee = ("At least once: the vendor API has no idempotency key; only a request whose answer "
                 "was lost is repeated.")

    def __init__(self, *, account_sid: str, auth_token: str, from_number: str = "",
                 messaging_service_sid: str = "", api_base: str = "https://api.twilio.com",
                 status_callback: str | None = None, timeout: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.api_base = api_base.rstrip("/")
        self.status_callback = status_callback
        self.timeout = timeout
        self.session = session or requests.Session()

    @classmethod
    def from_settings(cls, settings: Any) -> "SmsChannel | None":
        """Build the channel from the ``[sms]`` config table (None when not configured)."""
        conf = (getattr(settings, "extra", None) or {}).get("sms") or {}
        if not conf.get("account_sid") or not conf.get("auth_token"):
            return None
        base_url = (getattr(settings, "base_url", "") or "").rstrip("/")
        callback = conf.get("status_callback") or (f"{base_url}/plugins/sms/status" if base_url else None)
        return cls(account_sid=conf["account_sid"], auth_token=conf["auth_token"],
                   from_number=conf.get("from_number", ""),
                   messaging_service_sid=conf.get("messaging_service_sid", ""),
                   api_base=conf.get("api_base", "https://api.twilio.com"),
                   status_callback=callback, timeout=float(conf.get("timeout", 10)))

    @property
    def messages_url(self) -> str:
        """The Messages resource of the account."""
        return f"{self.api_base}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def address(self, recipient: Mapping[str, Any]) -> str | None:
        """Return the recipient's mobile number (``telecom`` system ``sms``, else ``phone``)."""
        return telecom(recipient, "sms") or telecom(recipient, "phone")

    def send(self, message: Message) -> Delivery:
        """Ask the vendor to send the SMS; return ``in-progress`` with its message sid."""
        if not message.to:
            raise PermanentDeliveryError("The recipient has no mobile number")
        form = {"To": message.to, "Body": message.text}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = self.from_number
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        try:
            response = self.session.post(self.messages_url, data=form, timeout=self.timeout,
                                         auth=(self.account_sid, self.auth_token))
        except requests.exceptions.ConnectTimeout:
            raise TransientDeliveryError("SMS API: connect timeout") from None
        except requests.Timeout:
            raise TransientDeliveryError("SMS API timed out", maybe_sent=True) from None
        except requests.ConnectionError as exc:
            refused = "refused" in str(exc).lower()
            raise TransientDeliveryError(f"SMS API unreachable ({type(exc).__name__})",
                                         maybe_sent=not refused) from None
        return self._answer(response)

    def _answer(self, response: requests.Response) -> Delivery:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code in (200, 201) and body.get("sid"):
            status = STATUS_MAP.get(str(body.get("status", "queued")), "in-progress")
            return Delivery(status=status, vendor_id=str(body["sid"]), vendor_system=SID_SYSTEM)
        code = body.get("code")
        text = body.get("message") or response.reason
        if response.status_code in _RETRY:
            after = response.headers.get("Retry-After")
            raise TransientDeliveryError(
                f"SMS API {response.status_code} (code {code}): {text}",
                retry_after=float(after) if after and after.isdigit() else None,
                maybe_sent=response.status_code >= 500)
        error = PermanentDeliveryError(f"SMS API {response.status_code} (code {code}): {text}")
        error.opt_out = code == UNSUBSCRIBED  # type: ignore[attr-defined]  # hw-fhir records it
        raise error
