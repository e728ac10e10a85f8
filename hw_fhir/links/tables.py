"""Database table of secure patient links (SQLAlchemy Core), sharing the store's metadata.

``patient_link``: every secure patient link issued: the Task and Patient it opens,
its expiry, whether it needs the birth date, and ``revoked_at`` (the revocation
record). The token carries only the random ``id`` and the expiry, signed
(:mod:`hw_fhir.links.tokens`). Instants are Unix seconds. Changes go through Alembic
(``hw_fhir/migrations/versions/0003_reminders.py``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table

from ..store.schema import metadata

__all__ = ["patient_link"]

patient_link = Table(
    "patient_link",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("task_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("birth_date_check", Boolean, nullable=False),
    Column("failed_checks", Integer, nullable=False, default=0),
    Column("revoked_at", BigInteger, nullable=True),
    Column("revoked_reason", String(64), nullable=True),
    Column("opened_at", BigInteger, nullable=True),
    Index("ix_patient_link_task", "task_id"),
    Index("ix_patient_link_patient", "patient_id"),
)
