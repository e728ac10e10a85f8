"""The Web Push channel (``webpush``): a notification on the patient's own phone, no vendor contract.

Each message goes to every push subscription the patient made on the preferences
page (:mod:`hw_fhir.push`), encrypted to the subscription's keys (RFC 8291,
``aes128gcm``) and signed with the server's VAPID key (RFC 8292), through
``pywebpush``. The payload carries **no clinical content and no secret**: the
practice's name, "You have an activity waiting" (in the patient's language: the
message's ``Content-Language``) and the address of the patient's to-do list
(``<base_url>/my/``), never an activity's name nor a secure link token::

    {"title": "<practice name>", "body": "You have an activity waiting",
     "url": "https://…/my/", "tag": "<hash of the attempt key>"}

Push endpoints are addresses users chose, so every request goes through the egress policy
(:mod:`hw_fhir.egress`: no loopback/private address unless allow-listed, https in
production, no redirects); a subscription it refuses is removed like an expired one.

Answers of the push service: 201/202 delivered; 404 and 410 mean the subscription
expired or was withdrawn, so it is removed; when no subscription of the patient
took the message, the attempt fails permanently and the reminder engine tries the
patient's next channel. 429 and 5xx (and connection errors) are retried with
backoff (``Retry-After`` honoured); other answers (e.g. 403: the push service
refuses our VAPID key) fail permanently.

Guarantee: at least once. A retry of an interrupted attempt sends the same ``Topic``
(RFC 8030 §5.4, derived from the idempotency key), so the push service replaces the
undelivered first copy instead of delivering both; the service worker shows one
notification per ``tag``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson
import requests

from ..egress import EgressPolicy, egress_policy
from ..errors import EgressRefused, PermanentDeliveryError, TransientDeliveryError
from ..i18n import DEFAULT_PRACTICE_NAME, N_, practice_in, translator
from ..push import (
    PushConfig,
    Subscription,
    has_subscription,
    mark_sent,
    push_config,
    remove_subscription,
    subscriptions_for,
    vapid_key,
)
from .base import Delivery, Message, medium

__all__ = ["WebPushChannel", "PUSH_TEXT", "push_payload", "push_text"]

log = logging.getLogger("hw_fhir.channels.webpush")

#: The only words a push says (no activity name, nothing clinical), translated when sent.
PUSH_TEXT = N_("You have an activity waiting")
_RETRY = frozenset({408, 425, 429, 500, 502, 503, 504})
_GONE = frozenset({404, 410})


def push_text(message: Message) -> str:
    """Return the words of a push in the message's language (its ``Content-Language``)."""
    return translator(message.headers.get("Content-Language"))(PUSH_TEXT)


def push_payload(message: Message, *, title: str, base_url: str) -> bytes:
    """Return the JSON a push carries: the practice, the generic text, the to-do list address."""
    return orjson.dumps({
        "title": title,
        "body": push_text(message),
        "url": base_url.rstrip("/") + "/my/",
        "tag": _topic(message.idempotency_key),
    })


def _topic(key: str) -> str:
    """Return an RFC 8030 Topic (at most 32 base64url characters) for an attempt key."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class WebPushChannel:
    """Send reminders as Web Push notifications to the patient's subscribed browsers."""

    name = "webpush"
    medium = medium("ONLINEWRIT", "online written")
    guarantee = ("At least once; a retry of an interrupted attempt reuses its Topic, so the push "
                 "service replaces an undelivered copy instead of delivering two.")

    def __init__(self, store: Any, settings: Any, *, config: PushConfig | None = None,
                 session: requests.Session | None = None, timeout: float = 10.0,
                 egress: EgressPolicy | None = None) -> None:
        self.store = store
        self.settings = settings
        self.config = config or push_config(settings)
        self.session = session or requests.Session()
        self.timeout = timeout
        #: push endpoints are addresses users chose: checked in full at every send
        self.egress = egress or egress_policy(settings)
        self._key: Any = None

    @classmethod
    def from_settings(cls, settings: Any, store: Any) -> "WebPushChannel | None":
        """Build the channel (on unless ``[web_push] enabled = false``; needs the store).

        Off in ``hw-fhir demo`` (``Settings.demo``): nothing the demo sends leaves the
        machine, so its reminders go to the demo inbox's channels instead.
        """
        if store is None or not hasattr(store, "engine") or getattr(settings, "demo", False):
            return None
        config = push_config(settings)
        return cls(store, settings, config=config) if config.enabled else None

    def address(self, recipient: Mapping[str, Any]) -> str | None:
        """Return ``Patient/<id>`` when the patient has a push subscription, else None."""
        if recipient.get("resourceType") != "Patient" or not recipient.get("id"):
            return None
        return f"Patient/{recipient['id']}" if has_subscription(self.store, str(recipient["id"])) else None

    def check(self) -> str | None:
        """Return why the channel cannot sign pushes now (its VAPID key), or None."""
        try:
            self.key()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return (f"webpush: the VAPID key {self.config.key_file} cannot be read or made "
                    f"({type(exc).__name__})")
        return None

    def key(self) -> Any:
        """The VAPID key (generated into the instance folder on first use)."""
        if self._key is None:
            self._key = vapid_key(self.settings)
        return self._key

    def send(self, message: Message) -> Delivery:
        """Push to each of the patient's subscriptions; drop expired ones."""
        patient_id = message.recipient.partition("/")[2] if message.recipient.startswith("Patient/") else ""
        subscriptions = subscriptions_for(self.store, patient_id) if patient_id else []
        if not subscriptions:
            raise PermanentDeliveryError("The patient has no push subscription")
        title = practice_in(self.settings.practice_name, message.headers.get("Content-Language"))
        if self.settings.practice_name == DEFAULT_PRACTICE_NAME:  # words: a title starts capital
            title = title[:1].upper() + title[1:]
        body = push_payload(message, title=title,
                            base_url=self.settings.base_url or "")
        # what the Communication records is what the push says (not the email-style text)
        message.text = f"{push_text(message)}: {(self.settings.base_url or '').rstrip('/')}/my/"
        delivered, gone, transient, refused = 0, 0, [], []
        for subscription in subscriptions:
            try:
                status, retry_after = self._push(subscription, body, message)
            except requests.Timeout:
                transient.append(TransientDeliveryError("Push service timed out", maybe_sent=True))
                continue
            except requests.ConnectionError as exc:
                transient.append(TransientDeliveryError(
                    f"Push service unreachable: {type(exc).__name__}", maybe_sent=False))
                continue
            except EgressRefused:  # the endpoint now points somewhere it may not: never again
                gone += 1
                remove_subscription(self.store, subscription.endpoint)
                log.warning("Removed push subscription %s: refused by the egress policy",
                            subscription.id[:12])
                continue
            if status in (200, 201, 202):
                delivered += 1
                mark_sent(self.store, subscription)
            elif status in _GONE:
                gone += 1
                remove_subscription(self.store, subscription.endpoint)
                log.info("Removed expired push subscription %s (%s)", subscription.id[:12], status)
            elif status in _RETRY:
                transient.append(TransientDeliveryError(f"Push service answered {status}",
                                                        retry_after=retry_after,
                                                        maybe_sent=status >= 500))
            else:
                refused.append(status)
        if delivered:
            return Delivery(status="completed", detail=f"{delivered} device(s)")
        if transient:
            raise transient[0]
        if gone and not refused:
            raise PermanentDeliveryError("The patient's push subscription has expired")
        raise PermanentDeliveryError(f"The push service refused the message ({refused[0]})")

    def _push(self, subscription: Subscription, body: bytes, message: Message) -> tuple[int, float | None]:
        from pywebpush import WebPushException, webpush  # lazy: loaded only when a push is sent

        try:
            response = webpush(
                subscription.info(), data=body, vapid_private_key=self.key(),
                vapid_claims={"sub": self.config.subject}, ttl=self.config.ttl,
                headers={"Topic": _topic(message.idempotency_key),
                         "Urgency": "high" if message.priority in ("urgent", "stat") else "normal"},
                timeout=self.timeout, requests_session=_Egress(self.egress, self.session))
        except WebPushException as exc:
            if exc.response is None:
                raise requests.ConnectionError("no response") from None
            response = exc.response
        retry = response.headers.get("Retry-After", "")
        return response.status_code, float(retry) if retry.isdigit() else None


class _Egress:
    """What pywebpush posts with: the egress policy's checked request, no redirects."""

    def __init__(self, policy: EgressPolicy, session: requests.Session) -> None:
        self.policy = policy
        self.session = session

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.policy.request("POST", url, session=self.session, **kwargs)
