"""Audit trail: AuditEvents (append-only) and the references each names, for search.

Revision ID: 0016audit
Revises: 0001
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0016audit"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("recorded", sa.String(32), nullable=False),
        sa.Column("type", sa.String(160), nullable=False),
        sa.Column("subtype", sa.String(160), nullable=False),
        sa.Column("action", sa.String(1), nullable=False),
        sa.Column("outcome", sa.String(2), nullable=False),
        sa.Column("agent", sa.String(255), nullable=True),
        sa.Column("client", sa.String(255), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("content", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_event_recorded", "audit_event", ["recorded"])
    op.create_index("ix_audit_event_agent", "audit_event", ["agent", "recorded"])
    op.create_table(
        "audit_entity",
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(160), nullable=False),
        sa.Column("patient", sa.Boolean, nullable=False),
    )
    op.create_index("ix_audit_entity_reference", "audit_entity", ["reference", "patient", "event_id"])
    op.create_index("ix_audit_entity_event", "audit_entity", ["event_id"])


def downgrade() -> None:
    op.drop_table("audit_entity")
    op.drop_table("audit_event")
