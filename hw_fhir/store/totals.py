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

The capped count must stop after the cap, not merely return it: SQLite evaluates the
driving filter ``res_id IN (SELECT …)`` by first building the list of every res_id the
filter matches (550 000 for ``date=ge…`` at 1 000 000 Observations), so there the capped
count walks the driving filter's index rows as the outer loop instead (one
``DISTINCT res_id`` per resource, the resource and the other filters checked per row) and
stops at the cap.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, exists, func, literal_column, select
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression
from sqlalchemy.sql.selectable import ScalarSelect, Select

from . import schema as S

__all__ = ["TOTAL_CAP", "count_matches", "literal_sql", "planner_rows"]

#: Matches counted at most for a total nobody asked to be exact: the count reads about
#: TOTAL_CAP / (share of the driving rows that pass the other filters) rows; at 1 000 000
#: Observations a cap of 1 000 read 9 000 rows on PostgreSQL (230 ms, data beyond shared_buffers).
TOTAL_CAP = 100


def count_matches(conn: Connection, where: list[Any], mode: str | None, *,
                  beyond_cap: bool = False) -> int | None:
    """The total for the conditions ``where`` on the resource table, as ``mode`` asks.

    ``mode`` is the query's ``_total`` (None when the client did not say). ``beyond_cap``:
    the caller already found more than :data:`TOTAL_CAP` matches (no capped count then).
    """
    if mode == "accurate":
        return int(conn.execute(
            select(func.count()).select_from(S.resource).where(*where)).scalar_one())
    if beyond_cap:
        return _beyond(conn, where, mode)
    capped = None
    if conn.dialect.name == "sqlite":
        capped = _driven_by_filter(where)
    if capped is None:
        capped = select(literal_column("1")).select_from(S.resource).where(*where)
    found = int(conn.execute(select(func.count()).select_from(
        capped.limit(TOTAL_CAP + 1).subquery())).scalar_one())
    if found <= TOTAL_CAP:
        return found
    return _beyond(conn, where, mode)


def _beyond(conn: Connection, where: list[Any], mode: str | None) -> int | None:
    """The total of more than TOTAL_CAP matches: none, or PostgreSQL's estimate if asked."""
    if mode == "estimate" and conn.dialect.name == "postgresql":
        return _planner_estimate(conn, where)
    return None


def _driven_by_filter(where: list[Any]) -> Select | None:
    """``where``'s matches with its driving filter's index rows as the outer loop, or None.

    ``resource.res_id IN (SELECT res_id FROM sp_x WHERE …)`` becomes
    ``SELECT DISTINCT d.res_id FROM (SELECT res_id FROM sp_x WHERE …) AS d WHERE EXISTS
    (SELECT 1 FROM resource WHERE resource.res_id = d.res_id AND <the rest of where>)``,
    which SQLite runs row by row (the subquery is flattened), so a LIMIT stops it early.
    """
    drive = None
    for n, cond in enumerate(where):
        if (isinstance(cond, BinaryExpression) and cond.operator is operators.in_op
                and cond.left is S.resource.c.res_id and isinstance(cond.right, ScalarSelect)
                and isinstance(cond.right.element, Select)):
            drive = n
            break
    if drive is None:
        return None
    source = where[drive].right.element.subquery("d")
    rest = [c for n, c in enumerate(where) if n != drive]
    # DISTINCT of an expression: by the column itself SQLite would walk the res_id-ordered
    # index of every row of the type (to skip the sorter) instead of seeking the filter
    return (select((source.c.res_id + literal_column("''")).label("res_id")).distinct()
            .where(exists(select(literal_column("1")).select_from(S.resource)
                          .where(S.resource.c.res_id == source.c.res_id, *rest))))


def _planner_estimate(conn: Connection, where: list[Any]) -> int | None:
    """PostgreSQL's estimate of the rows matching ``where`` (from ``EXPLAIN``, nothing run)."""
    rows = planner_rows(conn, select(literal_column("1")).select_from(S.resource).where(*where))
    return max(rows, TOTAL_CAP + 1) if rows is not None else None


def literal_sql(conn: Connection, stmt: Select) -> str:
    """``stmt`` as SQL text with its values in it (for ``EXPLAIN`` through the driver)."""
    return str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def planner_rows(conn: Connection, explain: Select | str) -> int | None:
    """The rows PostgreSQL's planner expects a statement to return (nothing run): ``explain``
    is the statement, or the text ``EXPLAIN (FORMAT JSON) <statement with its values>``."""
    if not isinstance(explain, str):
        explain = "EXPLAIN (FORMAT JSON) " + literal_sql(conn, explain)
    cursor = conn.connection.cursor()  # the driver's: no parameters, nothing to interpolate
    try:
        cursor.execute(explain)
        plan = cursor.fetchone()[0]
    finally:
        cursor.close()
    if isinstance(plan, (str, bytes)):
        plan = orjson.loads(plan)
    rows = plan[0]["Plan"].get("Plan Rows")
    return int(rows) if rows is not None else None
