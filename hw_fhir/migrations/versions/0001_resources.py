"""Resources, their versions and the search index tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_seq = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _sp(name: str, *cols: sa.Column, value_index: tuple[str, ...]) -> None:
    op.create_table(
        name,
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        *cols,
    )
    op.create_index(f"ix_{name}_value", name, ["res_type", "param", *value_index])
    op.create_index(f"ix_{name}_resource", name, ["res_type", "res_id", "param"])


def upgrade() -> None:
    op.create_table(
        "resource_version",
        sa.Column("seq", _seq, primary_key=True, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.String(32), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", sa.Text, nullable=True),
        sa.UniqueConstraint("res_type", "res_id", "version_id", name="uq_resource_version"),
    )
    op.create_index("ix_resource_version_updated", "resource_version", ["last_updated"])
    op.create_index("ix_resource_version_type_seq", "resource_version", ["res_type", "seq"])
    op.create_table(
        "resource",
        sa.Column("res_type", sa.String(64), primary_key=True),
        sa.Column("res_id", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.String(32), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", sa.Text, nullable=True),
    )
    op.create_index("ix_resource_type_updated", "resource", ["res_type", "last_updated"])
    _sp("sp_token", sa.Column("system", sa.String(255), nullable=True),
        sa.Column("code", sa.String(255), nullable=False), value_index=("code", "system"))
    _sp("sp_reference", sa.Column("target_type", sa.String(64), nullable=True),
        sa.Column("target_id", sa.String(64), nullable=True),
        sa.Column("url", sa.String(512), nullable=True), value_index=("target_id", "target_type"))
    _sp("sp_string", sa.Column("value", sa.String(255), nullable=False),
        sa.Column("exact", sa.String(255), nullable=False), value_index=("value",))
    _sp("sp_date", sa.Column("low", sa.String(32), nullable=False),
        sa.Column("high", sa.String(32), nullable=False), value_index=("low", "high"))
    _sp("sp_uri", sa.Column("value", sa.String(512), nullable=False), value_index=("value",))


def downgrade() -> None:
    for name in ("sp_uri", "sp_date", "sp_string", "sp_reference", "sp_token", "resource",
                 "resource_version"):
        op.drop_table(name)
