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

from .changes import Change, Horizon, barrier
from .config import SyncConfig, sync_config
from .export import (
    ExportAccess,
    ExportJob,
    ExportRequest,
    ExportResult,
    cancel_export,
    expire_exports,
    get_export,
    parse_export_request,
    run_pending_exports,
    start_export,
    write_export,
)
from .outbox import (
    EhrTarget,
    OutboxRecord,
    deliver_outbox,
    ehr_targets,
    feed_outbox,
    list_outbox,
    outbox_counts,
    retry_outbox,
    run_outbox,
)
from .subscriptions import TOPICS, run_subscriptions, status_bundle

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
