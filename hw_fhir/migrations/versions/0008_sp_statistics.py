"""Search (PostgreSQL): statistics of the search-index columns taken together.

PostgreSQL estimates ``res_type = 'Observation' AND param = 'code' AND code = '29463-7'``
as the product of each column's own selectivity, but the columns depend on each other
(a code belongs to one parameter of one type), so it guessed 2 746 rows for 47 000 at
240 000 Observations and planned the search for the small number. A multivariate
most-common-values list (``CREATE STATISTICS … (mcv)``) over each index table's key
columns gives it the combined frequencies; ANALYZE (the store's statistics keeper) fills
it. Nothing on SQLite.

Revision ID: 0008_sp_stats
Revises: 0006
Create Date: 2026-12-07
"""

from alembic import op

revision = "0008_sp_stats"
down_revision = "0006"
branch_labels = None
depends_on = None

#: statistics object -> (table, columns): the value index's leading columns
STATISTICS = {
    "st_sp_token_value": ("sp_token", "res_type, param, code, system"),
    "st_sp_reference_value": ("sp_reference", "res_type, param, target_type"),
    "st_sp_string_value": ("sp_string", "res_type, param"),
    "st_sp_date_value": ("sp_date", "res_type, param"),
    "st_sp_uri_value": ("sp_uri", "res_type, param, value"),
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # mcv needs PostgreSQL 12; before it, functional dependencies are what there is
    kind = "mcv, dependencies" if bind.dialect.server_version_info >= (12,) else "dependencies"
    for name, (table, columns) in STATISTICS.items():
        op.execute(f"CREATE STATISTICS IF NOT EXISTS {name} ({kind}) ON {columns} FROM {table}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in STATISTICS:
        op.execute(f"DROP STATISTICS IF EXISTS {name}")
