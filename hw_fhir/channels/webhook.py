"""The webhook channel: a signed HTTPS POST to a service of yours (portal inbox, push service...).

Request::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <attempt key>
    X-HW-FHIR-Timestamp: <Unix seconds>
    X-HW-FHIR-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

    {"id": "<attempt key>", "kind": "reminder", "purpose": "before-due",
     "recipient": "Patient/123", "to": "<address or null>", "subject": "...",
     "text": "...", "link": "https://…/p/…", "priority": "routine"}

The receiver checks the signature with :func:`verify_signature` (constant-time, and
refusing timestamps outside the replay window, default 300 s) and must treat a
repeated ``Idempotency-Key`` as the same message. Answers: 2xx delivered; 408, 425,
429 and 5xx (and connection errors) are retried with backoff (``Retry-After``
honoured); other 4xx are permanent failures.

Guarantee: exactly once at a receiver that de-duplicates by ``Idempotency-Key`` (a
retry of an interrupted attempt sends the same key); at least once otherwise.
Config-file table ``[webhook]``: ``url``, ``secret``, optional ``telecom`` (send the
recipient's contact point of this system, e.g. ``phone``, as ``to``), ``timeout``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import orjson
import requests

from ..egress import EgressPolicy, egress_policy
from ..errors import (
    EgressRefused,
    InvalidInput,
    PermanentDeliveryError,
    TransientDeliveryError,
    Unauthorized,
)
from .base import Delivery, Message, medium, telecom

__all__ = ["WebhookChannel", "sign", "verify_signature", "SIGNATURE_HEADER", "TIMESTAMP_HEADER",
           "REPLAY_WINDOW_SECONDS"]

SIGNATURE_HEADER = "X-HW-FHIR-Signature"
TIMESTAMP_HEADER = "X-HW-FHIR-Timestamp"
#: How far a webhook's timestamp may be from the receiver's clock.
REPLAY_WINDOW_SECONDS = 300
_RETRY = frozenset({408, 425, 429, 500, 502, 503, 504})


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """Return the signature header value for a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify_signature(secret: str, body: bytes, timestamp: str | None, signature: str | None, *,
                     tolerance: int = REPLAY_WINDOW_SECONDS, now: float | None = None) -> None:
    """Raise Unauthorized unless the signature matches and the timestamp is within the window."""
    if not timestamp or not signature:
        raise Unauthorized("The webhook is not signed")
    try:
        sent = int(timestamp)
    except ValueError:
        raise Unauthorized("The webhook timestamp is not a number") from None
    moment = time.time() if now is None else now
    if abs(moment - sent) > tolerance:
        raise Unauthorized("The webhook timestamp is outside the replay window")
    expected = sign(secret, sent, body)
    if not any(hmac.compare_digest(expected, part.strip()) for part in signature.split(",")):
        raise Unauthorized("The webhook signature does not match")


class WebhookChannel:
    """POST each message, signed, to one URL."""

    medium = medium("ONLINEWRIT", "online written")
    guarantee = ("Exactly once at a receiver that de-duplicates by Idempotency-Key (retries of an "
                 "interrupted attempt reuse the key); at least once otherwise.")
    #: receivers de-duplicate by Idempotency-Key (the webhook contract): sends are recorded
    #: per batch, a crashed batch's repeats carry their keys
    deduplicates = True

    def __init__(self, url: str, secret: str, *, name: str = "webhook", telecom_system: str | None = None,
                 timeout: float = 10.0, session: requests.Session | None = None,
                 egress: EgressPolicy | None = None) -> None:
        if not url or not secret:
            raise InvalidInput("A webhook channel needs a url and a secret")
        self.name = name
        self.url = url
        self.secret = secret
        self.telecom_system = telecom_system
        self.timeout = timeout
        self.session = session or requests.Session()
        #: the configured URL is the operator's choice: allow-listed, never redirected away from
        self.egress = (egress or EgressPolicy()).trusting(url)
        #: proxies, CA bundle and .netrc credentials from the environment, read at the first
        #: send instead of at every send (requests reads the whole environment each time)
        self._environment: dict[str, Any] | None = None if session is None else {}

    @classmethod
    def from_settings(cls, settings: Any) -> "WebhookChannel | None":
        """Build the channel from the ``[webhook]`` config table, or None when not configured."""
        conf = (getattr(settings, "extra", None) or {}).get("webhook") or {}
        if not conf.get("url"):
            return None
        return cls(conf["url"], str(conf.get("secret", "")), name=conf.get("name", "webhook"),
                   telecom_system=conf.get("telecom"), timeout=float(conf.get("timeout", 10)),
                   egress=egress_policy(settings))

    def address(self, recipient: Mapping[str, Any]) -> str | None:
        """Return the contact point sent as ``to``, or the recipient reference itself."""
        if self.telecom_system:
            return telecom(recipient, self.telecom_system)
        return f"{recipient.get('resourceType')}/{recipient.get('id')}"

    def body(self, message: Message) -> bytes:
        """Return the JSON body for a message."""
        return orjson.dumps({
            "id": message.idempotency_key, "kind": message.kind, "purpose": message.purpose,
            "recipient": message.recipient, "to": message.to if self.telecom_system else None,
            "subject": message.subject, "text": message.text, "link": message.link,
            "priority": message.priority,
        })

    def send(self, message: Message) -> Delivery:
        """POST the message; map the answer to delivered, retry or permanent failure."""
        body = self.body(message)
        stamp = int(time.time())
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.idempotency_key,
                   TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(self.secret, stamp, body)}
        try:
            response = self.egress.request("POST", self.url, session=self.session, data=body,
                                           headers=headers, timeout=self.timeout, **self._settings())
        except EgressRefused as exc:
            raise PermanentDeliveryError(exc.message) from None
        except requests.ConnectionError as exc:
            raise TransientDeliveryError(f"Webhook unreachable: {type(exc).__name__}",
                                         maybe_sent=not _never_sent(exc)) from None
        except requests.Timeout:
            raise TransientDeliveryError("Webhook timed out", maybe_sent=True) from None
        if 200 <= response.status_code < 300:
            return Delivery(status="completed")
        retry_after = _retry_after(response)
        if response.status_code in _RETRY:
            raise TransientDeliveryError(f"Webhook answered {response.status_code}",
                                         retry_after=retry_after, maybe_sent=response.status_code >= 500)
        raise PermanentDeliveryError(f"Webhook refused the message ({response.status_code})")

    def _settings(self) -> dict[str, Any]:
        """Return the environment's request settings for this URL (own session: read once)."""
        if self._environment is None:
            env = self.session.merge_environment_settings(self.url, {}, None, None, None)
            auth = requests.utils.get_netrc_auth(self.url)
            self._environment = {k: v for k, v in env.items() if k != "stream"}
            if auth:
                self._environment["auth"] = auth
            self.session.trust_env = False  # what it would read per request is in the settings
        return self._environment


def _never_sent(exc: requests.ConnectionError) -> bool:
    text = str(exc).lower()
    return "refused" in text or "name or service not known" in text or isinstance(
        exc, requests.exceptions.ConnectTimeout)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value and value.isdigit():
        return float(value)
    return None
