"""SQL statements and statement pieces of the SqlStore, built once at import.

Building a SQLAlchemy ``Column``, alias or ``select`` costs more than running a small
query on SQLite, so what every read or search uses is built here once and only bound
to values at each use (SQLAlchemy finds the compiled SQL in its cache).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, literal_column, select

from . import schema as S

__all__ = ["READ", "VREAD", "READ_SQLITE", "PLUS_LAST_UPDATED", "PLUS_RES_ID", "ROWID",
           "FETCHED", "FETCHED_ROWID", "FETCH_BY_ROWID", "Unindexed"]

#: Read by id and by version: built once, so each read only binds its values (SQLAlchemy
#: finds the compiled SQL in its cache without building and hashing a new statement).
READ = (select(S.resource.c.version_id, S.resource.c.last_updated, S.resource.c.deleted,
                S.resource.c.content)
         .where(S.resource.c.res_type == bindparam("rtype"), S.resource.c.res_id == bindparam("id")))
VREAD = (select(S.resource_version.c.last_updated, S.resource_version.c.deleted,
                 S.resource_version.c.method, S.resource_version.c.content)
          .where(S.resource_version.c.res_type == bindparam("rtype"),
                 S.resource_version.c.res_id == bindparam("id"),
                 S.resource_version.c.version_id == bindparam("vid")))

#: Pieces of every SQLite search, built once (a ``Column`` or alias costs more to build
#: than the rest of a small search): the cursor columns SQLite must not take an index
#: for, the row id the page is sorted by, and the fetch of the page's rows by row id.
PLUS_LAST_UPDATED = literal_column(f"+{S.resource.name}.last_updated",
                                    type_=S.resource.c.last_updated.type)
PLUS_RES_ID = literal_column(f"+{S.resource.name}.res_id", type_=S.resource.c.res_id.type)
ROWID = literal_column(f"{S.resource.name}.rowid")
FETCHED = S.resource.alias("fetched")
FETCHED_ROWID = literal_column("fetched.rowid")
FETCH_BY_ROWID = select(FETCHED.c.res_id, FETCHED.c.version_id, FETCHED.c.last_updated,
                         FETCHED.c.content)

#: The same read by id as SQL text for the sqlite3 connection (columns in ``READ``'s order).
READ_SQLITE = ("SELECT version_id, last_updated, deleted, content FROM resource "
                "WHERE res_type = ? AND res_id = ?")


class Unindexed:
    """Columns of an index table as ``+table.col`` (SQLite will not use an index for them)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def __getattr__(self, name: str) -> Any:
        column = self._table.c[name]
        return literal_column(f"+{self._table.name}.{name}", type_=column.type)
