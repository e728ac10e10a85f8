"""Web Push: the patients' push subscriptions (hw_fhir.push).

Revision ID: 0007_web_push
Revises: 0002
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_web_push"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "push_subscription",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("p256dh", sa.String(128), nullable=False),
        sa.Column("auth", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("last_sent_at", sa.String(32), nullable=True),
    )
    op.create_index("ix_push_subscription_patient", "push_subscription", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_push_subscription_patient", table_name="push_subscription")
    op.drop_table("push_subscription")
