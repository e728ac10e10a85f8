"""Search (PostgreSQL): string values in code-point order, so a prefix search seeks.

``Patient?family=smi`` is ``value LIKE 'smi%'`` and the code-point range
``'smi' <= value < 'smj'``. PostgreSQL seeks a btree by a range in the column's own
collation, and only under "C" is that order code-point (UTF-8 byte) order, where the range
holds exactly the values starting with the prefix; the database default (C.UTF-8 here, a
linguistic locale elsewhere) is not known to the planner to be so. At 1 000 000 Patients
``Patient?family&_count=20`` read every family name of the type (108–221 ms). Declaring
``sp_string.value`` ``COLLATE "C"`` rebuilds ``ix_sp_string_value`` in that order (the
table is not rewritten). The stored values are normalised (lower-case, accents stripped),
so ``_sort`` by a string parameter orders as on SQLite, whose BINARY collation is
code-point order too. Nothing on SQLite.

Revision ID: 0009_string_c
Revises: 0008_sp_stats
Create Date: 2026-12-07
"""

from alembic import op

revision = "0009_string_c"
down_revision = "0008_sp_stats"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute('ALTER TABLE sp_string ALTER COLUMN value TYPE VARCHAR(255) COLLATE "C"')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute('ALTER TABLE sp_string ALTER COLUMN value TYPE VARCHAR(255) COLLATE "default"')
