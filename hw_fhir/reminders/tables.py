"""Database tables of the reminder queue (SQLAlchemy Core), sharing the store's metadata.

* ``reminder_job``: the work queue. One row per thing to do at ``due_at``: plan the
  reminders of a Task (``kind`` ``plan``), send one reminder (``reminder``), deliver
  one clinician alert (``alert``) or close a finished Task's reminder plan
  (``close``). ``id`` is a stable key (``reminder/<task>/<purpose>``...), so enqueuing
  twice does nothing. Workers claim ``pending`` rows that are due (and ``sending`` rows
  whose ``lease_until`` passed: a worker died) with ``SELECT … FOR UPDATE SKIP
  LOCKED`` on PostgreSQL. ``attempt`` numbers the idempotency key of the current send
  attempt (``<id>#<attempt>``); it grows only after an attempt is known to have
  failed, so a retry after a crash reuses the key. ``tries`` counts for backoff.
  ``counted_at`` is when a reminder counted towards its patient's daily limit.
* ``reminder_state``: small key/value state (the Task discovery cursor).

The secure links' table ``patient_link`` is in :mod:`hw_fhir.links.tables`.
Instants are text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC), like the store's. Changes
go through Alembic (``hw_fhir/migrations/versions/0003_reminders.py``).
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from ..store.schema import metadata

__all__ = ["reminder_job", "reminder_state"]

reminder_job = Table(
    "reminder_job",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("kind", String(16), nullable=False),  # plan | reminder | alert | close | message
    Column("purpose", String(32), nullable=False),
    Column("task_id", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("patient_id", String(64), nullable=True),
    Column("due_at", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # pending|sending|sent|failed|cancelled|skipped
    Column("attempt", Integer, nullable=False, default=1),
    Column("tries", Integer, nullable=False, default=0),
    Column("channel", String(64), nullable=True),
    Column("failed_channels", String(255), nullable=True),
    Column("lease_until", String(32), nullable=True),
    Column("worker", String(128), nullable=True),
    Column("counted_at", String(32), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("communication_id", String(64), nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Index("ix_reminder_job_due", "status", "due_at"),
    Index("ix_reminder_job_task", "task_id"),
    Index("ix_reminder_job_patient", "patient_id", "counted_at"),
)

reminder_state = Table(
    "reminder_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
