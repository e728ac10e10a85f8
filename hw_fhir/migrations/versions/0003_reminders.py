"""Reminders: the work queue, its state, and secure patient links.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reminder_job",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("due_at", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("failed_channels", sa.String(255), nullable=True),
        sa.Column("lease_until", sa.String(32), nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("counted_at", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("communication_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_reminder_job_due", "reminder_job", ["status", "due_at"])
    op.create_index("ix_reminder_job_task", "reminder_job", ["task_id"])
    op.create_index("ix_reminder_job_patient", "reminder_job", ["patient_id", "counted_at"])
    op.create_table(
        "reminder_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "patient_link",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("birth_date_check", sa.Boolean, nullable=False),
        sa.Column("failed_checks", sa.Integer, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("revoked_reason", sa.String(64), nullable=True),
        sa.Column("opened_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_patient_link_task", "patient_link", ["task_id"])
    op.create_index("ix_patient_link_patient", "patient_link", ["patient_id"])


def downgrade() -> None:
    for name in ("patient_link", "reminder_state", "reminder_job"):
        op.drop_table(name)
