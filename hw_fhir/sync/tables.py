"""Database tables of health-system sync (SQLAlchemy Core), sharing the store's metadata.

* ``sync_export_job``: Bulk Data ``$export`` jobs (who asked, what, progress, manifest).
* ``sync_cursor``: how far a consumer of the write sequence (``resource_version.seq``)
  has read, e.g. ``outbox:<ehr>``.
* ``sync_subscription`` / ``sync_subscription_event``: delivery state of each
  topic-based Subscription and the numbered events derived for it.
* ``sync_outbox``: EHR write-back records, one per (EHR, resource), delivered by the worker.

Times are Unix seconds (float); FHIR instants are text like the store's.
Changes go through Alembic (``hw_fhir/migrations/versions/0004_sync.py``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ..store.schema import metadata

__all__ = ["sync_export_job", "sync_cursor", "sync_subscription", "sync_subscription_event",
           "sync_outbox"]

_Id = BigInteger().with_variant(Integer, "sqlite")

sync_export_job = Table(
    "sync_export_job",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("client_id", String(255), nullable=False),
    # accepted in-progress completed failed cancelled expired
    Column("status", String(16), nullable=False),
    Column("request", Text, nullable=False),  # JSON of the ExportRequest
    Column("access", Text, nullable=True),  # JSON {scope, client_id, context}; null: unrestricted
    Column("transaction_time", String(32), nullable=True),
    Column("progress", String(255), nullable=True),
    Column("manifest", Text, nullable=True),  # JSON: output / deleted / error file lists
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("lease_until", Float, nullable=True),
    Index("ix_sync_export_job_status", "status", "created_at"),
    Index("ix_sync_export_job_client", "client_id", "status"),
)

sync_cursor = Table(
    "sync_cursor",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)

sync_subscription = Table(
    "sync_subscription",
    metadata,
    Column("sub_id", String(64), primary_key=True),
    Column("version_id", Integer, nullable=False),  # the Subscription version ``config`` comes from
    Column("topic", String(512), nullable=False),
    Column("status", String(16), nullable=False),  # requested active error off
    Column("config", Text, nullable=False),  # JSON: endpoint, headers, filters, heartbeat...
    Column("start_seq", BigInteger, nullable=False),
    Column("cursor_seq", BigInteger, nullable=False),
    Column("events_total", BigInteger, nullable=False),
    Column("delivered_through", BigInteger, nullable=False),
    Column("handshake_done", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_sent_at", Float, nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)

sync_subscription_event = Table(
    "sync_subscription_event",
    metadata,
    Column("sub_id", String(64), nullable=False),
    Column("event_number", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("method", String(8), nullable=False),
    Column("occurred", String(32), nullable=False),
    PrimaryKeyConstraint("sub_id", "event_number", name="pk_sync_subscription_event"),
)

sync_outbox = Table(
    "sync_outbox",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("ehr", String(128), nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # pending delivered failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("remote_ref", String(512), nullable=True),
    UniqueConstraint("ehr", "res_type", "res_id", name="uq_sync_outbox_resource"),
    Index("ix_sync_outbox_due", "ehr", "status", "next_attempt_at"),
)
