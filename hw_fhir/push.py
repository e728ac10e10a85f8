"""Web Push subscriptions and the server's VAPID key (RFC 8030, 8291, 8292). No web framework here.

* A patient opts in on the preferences page: the browser's Push API makes a
  subscription (``endpoint`` at the browser vendor's push service, and the
  ``p256dh``/``auth`` keys the message is encrypted to) and the page posts it here.
  :func:`save_subscription` checks it and keeps it in ``push_subscription``, one row
  per endpoint (``id`` = SHA-256 of the endpoint, so posting the same subscription
  twice stores it once); a patient may have several devices.
* The push service answers 404 or 410 when a subscription has expired or was
  withdrawn: the channel removes it (:func:`remove_subscription`).
* The server's VAPID key pair (ECDSA P-256) signs each request to a push service.
  It is generated on first use into ``<instance>/vapid_private_key.pem`` (mode 0600);
  the public key, as the uncompressed point in base64url, is the
  ``applicationServerKey`` the browser subscribes with (:func:`application_server_key`).

Config-file table ``[web_push]``: ``subject`` (the VAPID ``sub`` claim, a ``mailto:``
or ``https:`` contact; default ``mailto:`` + the ``mail_from`` address), ``ttl``
(seconds a push service keeps an undelivered message, default 86400) and ``enabled``
(default true). A push endpoint is an address a user chose: it goes through the egress
policy (:mod:`hw_fhir.egress`) when the subscription is posted and at every send, so
``https`` only in production, and no loopback/private address unless it is on
``HW_FHIR_EGRESS_ALLOW`` (a local push service in development and tests).

Changes to the table go through Alembic (``hw_fhir/migrations/versions/0007_web_push.py``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Column, Index, String, Table, Text, delete, insert, select, update

from .errors import ConfigurationError, EgressRefused, InvalidEncoding, InvalidInput, Issue
from .store.schema import metadata

__all__ = [
    "push_subscription",
    "Subscription",
    "PushConfig",
    "VAPID_KEY_FILE",
    "b64url",
    "b64url_decode",
    "push_config",
    "vapid_key",
    "application_server_key",
    "parse_subscription",
    "save_subscription",
    "subscriptions_for",
    "has_subscription",
    "mark_sent",
    "remove_subscription",
    "remove_patient_subscriptions",
]

VAPID_KEY_FILE = "vapid_private_key.pem"
_MAX_ENDPOINT = 2000
_LOOPBACK_NAMES = {"localhost"}

push_subscription = Table(
    "push_subscription",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 hex of the endpoint
    Column("patient_id", String(64), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("p256dh", String(128), nullable=False),
    Column("auth", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("last_sent_at", String(32), nullable=True),
    Index("ix_push_subscription_patient", "patient_id"),
)


@dataclass(frozen=True)
class Subscription:
    """One browser's push subscription (PushSubscription.toJSON() without expirationTime)."""

    endpoint: str
    p256dh: str
    auth: str
    patient_id: str = ""

    @property
    def id(self) -> str:
        """The row id: SHA-256 (hex) of the endpoint."""
        return hashlib.sha256(self.endpoint.encode()).hexdigest()

    def info(self) -> dict[str, Any]:
        """Return the subscription as pywebpush's ``subscription_info``."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass(frozen=True)
class PushConfig:
    """The ``[web_push]`` settings."""

    enabled: bool = True
    subject: str = "mailto:no-reply@localhost"
    ttl: int = 86400
    key_file: Path = Path(VAPID_KEY_FILE)


def b64url(data: bytes) -> str:
    """Encode bytes as base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; raise InvalidEncoding (a ValueError) when it is not."""
    text = text.strip()
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="
                       for c in text):
        raise InvalidEncoding("not base64url")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise InvalidEncoding("not base64url") from None


def _mail_subject(mail_from: str) -> str:
    address = mail_from.rsplit("<", 1)[-1].rstrip(">").strip()
    return f"mailto:{address}" if "@" in address else "mailto:no-reply@localhost"


def push_config(settings: Any) -> PushConfig:
    """Read the ``[web_push]`` table (defaults when absent)."""
    conf = (getattr(settings, "extra", None) or {}).get("web_push") or {}
    enabled = conf.get("enabled", True)
    if isinstance(enabled, str):
        enabled = enabled.strip().lower() not in ("0", "false", "no", "off", "")
    subject = str(conf.get("subject") or _mail_subject(getattr(settings, "mail_from", "")))
    if not subject.startswith(("mailto:", "https://")):
        raise ConfigurationError("[web_push] subject must be a mailto: or https: contact")
    try:
        ttl = int(conf.get("ttl", 86400))
    except (TypeError, ValueError):
        raise ConfigurationError("[web_push] ttl must be a whole number of seconds") from None
    instance = Path(getattr(settings, "instance_path", "") or ".")
    return PushConfig(enabled=bool(enabled), subject=subject, ttl=max(0, ttl),
                      key_file=instance / VAPID_KEY_FILE)


def vapid_key(settings: Any) -> Any:
    """Return the server's VAPID key (a ``py_vapid.Vapid``), generating it on first use.

    The key file is created with ``O_EXCL`` and mode 0600, so two processes starting at
    once agree on one key.
    """
    from py_vapid import Vapid  # lazy: third-party, loaded only when web push is used

    path = push_config(settings).key_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = Vapid()
        fresh.generate_keys()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(fresh.private_pem())
    return Vapid.from_file(str(path))


def application_server_key(settings: Any) -> str:
    """Return the VAPID public key as the browser's ``applicationServerKey`` (base64url)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # lazy: as Vapid

    public = vapid_key(settings).public_key
    return b64url(public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_subscription(data: Any, *, egress: Any = None) -> Subscription:
    """Check a posted ``PushSubscription.toJSON()``; raise InvalidInput with readable issues.

    ``egress`` (an :class:`~hw_fhir.egress.EgressPolicy`) checks the endpoint's address too.
    """
    from cryptography.hazmat.primitives.asymmetric import ec  # lazy: only for a posted subscription

    if not isinstance(data, Mapping):
        raise InvalidInput("Send the subscription as a JSON object")
    issues: list[Issue] = []
    endpoint = data.get("endpoint")
    found = data.get("keys")
    keys: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    if not isinstance(endpoint, str) or not endpoint or len(endpoint) > _MAX_ENDPOINT:
        issues.append(Issue("The subscription has no usable endpoint", expression="endpoint"))
    else:
        parts = urlsplit(endpoint)
        secure = parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname or ""))
        if not secure or not parts.hostname:
            issues.append(Issue("The push endpoint must be an https:// address", expression="endpoint"))
        elif egress is not None:
            try:
                egress.check_url(endpoint)
            except EgressRefused as exc:
                issues.append(Issue(f"The push endpoint cannot be used: {exc.message}",
                                    expression="endpoint"))
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    try:
        point = b64url_decode(p256dh) if isinstance(p256dh, str) else b""
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        p256_point = len(point) == 65  # uncompressed
    except ValueError:
        p256_point = False
    if not p256_point:
        issues.append(Issue("The subscription's p256dh key is not a P-256 public key",
                            expression="keys.p256dh"))
    try:
        auth_secret = isinstance(auth, str) and len(b64url_decode(auth)) == 16
    except ValueError:
        auth_secret = False
    if not auth_secret:
        issues.append(Issue("The subscription's auth secret must be 16 bytes", expression="keys.auth"))
    if issues:
        raise InvalidInput("This push subscription cannot be used", issues=issues)
    return Subscription(endpoint=str(endpoint), p256dh=str(p256dh), auth=str(auth))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def save_subscription(store: Any, patient_id: str, subscription: Subscription) -> bool:
    """Keep a patient's subscription (the same endpoint again: replaced); True when it is new."""
    row = {"patient_id": patient_id, "endpoint": subscription.endpoint,
           "p256dh": subscription.p256dh, "auth": subscription.auth}
    with store.engine.begin() as conn:
        found = conn.execute(update(push_subscription)
                             .where(push_subscription.c.id == subscription.id)
                             .values(**row)).rowcount
        if found:
            return False
        conn.execute(insert(push_subscription).values(id=subscription.id, created_at=_now(), **row))
    return True


def subscriptions_for(store: Any, patient_id: str) -> list[Subscription]:
    """Return a patient's subscriptions, oldest first."""
    t = push_subscription.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.endpoint, t.p256dh, t.auth, t.patient_id)
                            .where(t.patient_id == patient_id).order_by(t.created_at, t.id)).fetchall()
    return [Subscription(endpoint=r.endpoint, p256dh=r.p256dh, auth=r.auth, patient_id=r.patient_id)
            for r in rows]


def has_subscription(store: Any, patient_id: str) -> bool:
    """Tell whether a patient has at least one subscription."""
    t = push_subscription.c
    with store.engine.connect() as conn:
        return conn.execute(select(t.id).where(t.patient_id == patient_id).limit(1)).first() is not None


def mark_sent(store: Any, subscription: Subscription) -> None:
    """Record when a subscription last accepted a message."""
    with store.engine.begin() as conn:
        conn.execute(update(push_subscription).where(push_subscription.c.id == subscription.id)
                     .values(last_sent_at=_now()))


def remove_subscription(store: Any, endpoint: str, *, patient_id: str | None = None) -> bool:
    """Forget one subscription (expired, or withdrawn by its patient); True when one was removed."""
    sid = hashlib.sha256(endpoint.encode()).hexdigest()
    stmt = delete(push_subscription).where(push_subscription.c.id == sid)
    if patient_id is not None:
        stmt = stmt.where(push_subscription.c.patient_id == patient_id)
    with store.engine.begin() as conn:
        return bool(conn.execute(stmt).rowcount)


def remove_patient_subscriptions(store: Any, patient_id: str) -> int:
    """Forget every subscription of a patient (they turned notifications off); return how many."""
    with store.engine.begin() as conn:
        return int(conn.execute(delete(push_subscription)
                                .where(push_subscription.c.patient_id == patient_id)).rowcount)

