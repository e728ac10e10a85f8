"""Settings of health-system sync, read from the ``[sync]`` table of the config file.

::

    [sync]
    export_retention_hours = 24        # completed export files are deleted after this
    export_max_lines_per_file = 100000
    export_max_active_jobs = 5         # per client; more kick-offs get 429
    export_lease_seconds = 300         # a worker that dies mid-export is replaced after this
    notification_timeout = 10          # seconds per rest-hook POST (backport-timeout overrides)
    notification_backoff = 5           # first retry delay, doubled per failure
    notification_max_backoff = 600
    notification_error_after = 3       # consecutive failures before the Subscription shows "error"
    outbox_backoff = 30
    outbox_max_backoff = 1800
    outbox_give_up_hours = 168         # a record still undelivered after this is marked failed

EHR write-back targets are ``[[ehr]]`` tables (see :mod:`hw_fhir.sync.outbox`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..errors import ConfigurationError

__all__ = ["SyncConfig", "sync_config"]


@dataclass(frozen=True)
class SyncConfig:
    """Tunables of exports, notifications and the outbox."""

    export_retention_hours: float = 24.0
    export_max_lines_per_file: int = 100_000
    export_max_active_jobs: int = 5
    export_lease_seconds: float = 300.0
    notification_timeout: float = 10.0
    notification_backoff: float = 5.0
    notification_max_backoff: float = 600.0
    notification_error_after: int = 3
    outbox_backoff: float = 30.0
    outbox_max_backoff: float = 1800.0
    outbox_give_up_hours: float = 168.0
    outbox_batch: int = 100


def sync_config(settings: Any) -> SyncConfig:
    """Return the sync settings of ``settings.extra["sync"]`` (defaults for the rest)."""
    raw = (getattr(settings, "extra", None) or {}).get("sync") or {}
    if not isinstance(raw, dict):
        raise ConfigurationError("[sync] must be a table")
    known = {f.name: f.type for f in fields(SyncConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigurationError(f"[sync] has an unknown key {key!r}")
        kind = int if known[key] in (int, "int") else float
        try:
            values[key] = kind(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"[sync] {key} must be a number, not {value!r}") from None
        if values[key] < 0:
            raise ConfigurationError(f"[sync] {key} must not be negative")
    return SyncConfig(**values)
