"""Undelivered reminders: listing them (clinician pages, ``hw-fhir reminders failures``), retrying them.

A reminder job that could not be delivered is either

* **failed** (``status`` ``failed``): the channel refused it for good, or it ran out of
  tries, or (before held jobs existed) a setting was missing; or
* **held / retrying** (``status`` ``pending`` with ``tries`` > 0): a transient failure
  waiting for its next try, or a job held for a fix on our side (its ``last_error``
  starts with :data:`hw_fhir.reminders.queue.HELD_PREFIX`, see
  :class:`~hw_fhir.errors.HeldDeliveryError`).

:func:`reminder_problems` returns both kinds (the clinician dashboard and panel show
them with their reason and a Retry button); :func:`retry_reminders` puts them back in
the queue due now, with a fresh count of tries and channels
(``hw-fhir reminders retry [--since]``, the Retry button); :func:`release_held` makes
the held ones due at once (every worker start: a setting may just have been fixed).
The next pass checks each one afresh, so a reminder whose Task was meanwhile
completed or cancelled is cancelled, not sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, or_, select, update

from .clock import now_text
from .queue import HELD_PREFIX
from .tables import reminder_job

__all__ = ["ReminderProblem", "reminder_problems", "retry_reminders", "release_held",
           "LEGACY_CONFIGURATION_FAILURES", "failures"]

_KINDS = ("reminder", "alert", "message")


@dataclass(frozen=True)
class ReminderProblem:
    """A reminder or alert not delivered: what, for whom, why, and whether it will retry."""

    id: str
    kind: str
    purpose: str
    patient_id: str | None
    task_id: str | None
    status: str  # "failed" | "retrying" | "held"
    reason: str
    tries: int
    updated_at: str
    next_try: str | None

    @property
    def final(self) -> bool:
        """True when nothing more will happen unless someone retries it."""
        return self.status == "failed"


def _problem(row: object) -> ReminderProblem:
    error = str(getattr(row, "last_error") or "")
    held = error.startswith(HELD_PREFIX)
    status = "failed" if getattr(row, "status") == "failed" else ("held" if held else "retrying")
    return ReminderProblem(
        id=getattr(row, "id"), kind=getattr(row, "kind"), purpose=getattr(row, "purpose"),
        patient_id=getattr(row, "patient_id"), task_id=getattr(row, "task_id"), status=status,
        reason=error[len(HELD_PREFIX):] if held else (error or "unknown"),
        tries=int(getattr(row, "tries") or 0), updated_at=getattr(row, "updated_at"),
        next_try=None if status == "failed" else getattr(row, "due_at"))


def _undelivered():  # type: ignore[no-untyped-def]
    j = reminder_job.c
    return and_(j.kind.in_(_KINDS), or_(j.status == "failed",
                                         and_(j.status == "pending", j.tries > 0)))


def reminder_problems(store: object, *, patients: Iterable[str] | None = None,
                      limit: int = 50) -> list[ReminderProblem]:
    """Return undelivered reminders and alerts (of ``patients``: ids), newest first."""
    j = reminder_job.c
    query = select(reminder_job).where(_undelivered())
    if patients is not None:
        ids = sorted({p.removeprefix("Patient/") for p in patients})
        if not ids:
            return []
        query = query.where(j.patient_id.in_(ids))
    query = query.order_by(j.updated_at.desc()).limit(limit)
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        return [_problem(row) for row in conn.execute(query)]


def retry_reminders(store: object, *, ids: Iterable[str] | None = None,
                    since: datetime | None = None, patient: str | None = None,
                    now: datetime | None = None) -> int:
    """Queue undelivered reminders and alerts again, due now; return how many.

    ``ids``: these jobs only; ``since``: those that failed (last changed) at or after
    it; ``patient``: that patient's only. Tries and failed channels start afresh.
    """
    j = reminder_job.c
    stamp = now_text(now or datetime.now(timezone.utc))
    where = [_undelivered()]
    if ids is not None:
        chosen = list(ids)
        if not chosen:
            return 0
        where.append(j.id.in_(chosen))
    if since is not None:
        where.append(j.updated_at >= now_text(since.astimezone(timezone.utc)))
    if patient is not None:
        where.append(j.patient_id == patient.removeprefix("Patient/"))
    with store.begin() as conn:  # type: ignore[attr-defined]
        done = conn.execute(update(reminder_job).where(*where).values(
            status="pending", due_at=stamp, tries=0, failed_channels=None, lease_until=None,
            worker=None, updated_at=stamp))
    return int(done.rowcount or 0)


#: ``last_error`` of jobs that earlier versions failed for good over a missing setting.
LEGACY_CONFIGURATION_FAILURES = ("HW_FHIR_BASE_URL is not set%", "channel_for chose %")


def release_held(store: object, *, now: datetime | None = None) -> int:
    """Make every held job due now (a worker starting: its settings may be fixed); return how many.

    Jobs that earlier versions marked failed for a missing setting are held ones too.
    """
    j = reminder_job.c
    stamp = now_text(now or datetime.now(timezone.utc))
    legacy = or_(*(j.last_error.like(p) for p in LEGACY_CONFIGURATION_FAILURES))
    with store.begin() as conn:  # type: ignore[attr-defined]
        done = conn.execute(update(reminder_job).where(
            j.status == "pending", j.last_error.like(f"{HELD_PREFIX}%"), j.due_at > stamp)
            .values(due_at=stamp))
        again = conn.execute(update(reminder_job).where(
            j.status == "failed", j.kind == "reminder", legacy)
            .values(status="pending", due_at=stamp, tries=0, failed_channels=None,
                    updated_at=stamp))
    return int(done.rowcount or 0) + int(again.rowcount or 0)


def failures(services: Any, *, limit: int = 100) -> list[dict[str, Any]]:
    """Return the reminders and alerts that failed for good, newest first."""
    j = reminder_job.c
    with services.store.engine.connect() as conn:
        rows = conn.execute(select(reminder_job).where(j.status == "failed")
                            .order_by(j.updated_at.desc()).limit(limit)).fetchall()
    return [{"id": r.id, "kind": r.kind, "task": r.task_id, "request": r.request_id,
             "patient": r.patient_id, "error": r.last_error, "tries": r.tries,
             "communication": r.communication_id, "at": r.updated_at} for r in rows]
