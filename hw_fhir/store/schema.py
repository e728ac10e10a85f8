"""Database tables of the SqlStore (SQLAlchemy Core), the same on SQLite and PostgreSQL.

* ``resource_version`` is the history: one row per version (create, update, delete),
  ``seq`` increases with every write across the whole store.
* ``resource`` is the current version of each resource (``deleted`` once deleted).
* ``sp_*`` tables index the search parameters of the current versions.

Instants are stored as text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC) so that text
order is time order on both databases. Changes go through Alembic migrations in
``hw_fhir/migrations``; never edit a table here without adding a migration.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["metadata", "resource", "resource_version", "sp_token", "sp_reference",
           "sp_string", "sp_date", "sp_uri", "SP_TABLES"]

metadata = MetaData()

_SeqType = BigInteger().with_variant(Integer, "sqlite")

resource_version = Table(
    "resource_version",
    metadata,
    Column("seq", _SeqType, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(32), nullable=False),
    Column("method", String(8), nullable=False),  # POST | PUT | DELETE
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    UniqueConstraint("res_type", "res_id", "version_id", name="uq_resource_version"),
    Index("ix_resource_version_updated", "last_updated"),
    Index("ix_resource_version_type_seq", "res_type", "seq"),
)

resource = Table(
    "resource",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(32), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    # the default page order whole (migration 0010): a walk in page order needs no sort
    Index("ix_resource_type_updated", "res_type", "last_updated", "res_id"),
)


def _sp_table(name: str, *value_columns: Column, value_index: tuple[str, ...]) -> Table:
    return Table(
        name,
        metadata,
        Column("res_type", String(64), nullable=False),
        Column("res_id", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *value_columns,
        Index(f"ix_{name}_value", "res_type", "param", *value_index),
        Index(f"ix_{name}_resource", "res_type", "res_id", "param"),
    )


sp_token = _sp_table(
    "sp_token",
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=False),
    value_index=("code", "system"),
)
sp_reference = _sp_table(
    "sp_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("url", String(512), nullable=True),
    value_index=("target_id", "target_type"),
)
# code-point order on PostgreSQL too (migration 0009): a prefix search seeks the value index
# by the range ``prefix <= value < successor(prefix)``
sp_string = _sp_table("sp_string",
                      Column("value", String(255).with_variant(String(255, collation="C"),
                                                               "postgresql"), nullable=False),
                      Column("exact", String(255), nullable=False), value_index=("value",))
sp_date = _sp_table(
    "sp_date",
    Column("low", String(32), nullable=False),
    Column("high", String(32), nullable=False),
    value_index=("low", "high"),
)
# ``ge``/``gt``/``sa`` compare the end of the period: a search such as Task?due=ge… can
# then seek instead of reading every due date of the type
Index("ix_sp_date_high", sp_date.c.res_type, sp_date.c.param, sp_date.c.high)
sp_uri = _sp_table("sp_uri", Column("value", String(512), nullable=False),
                   value_index=("value",))

SP_TABLES = {
    "token": sp_token,
    "reference": sp_reference,
    "string": sp_string,
    "date": sp_date,
    "uri": sp_uri,
}
