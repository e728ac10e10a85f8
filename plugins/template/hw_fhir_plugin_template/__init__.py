"""A template hw-fhir plugin: a ``jsonl`` reminder channel and a ``prepare_message`` tweak."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hw_fhir.channels import Delivery, Message, medium
from hw_fhir.errors import PermanentDeliveryError, TransientDeliveryError
from hw_fhir.hookspecs import hookimpl

__all__ = ["JsonLinesChannel", "register_channels", "prepare_message"]


class JsonLinesChannel:
    """Append each message as one JSON line to a file (stand-in for a vendor API)."""

    name = "jsonl"
    medium = medium("ONLINEWRIT", "online written")
    guarantee = "Exactly once per idempotency key: a key already in the file is not written again."

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def address(self, recipient: Mapping[str, Any]) -> str | None:
        """Reach every Patient and Practitioner by reference."""
        return f"{recipient.get('resourceType')}/{recipient.get('id')}"

    def _sent_keys(self) -> set[str]:
        if not self.path.exists():
            return set()
        with self.path.open(encoding="utf-8") as fh:
            return {json.loads(line)["key"] for line in fh if line.strip()}

    def send(self, message: Message) -> Delivery:
        """Write the message; a folder that cannot be written is a permanent failure."""
        if not self.path.parent.is_dir():
            raise PermanentDeliveryError(f"{self.path.parent} does not exist")
        if message.idempotency_key in self._sent_keys():
            return Delivery(status="completed", detail="already sent")
        line = json.dumps({"key": message.idempotency_key, "to": message.to,
                           "subject": message.subject, "text": message.text})
        try:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise TransientDeliveryError(f"Cannot write {self.path}: {exc}") from None
        return Delivery(status="completed")


@hookimpl
def register_channels(settings: Any) -> list[Any]:
    """Return the ``jsonl`` channel when ``[plugin_template] path`` is configured."""
    conf = (getattr(settings, "extra", None) or {}).get("plugin_template") or {}
    return [JsonLinesChannel(conf["path"])] if conf.get("path") else []


@hookimpl
def prepare_message(message: Message) -> None:
    """Add a short signature line (no clinical content, ever)."""
    message.text = f"{message.text}\n-- sent with hw-fhir"
