"""The demo catcher: ``email`` and ``sms`` channels that deliver into a local inbox file.

Only ``hw-fhir demo`` installs them (:mod:`hw_fhir.default_demo`, when
``Settings.demo`` is on): every reminder and alert the demo sends is appended as one
JSON line to ``<instance>/demo_inbox.ndjson`` instead of leaving the machine, and the
sandbox EHR shows it at ``/sandbox/inbox`` (a phone per recipient) and
``/sandbox/inbox.json`` (``[{to, channel, subject, body, link, sent}]``).

Guarantee: exactly once per idempotency key — a message whose key is already in the
inbox is not appended again. Appends are one ``write`` on a file opened
``O_APPEND`` under an exclusive ``flock``, so several threads and processes may send.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from .base import Delivery, Message, medium, telecom

__all__ = ["DemoInboxChannel", "inbox_path", "read_inbox", "demo_channels"]

_FILE = "demo_inbox.ndjson"


def inbox_path(settings: Any) -> Path:
    """Return the inbox file of an instance."""
    return Path(settings.instance_path) / _FILE


class DemoInboxChannel:
    """Deliver messages to the local demo inbox (no network)."""

    guarantee = "Exactly once per idempotency key: a key already in the inbox is not added again."

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.medium = (medium("SMSWRIT", "SMS message") if name == "sms"
                       else medium("EMAILWRIT", "email"))

    def address(self, recipient: Mapping[str, Any]) -> str | None:
        """Return the email address, or for ``sms`` the mobile number (``sms``, else ``phone``)."""
        if self.name == "sms":
            return telecom(recipient, "sms") or telecom(recipient, "phone")
        return telecom(recipient, "email")

    def send(self, message: Message) -> Delivery:
        """Append the message to the inbox (once per idempotency key)."""
        entry = {"to": message.to, "channel": self.name, "subject": message.subject,
                 "body": message.text, "link": message.link, "kind": message.kind,
                 "recipient": message.recipient, "key": message.idempotency_key,
                 "sent": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with open(self.path, "rb") as fh:
                seen = any(orjson.loads(line).get("key") == message.idempotency_key
                           for line in fh if line.strip())
            if not seen:
                os.write(fd, orjson.dumps(entry) + b"\n")
        finally:
            os.close(fd)  # releases the lock
        return Delivery(status="completed", detail="demo inbox")


def read_inbox(settings: Any) -> list[dict[str, Any]]:
    """Return the inbox messages, newest first, as ``{to, channel, subject, body, link, sent}``."""
    path = inbox_path(settings)
    if not path.exists():
        return []
    out = []
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            item = orjson.loads(line)
            out.append({k: item.get(k) for k in ("to", "channel", "subject", "body", "link",
                                                  "sent", "kind", "recipient")})
    out.reverse()
    return out


def demo_channels(settings: Any) -> list[DemoInboxChannel]:
    """Return the demo's ``email`` and ``sms`` catchers."""
    path = inbox_path(settings)
    return [DemoInboxChannel("email", path), DemoInboxChannel("sms", path)]
