"""SMART on FHIR: browser sessions, launches, and the authorization server's codes and tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "smart_web_session",
        sa.Column("sid_hash", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_smart_web_session_expires", "smart_web_session", ["expires_at"])
    op.create_table(
        "smart_launch",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("state_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("iss", sa.String(512), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_smart_launch_session", "smart_launch", ["session_hash"])
    op.create_index("ix_smart_launch_expires", "smart_launch", ["expires_at"])
    op.create_table(
        "smart_auth_launch",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_smart_auth_launch_expires", "smart_auth_launch", ["expires_at"])
    op.create_table(
        "smart_auth_code",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("used_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_smart_auth_code_expires", "smart_auth_code", ["expires_at"])
    op.create_table(
        "smart_token",
        sa.Column("access_hash", sa.String(64), primary_key=True),
        sa.Column("refresh_hash", sa.String(64), nullable=True, unique=True),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("refresh_expires_at", sa.BigInteger, nullable=True),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_index("ix_smart_token_code", "smart_token", ["code_hash"])
    op.create_index("ix_smart_token_expires", "smart_token", ["expires_at"])
    op.create_table(
        "smart_jti",
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("jti", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name="pk_smart_jti"),
    )
    op.create_index("ix_smart_jti_expires", "smart_jti", ["expires_at"])


def downgrade() -> None:
    for name in ("smart_jti", "smart_token", "smart_auth_code", "smart_auth_launch",
                 "smart_launch", "smart_web_session"):
        op.drop_table(name)
