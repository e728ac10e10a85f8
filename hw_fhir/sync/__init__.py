"""Health-system sync: Bulk Data ``$export``, change notifications, and EHR write-back.

* :mod:`.export` — ``$export`` jobs run by the worker, streamed NDJSON files;
* :mod:`.export_request` — what an ``$export`` kick-off asked for, checked;
* :mod:`.subscriptions` — R4 Backport topic-based Subscriptions (rest-hook, id-only);
* :mod:`.outbox` — the durable outbox writing completed responses and scores to EHRs;
* :mod:`.changes` — the store's write sequence as a change feed that skips nothing;
* :mod:`.backend` — hw-fhir as a SMART Backend Services client;
* :mod:`.tables` — their database tables (migration ``0004``).

Incremental sync itself (``_lastUpdated`` search, ``_history?_since=`` paged by the
write sequence) is served by the store and the /fhir API.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# The names below are read from their submodules on first use (PEP 562), so importing one
# submodule (``hw_fhir.sync.changes``, as the scoring sweep does) does not load the others.
_SUBMODULE_OF = {
    "Change": "changes",
    "Horizon": "changes",
    "barrier": "changes",
    "SyncConfig": "config",
    "sync_config": "config",
    "ExportAccess": "export",
    "ExportJob": "export",
    "ExportRequest": "export_request",
    "ExportResult": "export",
    "cancel_export": "export",
    "expire_exports": "export",
    "get_export": "export",
    "parse_export_request": "export_request",
    "run_pending_exports": "export",
    "start_export": "export",
    "write_export": "export",
    "EhrTarget": "outbox",
    "OutboxRecord": "outbox",
    "deliver_outbox": "outbox",
    "ehr_targets": "outbox",
    "feed_outbox": "outbox",
    "list_outbox": "outbox",
    "outbox_counts": "outbox",
    "retry_outbox": "outbox",
    "run_outbox": "outbox",
    "TOPICS": "subscriptions",
    "run_subscriptions": "subscriptions",
    "status_bundle": "subscriptions",
}


def __getattr__(name: str) -> Any:
    """Return a public name of a submodule (``hw_fhir.sync.run_outbox``), loading it then."""
    submodule = _SUBMODULE_OF.get(name)
    if submodule is None:
        raise AttributeError(f"module 'hw_fhir.sync' has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{submodule}"), name)


__all__ = [
    "Change",
    "Horizon",
    "barrier",
    "SyncConfig",
    "sync_config",
    "ExportAccess",
    "ExportJob",
    "ExportRequest",
    "ExportResult",
    "cancel_export",
    "expire_exports",
    "get_export",
    "parse_export_request",
    "run_pending_exports",
    "start_export",
    "write_export",
    "EhrTarget",
    "OutboxRecord",
    "deliver_outbox",
    "ehr_targets",
    "feed_outbox",
    "list_outbox",
    "outbox_counts",
    "retry_outbox",
    "run_outbox",
    "TOPICS",
    "run_subscriptions",
    "status_bundle",
]
