"""Search: an index on the end of indexed dates, for ``ge``/``gt``/``sa`` searches.

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sp_date_high", "sp_date", ["res_type", "param", "high"])


def downgrade() -> None:
    op.drop_index("ix_sp_date_high", table_name="sp_date")
