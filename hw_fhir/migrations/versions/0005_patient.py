"""Patient pages: failed attempts at secure links and birth dates, for rate limiting.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_attempt",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_patient_attempt_lookup", "patient_attempt", ["kind", "key_hash", "at"])


def downgrade() -> None:
    op.drop_index("ix_patient_attempt_lookup", table_name="patient_attempt")
    op.drop_table("patient_attempt")
