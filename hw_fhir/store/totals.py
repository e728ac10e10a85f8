"""Bundle.total of a search, at a cost bounded by :data:`TOTAL_CAP` unless asked for exactly.

A total is a count of every match, so an exact one costs O(matches): at 1 000 000
Observations, ``Observation?code=X&date=ge…`` matches about 100 000 and counting them
takes longer than the page itself by two orders of magnitude. FHIR leaves ``Bundle.total``
to the server unless the client asks (``_total``), so:

* ``_total=accurate`` (and ``_summary=count`` without ``_total``): the exact count;
* no ``_total``: counted up to :data:`TOTAL_CAP` matches; the exact count when there are no
  more, otherwise no total (the ``next`` link still says there is more);
* ``_total=estimate``: the same, and beyond the cap PostgreSQL's planner estimate of the
  matches (SQLite has none to give: no total);
* ``_total=none``: no count at all (decided by the caller).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, func, literal_column, select

from . import schema as S

__all__ = ["TOTAL_CAP", "count_matches"]

#: Matches counted at most for a total nobody asked to be exact (bounds the count's cost).
TOTAL_CAP = 2000


def count_matches(conn: Connection, where: list[Any], mode: str | None) -> int | None:
    """The total for the conditions ``where`` on the resource table, as ``mode`` asks.

    ``mode`` is the query's ``_total`` (None when the client did not say).
    """
    if mode == "accurate":
        return int(conn.execute(
            select(func.count()).select_from(S.resource).where(*where)).scalar_one())
    capped = select(literal_column("1")).select_from(S.resource).where(*where).limit(TOTAL_CAP + 1)
    found = int(conn.execute(select(func.count()).select_from(capped.subquery())).scalar_one())
    if found <= TOTAL_CAP:
        return found
    if mode == "estimate" and conn.dialect.name == "postgresql":
        return _planner_estimate(conn, where)
    return None


def _planner_estimate(conn: Connection, where: list[Any]) -> int | None:
    """PostgreSQL's estimate of the rows matching ``where`` (from ``EXPLAIN``, nothing run)."""
    stmt = select(literal_column("1")).select_from(S.resource).where(*where)
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.cursor()  # the driver's: no parameters, nothing to interpolate
    try:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
    finally:
        cursor.close()
    if isinstance(plan, (str, bytes)):
        plan = orjson.loads(plan)
    rows = plan[0]["Plan"].get("Plan Rows")
    return max(int(rows), TOTAL_CAP + 1) if rows is not None else None
