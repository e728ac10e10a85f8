"""Database upkeep after bulk writes: fresh planner statistics on PostgreSQL.

PostgreSQL plans a search from table statistics. Right after a bulk load into new or
small tables those statistics say "almost no rows", and the planner may check a second
search parameter by scanning every index row of that parameter for each candidate
(seconds instead of milliseconds for a clinician with a few thousand Tasks).
Autovacuum refreshes them within about a minute; :func:`refresh_statistics` does it at
once and is run by ``hw-fhir load``. SQLite needs nothing: the store probes which filter
matches the fewest rows before each search.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from . import schema as S

__all__ = ["refresh_statistics"]


def refresh_statistics(store: Any) -> bool:
    """ANALYZE the resource and search-index tables on PostgreSQL; return whether it ran."""
    engine = getattr(store, "engine", None)
    if engine is None or engine.dialect.name != "postgresql":
        return False
    tables = [S.resource.name, *(table.name for table in S.SP_TABLES.values())]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in tables:
            conn.execute(text(f'ANALYZE "{name}"'))
    return True
