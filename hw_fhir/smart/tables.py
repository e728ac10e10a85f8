"""Database tables of the SMART layer (SQLAlchemy Core), sharing the store's metadata.

App side (hw-fhir as a SMART client):

* ``smart_web_session``: server-side browser sessions; the cookie holds only a
  random id, the table its SHA-256 and the session data.
* ``smart_launch``: one row per launch (pending → active), bound to a browser
  session; ``data`` is the sealed (encrypted) launch state, tokens included.

Authorization-server side (the sandbox EHR, and the tokens /fhir accepts):

* ``smart_auth_launch``: EHR launch ids and the context they stand for.
* ``smart_auth_code``: authorization codes (hashed), single use.
* ``smart_token``: issued access/refresh tokens (hashed) with scope and context;
  ``code_hash`` names the token family (the authorization code the grant began with,
  carried over on every refresh), so reuse or revocation can end the whole family.
* ``smart_jti``: client-assertion ids already seen (replay protection).

Times are integer Unix seconds. Changes go through Alembic
(``hw_fhir/migrations/versions/0002_smart.py``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, PrimaryKeyConstraint, String, Table, Text

from ..store.schema import metadata

__all__ = [
    "smart_web_session",
    "smart_launch",
    "smart_auth_launch",
    "smart_auth_code",
    "smart_token",
    "smart_jti",
]

smart_web_session = Table(
    "smart_web_session",
    metadata,
    Column("sid_hash", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_smart_web_session_expires", "expires_at"),
)

smart_launch = Table(
    "smart_launch",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("session_hash", String(64), nullable=False),
    Column("state_hash", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),  # pending | exchanging | active | failed
    Column("iss", String(512), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_smart_launch_session", "session_hash"),
    Index("ix_smart_launch_expires", "expires_at"),
)

smart_auth_launch = Table(
    "smart_auth_launch",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_smart_auth_launch_expires", "expires_at"),
)

smart_auth_code = Table(
    "smart_auth_code",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(255), nullable=False),
    Column("data", Text, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
    Index("ix_smart_auth_code_expires", "expires_at"),
)

smart_token = Table(
    "smart_token",
    metadata,
    Column("access_hash", String(64), primary_key=True),
    Column("refresh_hash", String(64), nullable=True, unique=True),
    Column("client_id", String(255), nullable=False),
    Column("scope", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("code_hash", String(64), nullable=True),
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("refresh_expires_at", BigInteger, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Index("ix_smart_token_code", "code_hash"),
    Index("ix_smart_token_expires", "expires_at"),
)

smart_jti = Table(
    "smart_jti",
    metadata,
    Column("client_id", String(255), nullable=False),
    Column("jti", String(255), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("client_id", "jti", name="pk_smart_jti"),
    Index("ix_smart_jti_expires", "expires_at"),
)
