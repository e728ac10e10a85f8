"""One claimed batch: its context, the resources it reads at once, the writes it commits together.

A job's new state (and its attempt's Communication) is queued with
:func:`record_later` and committed by :func:`flush` in one transaction, then
announced; a batch still sending half a lease after its claim gives back what it has
not started (:meth:`BatchContext.past_half_lease`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from ..errors import HwFhirError, NotFound
from ..models import validate
from .clock import now_text
from .policy import ReminderPolicy
from .queue import finish_jobs
from .records import resource_id

__all__ = ["PendingWrite", "BatchContext", "check_each", "READ_CHUNK", "read_resource", "prefetch", "read_many",
           "record_later", "guarded", "retry_later", "flush", "commit_writes", "put_all"]

log = logging.getLogger("hw_fhir.reminders")


@dataclass
class PendingWrite:
    """A claimed job's new state (and its attempt's Communication), committed with its batch."""

    job: Any
    values: dict[str, Any]
    communication: dict[str, Any] | None = None
    #: called with the stored Communication (or None) once committed: announcements
    after: list[Callable[[dict[str, Any] | None], None]] = field(default_factory=list)


@dataclass
class BatchContext:
    """One claimed batch: its settings, the resources it read, the writes it will commit."""

    services: Any
    policy: ReminderPolicy
    channels: dict[str, Any]
    worker: str
    now: datetime
    #: when the batch was claimed (monotonic seconds)
    claimed_at: float = field(default_factory=lambda: monotonic())
    #: Tasks, Patients and CommunicationRequests read for this batch (None: not there)
    resources: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    #: patients who opted out of a channel during this batch (their next reminders are rechecked)
    opted_out: set[str | None] = field(default_factory=set)
    writes: list[PendingWrite] = field(default_factory=list)

    @property
    def store(self) -> Any:
        return self.services.store

    @property
    def pm(self) -> Any:
        return self.services.plugins

    def past_half_lease(self) -> bool:
        """Tell whether the batch has been working for more than half its lease."""
        return monotonic() - self.claimed_at > self.policy.lease_seconds / 2


def read_resource(ctx: BatchContext, resource_type: str, rid: str | None) -> dict[str, Any] | None:
    """Return a resource as read for this batch (once), or None when it is not there."""
    if not rid:
        return None
    key = (resource_type, rid)
    if key not in ctx.resources:
        try:
            ctx.resources[key] = ctx.store.read(resource_type, rid).resource
        except NotFound:
            ctx.resources[key] = None
    return ctx.resources[key]


#: Ids per ``_id`` search when a batch reads its resources.


READ_CHUNK = 200


def prefetch(ctx: BatchContext, jobs: list[Any]) -> None:
    """Read the Tasks, Patients and reminder plans of a batch: one search per type."""
    wanted: dict[str, dict[str, None]] = {"Task": {}, "Patient": {}, "CommunicationRequest": {}}
    for job in jobs:
        if job.kind in ("plan", "reminder", "close") and job.task_id:
            wanted["Task"][job.task_id] = None
        if job.kind in ("plan", "reminder") and job.patient_id:
            wanted["Patient"][job.patient_id] = None
        if job.kind in ("reminder", "alert") and job.request_id:
            wanted["CommunicationRequest"][job.request_id] = None
    for resource_type, ids in wanted.items():
        ctx.resources.update(read_many(ctx.store, resource_type, list(ids)))


def read_many(reader: Any, resource_type: str,
              ids: list[str]) -> dict[tuple[str, str], dict[str, Any] | None]:
    """Return resources by ``(type, id)`` (None: not there or deleted) with ``_id`` searches."""
    out: dict[tuple[str, str], dict[str, Any] | None] = {}
    for start in range(0, len(ids), READ_CHUNK):
        chunk = ids[start:start + READ_CHUNK]
        page = reader.search(resource_type, [("_id", ",".join(chunk)), ("_count", str(len(chunk))),
                                             ("_total", "none")])
        found = {stored.id: stored.resource for stored in page.matches}
        out.update(((resource_type, rid), found.get(rid)) for rid in chunk)
    return out


def record_later(ctx: BatchContext, job: Any, *, communication: dict[str, Any] | None = None,
                 after: Iterable[Callable[[dict[str, Any] | None], None]] = (), **values: Any) -> None:
    """Queue a job's new state (and its attempt's Communication) for the batch's commit."""
    ctx.writes.append(PendingWrite(job, values, communication, list(after)))


def guarded(ctx: BatchContext, job: Any, step: Callable[[BatchContext, Any], str]) -> str:
    """Run one job's step; an error retries the job later (one bad job must not stop the others)."""
    try:
        return step(ctx, job)
    except Exception as exc:  # noqa: BLE001
        return retry_later(ctx, job, exc)


def check_each(ctx: BatchContext, jobs: list[Any],
               check: Callable[[BatchContext, Any], Any]) -> tuple[dict[str, str], list[Any]]:
    """Run ``check`` on each job: return the outcomes of jobs it settled and what it passed on.

    ``check`` returns an outcome (a str) when the job needs no more work, else the
    job's next step; one that raises is retried later (one bad job must not stop the others).
    """
    outcomes: dict[str, str] = {}
    passed: list[Any] = []
    for job in jobs:
        try:
            checked = check(ctx, job)
        except Exception as exc:  # noqa: BLE001
            outcomes[job.id] = retry_later(ctx, job, exc)
            continue
        if isinstance(checked, str):
            outcomes[job.id] = checked
        else:
            passed.append(checked)
    return outcomes, passed


def retry_later(ctx: BatchContext, job: Any, exc: Exception) -> str:
    message = exc.message if isinstance(exc, HwFhirError) else f"{type(exc).__name__}: {exc}"
    log.warning("Job %s: %s; retried later", job.id, message,
                exc_info=not isinstance(exc, HwFhirError))
    if any(write.job.id == job.id for write in ctx.writes):
        return "retried"  # its outcome is already queued (e.g. a send recorded): keep that
    record_later(ctx, job, status="pending",
                 due_at=now_text(ctx.now + timedelta(seconds=ctx.policy.retry_base_seconds)),
                 last_error=message[:1000], tries=job.tries + 1)
    return "retried"


def flush(ctx: BatchContext) -> None:
    """Commit the batch's queued writes in one transaction, then announce them.

    If that fails (one bad record), each write is committed alone; one that still
    fails leaves its job claimed, so it is done again — with the same idempotency
    key — once the lease runs out.
    """
    writes, ctx.writes = ctx.writes, []
    if not writes:
        return
    try:
        stored = commit_writes(ctx, writes)
    except Exception:  # noqa: BLE001
        log.warning("Committing a batch of %d jobs failed; committing them one by one",
                    len(writes), exc_info=True)
        stored = {}
        for write in writes:
            try:
                stored.update(commit_writes(ctx, [write]))
            except Exception:  # noqa: BLE001
                log.exception("Job %s could not be recorded; it is done again when its lease "
                              "runs out", write.job.id)
    for write in writes:
        if id(write) not in stored:
            continue
        for announce in write.after:
            try:
                announce(stored[id(write)])
            except Exception:  # noqa: BLE001 - after a send, nothing may cause a resend
                log.exception("After recording job %s", write.job.id)


def commit_writes(ctx: BatchContext, writes: list[PendingWrite]) -> dict[int, dict[str, Any] | None]:
    """Store the writes' Communications and jobs' states in one transaction (by ``id(write)``)."""
    ids = {id(w): resource_id("attempt", w.communication["identifier"][0]["value"])
           for w in writes if w.communication is not None}
    comms = [dict(w.communication, id=ids[id(w)]) for w in writes if w.communication is not None]
    with ctx.store.unit_of_work() as unit:
        stored = put_all(unit, comms)
        out = {id(w): stored[ids[id(w)]] if id(w) in ids else None for w in writes}
        updates = []
        for write in writes:
            comm = out[id(write)]
            values = dict(write.values, communication_id=comm["id"]) if comm else write.values
            updates.append((write.job, values))
        done = finish_jobs(unit.conn, ctx.worker, ctx.now, updates)
    if done < len(updates):
        log.warning("%d of %d jobs were reclaimed by another worker while this one worked on them",
                    len(updates) - done, len(updates))
    return out


def put_all(unit: Any, resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Store resources under their (stable) ids unless already there; return the stored ones by id.

    One ``_id`` search per type finds those an interrupted run already stored; the
    others' versions are looked up together before they are written.
    """
    out: dict[str, dict[str, Any]] = {}
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    for resource_type, items in by_type.items():
        found = read_many(unit, resource_type, [r["id"] for r in items])
        unit.preload([key for key, resource in found.items() if resource is None])
        for resource in items:
            out[resource["id"]] = (found[(resource_type, resource["id"])]
                                   or unit.update(validate(resource)).resource)
    return out
