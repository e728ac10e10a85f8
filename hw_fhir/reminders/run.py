"""One pass over the reminder queue: discover new work, claim due batches, process each.

:func:`run_reminders` is what a worker runs; :func:`process_job` does one claimed job.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..plugins import channels as registered
from .batch import BatchContext, flush, guarded, prefetch, record_later
from .discovery import discover_alerts, discover_tasks
from .planning import close_plan, plan_all
from .policy import ReminderPolicy
from .notices import send_message_notice
from .queue import claim_job, claim_jobs
from .sending import send_alert, send_all

__all__ = ["ReminderRun", "run_reminders", "process_job", "process_batch", "send_job_now"]

log = logging.getLogger("hw_fhir.reminders")


@dataclass
class ReminderRun:
    """What one pass over the queue did."""

    claimed: int = 0
    planned: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    deferred: int = 0
    closed: int = 0
    #: jobs given back unstarted (their batch ran past half its lease, or their patient
    #: opted out of a channel meanwhile): claimed again and checked afresh
    released: int = 0

    @property
    def work(self) -> int:
        """How many jobs this pass dealt with."""
        return self.claimed

    def add(self, outcome: str) -> None:
        """Count one job's outcome."""
        setattr(self, outcome, getattr(self, outcome) + 1)


def process_job(ctx: BatchContext, job: Any) -> str:
    """Do one claimed job and commit what it did; return its outcome (``sent``, ``retried``...)."""
    return process_batch(ctx, [job])[0]


def process_batch(ctx: BatchContext, jobs: list[Any]) -> list[str]:
    """Do a claimed batch; return each job's outcome, in order.

    The batch's resources are read at once, its plans stored in one transaction, its
    reminders counted against the daily limit and given links in one transaction
    before anything is sent; after the sends, every job's new state and every
    attempt's Communication are committed in one transaction, then announced.
    """
    try:
        prefetch(ctx, jobs)
    except Exception:  # noqa: BLE001 - then each job reads what it needs itself
        log.warning("Reading the batch's resources at once failed", exc_info=True)
    outcomes: dict[str, str] = {}
    single = {"alert": send_alert, "close": close_plan, "message": send_message_notice}
    for job in jobs:  # alerts first: they are urgent (and rare)
        if job.kind not in ("plan", "reminder"):
            outcomes[job.id] = guarded(ctx, job, single.get(job.kind, _unknown_kind))
            flush(ctx)  # recorded before the next send: a crash repeats only this one
    outcomes.update(plan_all(ctx, [job for job in jobs if job.kind == "plan"]))
    outcomes.update(send_all(ctx, [job for job in jobs if job.kind == "reminder"]))
    flush(ctx)
    return [outcomes[job.id] for job in jobs]


def _unknown_kind(ctx: BatchContext, job: Any) -> str:
    record_later(ctx, job, status="failed", last_error=f"unknown job kind {job.kind!r}")
    return "failed"


def run_reminders(services: Any, *, worker: str | None = None, now: datetime | None = None,
                  limit: int | None = None, discover: bool = True) -> ReminderRun:
    """Queue what is new, then claim and process due batches until none is due (or ``limit``)."""
    policy = ReminderPolicy.from_settings(services.settings)
    name = worker or f"worker-{uuid.uuid4().hex[:8]}"
    run = ReminderRun()
    if discover:
        discover_tasks(services, now=now)
        discover_alerts(services, now=now)
    chans = registered(services.plugins, services.settings, services.store, services=services)
    while limit is None or run.claimed < limit:
        moment = now or datetime.now(timezone.utc)
        take = policy.batch if limit is None else min(policy.batch, limit - run.claimed)
        jobs = claim_jobs(services.store, worker=name, limit=take,
                          lease_seconds=policy.lease_seconds, now=moment)
        if not jobs:
            return run
        ctx = BatchContext(services=services, policy=policy, channels=chans, worker=name, now=moment)
        run.claimed += len(jobs)
        for outcome in process_batch(ctx, jobs):
            run.add(outcome)
    return run


def send_job_now(services: Any, job_id: str, *, now: datetime | None = None) -> str | None:
    """Do one queued job at once if it is due (a page that just queued it); return its outcome.

    None when it is not due or another worker holds it. What fails stays queued, with its
    retry, exactly as if a worker had tried it.
    """
    policy = ReminderPolicy.from_settings(services.settings)
    name = f"inline-{uuid.uuid4().hex[:8]}"
    moment = now or datetime.now(timezone.utc)
    job = claim_job(services.store, job_id, worker=name, lease_seconds=policy.lease_seconds,
                    now=moment)
    if job is None:
        return None
    chans = registered(services.plugins, services.settings, services.store, services=services)
    ctx = BatchContext(services=services, policy=policy, channels=chans, worker=name, now=moment)
    return process_batch(ctx, [job])[0]
