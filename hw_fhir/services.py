"""The running system's parts, wired once: settings, store, plugin manager.

Built by :func:`build_services` (no work at import time); the Flask app keeps
one in ``app.extensions["hw_fhir"]``, the CLI and workers build their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .store import SqlStore, open_store

__all__ = ["Services", "build_services"]


@dataclass
class Services:
    """Settings, the store and the plugin manager of one running hw-fhir."""

    settings: Settings
    store: SqlStore
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Release database connections."""
        self.store.dispose()


def build_services(settings: Settings, *, upgrade: bool = True) -> Services:
    """Open the store (migrating it to the newest schema) and wire the services."""
    store = open_store(settings.database_url, base_url=settings.fhir_base, upgrade=upgrade)
    return Services(settings=settings, store=store)
