"""Health-system sync: $export jobs, write-sequence cursors, subscriptions, the EHR outbox.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

_id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "sync_export_job",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("access", sa.Text, nullable=True),
        sa.Column("transaction_time", sa.String(32), nullable=True),
        sa.Column("progress", sa.String(255), nullable=True),
        sa.Column("manifest", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
    )
    op.create_index("ix_sync_export_job_status", "sync_export_job", ["status", "created_at"])
    op.create_index("ix_sync_export_job_client", "sync_export_job", ["client_id", "status"])
    op.create_table(
        "sync_cursor",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "sync_subscription",
        sa.Column("sub_id", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("start_seq", sa.BigInteger, nullable=False),
        sa.Column("cursor_seq", sa.BigInteger, nullable=False),
        sa.Column("events_total", sa.BigInteger, nullable=False),
        sa.Column("delivered_through", sa.BigInteger, nullable=False),
        sa.Column("handshake_done", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_sent_at", sa.Float, nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "sync_subscription_event",
        sa.Column("sub_id", sa.String(64), nullable=False),
        sa.Column("event_number", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("occurred", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("sub_id", "event_number", name="pk_sync_subscription_event"),
    )
    op.create_table(
        "sync_outbox",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column("ehr", sa.String(128), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("remote_ref", sa.String(512), nullable=True),
        sa.UniqueConstraint("ehr", "res_type", "res_id", name="uq_sync_outbox_resource"),
    )
    op.create_index("ix_sync_outbox_due", "sync_outbox", ["ehr", "status", "next_attempt_at"])


def downgrade() -> None:
    for name in ("sync_outbox", "sync_subscription_event", "sync_subscription", "sync_cursor",
                 "sync_export_job"):
        op.drop_table(name)
