"""Search: the default page order's index holds the whole order, (type, lastUpdated, id).

A page in the default order is sorted by ``last_updated, res_id``. ``ix_resource_type_updated``
held ``(res_type, last_updated)``, so walking it in page order needed a sort for the ties:
on SQLite a "temp b-tree for right part of order by", on PostgreSQL an Incremental Sort, or a
full Sort of everything after a page cursor when the planner expected few rows there (its
estimate for ``res_type = … AND last_updated >= …`` takes the two as independent). A filter
matching many resources is checked while this index is walked (``SqlStore._page``), so a Sort
there would read every resource of the type after the cursor. With ``res_id`` in the index
the walk is in page order as read, on both databases. Rebuilt under the same name.

Revision ID: 0010_type_upd_id
Revises: 0009_string_c
Create Date: 2026-12-07
"""

from alembic import op

revision = "0010_type_upd_id"
down_revision = "0009_string_c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_resource_type_updated", table_name="resource")
    op.create_index("ix_resource_type_updated", "resource", ["res_type", "last_updated", "res_id"])


def downgrade() -> None:
    op.drop_index("ix_resource_type_updated", table_name="resource")
    op.create_index("ix_resource_type_updated", "resource", ["res_type", "last_updated"])
