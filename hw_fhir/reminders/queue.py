"""The reminder queue: job rows, enqueuing (idempotent), claiming under a lease, finishing.

Work is queued in ``reminder_job`` (:mod:`hw_fhir.reminders.tables`). A worker claims a
batch of due rows (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, one statement)
under a lease. The idempotency key of an attempt is ``<job id>#<attempt>``
(:func:`attempt_key`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..assignment import OPEN_STATUSES
from .clock import now_text
from .tables import reminder_job

__all__ = ["ASAP", "HELD_PREFIX", "insert_jobs", "job_row", "reference_id", "is_homework_task",
           "attempt_key", "enqueue_plan", "stop_task_reminders", "enqueue_alert", "enqueue_message",
           "claim_jobs", "claim_job", "sent_channel", "finish_jobs"]

#: ``last_error`` prefix of a job held for a fix on our side
#: (:class:`~hw_fhir.errors.HeldDeliveryError`).
HELD_PREFIX = "held: "
_SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"


def _engine_store(store: Any) -> bool:
    return hasattr(store, "engine") and hasattr(store, "begin")


def insert_jobs(conn: Any, rows: list[dict[str, Any]]) -> int:
    """Insert job rows, skipping ids already queued; return how many were new."""
    if not rows:
        return 0
    dialect = conn.dialect.name
    if dialect == "postgresql":
        make: Any = pg_insert
    elif dialect == "sqlite":
        make = sqlite_insert
    else:  # pragma: no cover - other databases: one by one
        done = 0
        for row in rows:
            if conn.execute(select(reminder_job.c.id).where(reminder_job.c.id == row["id"])).first():
                continue
            conn.execute(insert(reminder_job).values(**row))
            done += 1
        return done
    # one cached statement, sent as multi-row VALUES batches ("insertmanyvalues"); RETURNING
    # gives the exact number of new rows
    stmt = (make(reminder_job).on_conflict_do_nothing(index_elements=["id"])
            .returning(reminder_job.c.id))
    return len(conn.execute(stmt, rows).fetchall())


#: ``due_at`` of jobs to do as soon as possible (plans, alerts, closing): before anything else.
ASAP = "0001-01-01T00:00:00.000000Z"


def job_row(id: str, *, kind: str, purpose: str, due: datetime | None, now: datetime,
            task_id: str | None = None, request_id: str | None = None,
            patient_id: str | None = None) -> dict[str, Any]:
    stamp = now_text(now)
    return dict(id=id, kind=kind, purpose=purpose, task_id=task_id, request_id=request_id,
                patient_id=patient_id, due_at=ASAP if due is None else now_text(due),
                status="pending", attempt=1,
                tries=0, channel=None, failed_channels=None, lease_until=None, worker=None,
                counted_at=None, last_error=None, communication_id=None, created_at=stamp,
                updated_at=stamp)


def reference_id(reference: str | None, resource_type: str) -> str | None:
    if not reference:
        return None
    prefix = f"{resource_type}/"
    return reference[len(prefix):] if reference.startswith(prefix) else None


def is_homework_task(task: Mapping[str, Any]) -> bool:
    return any(c.get("system") == _SDC_TEMP and c.get("code") == "complete-questionnaire"
               for c in (task.get("code") or {}).get("coding") or [])


def enqueue_plan(store: Any, task: Mapping[str, Any], *, now: datetime | None = None,
                 conn: Any = None) -> bool:
    """Queue the planning of a homework Task's reminders (idempotent); return True if new."""
    if not _engine_store(store) or not is_homework_task(task) or task.get("status") not in OPEN_STATUSES:
        return False
    moment = now or datetime.now(timezone.utc)
    row = job_row(f"plan/{task['id']}", kind="plan", purpose="plan", due=None, now=moment,
                  task_id=task["id"], patient_id=reference_id((task.get("for") or {}).get("reference"),
                                                              "Patient"))
    if conn is not None:
        return insert_jobs(conn, [row]) > 0
    with store.begin() as own:
        return insert_jobs(own, [row]) > 0


def stop_task_reminders(store: Any, task: Mapping[str, Any], *, now: datetime | None = None) -> int:
    """Cancel a closed Task's pending reminders and queue closing its plan; return how many."""
    if not _engine_store(store) or task.get("status") in OPEN_STATUSES:
        return 0
    moment = now or datetime.now(timezone.utc)
    with store.begin() as conn:
        done = conn.execute(
            update(reminder_job)
            .where(reminder_job.c.task_id == task["id"], reminder_job.c.kind.in_(("reminder", "plan")),
                   reminder_job.c.status == "pending")
            .values(status="cancelled", updated_at=now_text(moment),
                    last_error=f"Task {task.get('status')}"))
        insert_jobs(conn, [job_row(f"close/{task['id']}", kind="close", purpose="close",
                                   due=None, now=moment, task_id=task["id"])])
    return int(done.rowcount or 0)


def enqueue_alert(store: Any, request: Mapping[str, Any], *, now: datetime | None = None,
                  conn: Any = None, level: int = 0) -> bool:
    """Queue delivery of a clinician risk alert (CommunicationRequest); return True if new.

    ``level`` is the position of the recipient in the alert's escalation path
    (:mod:`hw_fhir.outcomes.escalation`): each level is its own job.
    """
    if not _engine_store(store) or request.get("status") != "active":
        return False
    moment = now or datetime.now(timezone.utc)
    job_id = f"alert/{request['id']}" + (f"/{level}" if level else "")
    row = job_row(job_id, kind="alert", purpose="risk-alert", due=None, now=moment,
                  request_id=request["id"],
                  patient_id=reference_id((request.get("subject") or {}).get("reference"), "Patient"))
    if conn is not None:
        return insert_jobs(conn, [row]) > 0
    with store.begin() as own:
        return insert_jobs(own, [row]) > 0


def enqueue_message(store: Any, message: Mapping[str, Any], *, now: datetime | None = None) -> str | None:
    """Queue the notification of a new secure message (idempotent); return the job's id.

    ``request_id`` holds the message's Communication id, ``patient_id`` its thread's
    patient (so the patient's dashboard shows a notification that cannot be sent).
    """
    if not _engine_store(store) or not message.get("id"):
        return None
    moment = now or datetime.now(timezone.utc)
    job_id = f"message/{message['id']}"
    row = job_row(job_id, kind="message", purpose="new-message", due=None, now=moment,
                  request_id=str(message["id"]),
                  patient_id=reference_id((message.get("subject") or {}).get("reference"), "Patient"))
    with store.begin() as conn:
        insert_jobs(conn, [row])
    return job_id


def sent_channel(store: Any, job_id: str) -> str | None:
    """Return the channel a job was sent by, or None when it is not sent."""
    j = reminder_job.c
    with store.engine.connect() as conn:
        row = conn.execute(select(j.status, j.channel).where(j.id == job_id)).first()
    return str(row.channel) if row is not None and row.status == "sent" and row.channel else None


def claim_job(store: Any, job_id: str, *, worker: str, lease_seconds: int,
              now: datetime | None = None) -> Any:
    """Claim one job by id if it is due (for sending it at once); return its row or None."""
    moment = now or datetime.now(timezone.utc)
    stamp = now_text(moment)
    j = reminder_job.c
    claim = (update(reminder_job)
             .where(j.id == job_id, or_(and_(j.status == "pending", j.due_at <= stamp),
                                        and_(j.status == "sending", j.lease_until < stamp)))
             .values(status="sending", worker=worker, updated_at=stamp,
                     lease_until=now_text(moment + timedelta(seconds=lease_seconds))))
    with store.begin() as conn:
        return conn.execute(claim.returning(*reminder_job.c)).first()


def claim_jobs(store: Any, *, worker: str, limit: int, lease_seconds: int,
               now: datetime | None = None) -> list[Any]:
    """Claim up to ``limit`` due jobs (and jobs whose worker's lease ran out) for ``worker``.

    One statement. PostgreSQL: the due rows and the expired leases are each read in
    ``due_at`` order from the ``(status, due_at)`` index, ``FOR UPDATE SKIP LOCKED``
    (so concurrent workers never claim the same row, and a claim reads ``limit`` rows
    however long the backlog), then updated with ``RETURNING``. SQLite: the claim runs
    in a ``BEGIN IMMEDIATE`` transaction. Return the claimed rows, the oldest due first.
    """
    moment = now or datetime.now(timezone.utc)
    stamp = now_text(moment)
    lease = now_text(moment + timedelta(seconds=lease_seconds))
    j = reminder_job.c
    pending = and_(j.status == "pending", j.due_at <= stamp)
    expired = and_(j.status == "sending", j.lease_until < stamp)
    claim = update(reminder_job).values(status="sending", lease_until=lease, worker=worker,
                                        updated_at=stamp)
    with store.begin() as conn:
        if conn.dialect.name == "postgresql":
            # each part materialized: its locking scan runs once, whatever the plan
            parts = [select(j.id, j.due_at).where(cond).order_by(j.due_at).limit(limit)
                     .with_for_update(skip_locked=True).cte(name).prefix_with("MATERIALIZED")
                     for name, cond in (("due", pending), ("expired", expired))]
            both = union_all(*(select(part.c.id, part.c.due_at) for part in parts)).subquery()
            chosen = select(both.c.id).order_by(both.c.due_at).limit(limit).subquery("chosen")
            claim = claim.where(j.id == chosen.c.id)
        else:
            claim = claim.where(j.id.in_(select(j.id).where(or_(pending, expired))
                                         .order_by(j.due_at).limit(limit).scalar_subquery()))
        claimed = conn.execute(claim.returning(*reminder_job.c)).fetchall()
    return sorted(claimed, key=lambda row: (row.due_at, row.id))


def finish_jobs(conn: Any, worker: str, now: datetime,
                updates: Iterable[tuple[Any, Mapping[str, Any]]]) -> int:
    """Update claimed jobs this worker still holds; return how many it updated.

    One ``executemany`` per set of changed columns. The lease ends unless the values
    set ``lease_until``.
    """
    j = reminder_job.c
    stamp = now_text(now)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for job, values in updates:
        row = {"lease_until": None, **values, "updated_at": stamp}
        groups.setdefault(tuple(sorted(row)), []).append(
            {"job_id": job.id, **{f"new_{k}": v for k, v in row.items()}})
    done = 0
    for columns, params in groups.items():
        stmt = (update(reminder_job)
                .where(j.id == bindparam("job_id"), j.status == "sending", j.worker == worker)
                .values({column: bindparam(f"new_{column}") for column in columns}))
        done += max(conn.execute(stmt, params).rowcount, 0)
    return done


def attempt_key(job: Any) -> str:
    return f"{job.id}#{job.attempt}"
