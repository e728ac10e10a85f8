"""Built-in plugin: the worker's sync jobs — $export, Subscription notifications, EHR outbox.

The outbox and the Subscription notifications find new writes in the store's write
sequence (:mod:`hw_fhir.sync.changes`), so they need no event hook: they are worker
jobs, run right after the core jobs of :mod:`hw_fhir.default_worker`.
"""

from __future__ import annotations

from typing import Any

from .hookspecs import hookimpl
from .sync.export import expire_exports, run_pending_exports
from .sync.outbox import run_outbox
from .sync.subscriptions import run_subscriptions

__all__ = ["register_worker_tasks", "export_jobs", "subscription_notifications", "ehr_outbox"]


def export_jobs(services: Any) -> int:
    """Run one queued ``$export`` and delete expired export files; return jobs run plus cleaned."""
    return run_pending_exports(services, limit=1) + expire_exports(services)


def subscription_notifications(services: Any) -> int:
    """Derive Subscription events from new writes and send due notifications and heartbeats."""
    return run_subscriptions(services)


def ehr_outbox(services: Any) -> int:
    """Enqueue new write-backs and deliver due ones to the configured EHRs."""
    return run_outbox(services)


@hookimpl(tryfirst=True)
def register_worker_tasks() -> list[Any]:
    """Return the sync jobs (``tryfirst``: built-in jobs run before any installed plugin's)."""
    return [export_jobs, subscription_notifications, ehr_outbox]
