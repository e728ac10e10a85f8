"""Built-in plugin: the worker's sync jobs — $export, Subscription notifications, EHR outbox."""

from __future__ import annotations

from typing import Any

from .hookspecs import hookimpl

__all__ = ["register_worker_tasks", "export_jobs", "subscription_notifications", "ehr_outbox"]


def export_jobs(services: Any) -> int:
    """Run one queued ``$export`` and delete expired export files; return jobs run plus cleaned."""
    from .sync.export import expire_exports, run_pending_exports

    return run_pending_exports(services, limit=1) + expire_exports(services)


def subscription_notifications(services: Any) -> int:
    """Derive Subscription events from new writes and send due notifications and heartbeats."""
    from .sync.subscriptions import run_subscriptions

    return run_subscriptions(services)


def ehr_outbox(services: Any) -> int:
    """Enqueue new write-backs and deliver due ones to the configured EHRs."""
    from .sync.outbox import run_outbox

    return run_outbox(services)


@hookimpl
def register_worker_tasks() -> list[Any]:
    """Return the sync jobs."""
    return [export_jobs, subscription_notifications, ehr_outbox]
