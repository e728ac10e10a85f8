"""A default-order page read by walking the type's ``(res_type, last_updated, res_id)`` index.

When a search's filters match many resources (see ``SqlStore._search_in``), the page is read
in page order from the type's index, each resource checked against the filters, and it stops
after ``_count`` + 1 matches: O(page / share of resources matching) instead of reading and
sorting every match. The walk is bounded: it reads at most ``walk`` resources from the
cursor on (the caller passes how many index rows the filter has, what driving by it costs),
so matches far along the order cost one bounded walk before the filter drives after all.

* SQLite: the bound is the lastUpdated of the ``walk``-th resource, read from the covering
  index (:func:`walk_end`); SQLite walks the index in order and checks the filters' EXISTS
  per row on its own.
* PostgreSQL estimates how many resources a filter's index rows match from ``res_id``'s
  distinct values over every type (``Patient?family`` at 1 000 000 resources: 90 of 4 348),
  so with the filters beside the order it read and sorted every match. Here the walk is a
  subquery with ``LIMIT walk`` (the planner cannot move a join across it) and the filters'
  EXISTS carry ``OFFSET 0`` (it keeps them subplans run per row, not a hash join whose output
  is sorted again): :func:`walk_page`, :func:`walk_beyond_cap`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, literal_column, select
from sqlalchemy.sql.util import ClauseAdapter

from . import schema as S
from . import totals
from .query import Query

__all__ = ["walk_end", "walk_page", "walk_beyond_cap"]

#: Above every stored instant: the walk's end when the type has fewer resources than it.
MAX_INSTANT = "9999-12-31T23:59:59.999999Z"


def walk_end(q: Query, walk: int) -> Any:
    """SQLite: the lastUpdated of the ``walk``-th resource of the type from the cursor on
    (or past the type's last), for ``last_updated <= …``."""
    r = S.resource
    end = select(r.c.last_updated).where(r.c.res_type == q.resource_type)
    if q.cursor:
        end = end.where(r.c.last_updated >= q.cursor[0])
    end = end.order_by(r.c.last_updated).limit(1).offset(walk - 1).scalar_subquery()
    return func.coalesce(end, MAX_INSTANT)


def _walked(inner: list[Any], checks: list[Any], walk: int) -> tuple[Any, list[Any]]:
    """The first ``walk`` resources meeting ``inner``, in page order, and ``checks`` on them."""
    r = S.resource
    walked = (select(r.c.res_type, r.c.res_id, r.c.version_id, r.c.last_updated, r.c.content)
              .where(*inner).order_by(r.c.last_updated, r.c.res_id)
              .limit(walk).subquery("walk"))
    adapter = ClauseAdapter(walked)
    return walked, [adapter.traverse(c) for c in checks]


def walk_page(conn: Connection, q: Query, inner: list[Any], checks: list[Any],
              walk: int) -> tuple[list[Any], bool]:
    """PostgreSQL: the page's rows (count+1 at most) among the first ``walk`` resources that
    meet ``inner`` (type, not deleted, the cursor), checked by ``checks``; and whether there
    are more (False: none in the walk, there may be further on)."""
    walked, on_walk = _walked(inner, checks, walk)
    stmt = (select(walked.c.res_id, walked.c.version_id, walked.c.last_updated, walked.c.content)
            .where(*on_walk).order_by(walked.c.last_updated, walked.c.res_id)
            .limit(q.count + 1))
    if q.offset and not q.cursor:
        stmt = stmt.offset(q.offset)
    rows = conn.execute(stmt).all()
    return rows, len(rows) > q.count


def walk_beyond_cap(conn: Connection, rtype: str, checks: list[Any], walk: int) -> bool:
    """PostgreSQL: whether more than ``totals.TOTAL_CAP`` of the type's first ``walk``
    resources pass ``checks`` (then the total is beyond the cap).

    Without it the capped count first reads every index row of the filter (a hash of their
    res_ids); this reads about TOTAL_CAP / (share of resources matching), whatever the
    store's size.
    """
    r = S.resource
    walked, on_walk = _walked([r.c.res_type == rtype, r.c.deleted == False],  # noqa: E712
                              checks, walk)
    inner = select(literal_column("1")).select_from(walked).where(*on_walk)
    return int(conn.execute(select(func.count()).select_from(
        inner.limit(totals.TOTAL_CAP + 1).subquery())).scalar_one()) > totals.TOTAL_CAP
