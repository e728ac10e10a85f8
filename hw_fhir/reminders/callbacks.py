"""Delivery status callbacks: a channel reports what became of a message it accepted."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..errors import VersionConflict
from ..plugins import call_each
from .clock import fhir_instant

__all__ = ["update_delivery_status"]


_RANK = {"preparation": 0, "in-progress": 1, "on-hold": 1, "completed": 2, "not-done": 2,
         "stopped": 2, "entered-in-error": 3, "unknown": 1}


def update_delivery_status(services: Any, *, vendor_system: str, vendor_id: str, status: str,
                           reason: str | None = None,
                           received: datetime | None = None) -> dict[str, Any] | None:
    """Apply a channel's delivery callback to the Communication it names; return it (or None).

    ``status`` is a Communication status (``completed`` delivered, ``not-done``
    undelivered, ``in-progress`` still on its way). A callback arriving out of order
    never moves a Communication back (delivered then "sent" stays delivered).
    Announces ``delivery_status_changed``.
    """
    store = services.store
    for _ in range(3):
        page = store.search("Communication", [("identifier", f"{vendor_system}|{vendor_id}")])
        if not page.matches:
            return None
        stored = page.matches[0]
        comm = stored.resource
        previous = comm.get("status", "unknown")
        if previous == status or _RANK.get(status, 0) < _RANK.get(previous, 0):
            return dict(comm)
        changed = dict(comm, status=status)
        if status == "completed":
            changed["received"] = fhir_instant(received or datetime.now(timezone.utc))
        if reason:
            changed["statusReason"] = {"text": reason[:500]}
        try:
            new = store.update(changed, if_match=stored.version_id).resource
        except VersionConflict:
            continue
        call_each(services.plugins, "delivery_status_changed", store=store, communication=new,
                  previous_status=previous, services=services)
        return dict(new)
    return None
