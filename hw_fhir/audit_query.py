"""Reading the audit trail: AuditEvent search, read and export (:mod:`hw_fhir.audit` writes it).

Search parameters (FHIR R4 AuditEvent): ``patient``, ``entity``, ``agent`` (a
reference), ``altid`` (the client id), ``address``, ``date`` (prefixes ``eq``, ``gt``,
``ge``, ``lt``, ``le``; may repeat), ``type``, ``subtype`` (``system|code`` or ``code``),
``outcome``, ``action``; comma-separated values mean "any of"; ``_id``, ``_count``
(≤ 1000, default 100) and ``_cursor`` for the next page. Results come oldest first.
Unknown parameters are refused (400), never ignored: an audit search that silently
dropped a filter would hide or invent accesses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, or_, select

from .audit import audit_entity_table, audit_event_table, trail_for
from .errors import InvalidSearch, NotFound
from .store.searchparams import date_range

__all__ = ["AuditPage", "search_events", "read_event", "export_lines", "searchset_bytes",
           "SEARCH_PARAMS"]

SEARCH_PARAMS = ("patient", "entity", "agent", "altid", "address", "date", "type", "subtype",
                 "outcome", "action", "_id", "_count", "_cursor", "_format")
_PREFIXES = ("eq", "gt", "ge", "lt", "le")


@dataclass(frozen=True)
class AuditPage:
    """One page of AuditEvents (id and JSON text) and the cursor of the next page."""

    events: tuple[tuple[str, str], ...]
    next_cursor: str | None
    params: tuple[tuple[str, str], ...]


def _values(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _reference(value: str, default_type: str | None = None) -> str:
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2:
        return "/".join(parts[-2:])
    if default_type:
        return f"{default_type}/{value}"
    raise InvalidSearch(f"{value!r} is not a reference (Type/id)")


def _token_clause(column: Any, value: str) -> Any:
    clauses = []
    for item in _values(value):
        if "|" in item:
            clauses.append(column == item)
        else:
            clauses.append(column.like(f"%|{item}"))
    return or_(*clauses)


def _date_clause(column: Any, value: str) -> Any:
    prefix = value[:2] if value[:2] in _PREFIXES else "eq"
    text = value[2:] if value[:2] in _PREFIXES else value
    try:
        low, high = date_range(text)
    except ValueError:
        raise InvalidSearch(f"date: {value!r} is not a FHIR date or dateTime") from None
    return {"eq": and_(column >= low, column <= high), "gt": column > high, "ge": column >= low,
            "lt": column < low, "le": column <= high}[prefix]


def _entity_clause(references: list[str], *, patient: bool) -> Any:
    e = audit_entity_table
    inner = select(e.c.event_id).where(e.c.reference.in_(references))
    if patient:
        inner = inner.where(e.c.patient == True)  # noqa: E712
    return audit_event_table.c.id.in_(inner)


def search_events(store: Any, params: Sequence[tuple[str, str]]) -> AuditPage:
    """Run an AuditEvent search; InvalidSearch for unknown or malformed parameters."""
    trail_for(store).flush()  # what this process queued is searchable at once
    t = audit_event_table
    where: list[Any] = []
    count = 100
    cursor = 0
    for name, value in params:
        if name not in SEARCH_PARAMS:
            raise InvalidSearch(f"AuditEvent has no search parameter {name!r} "
                                f"(supported: {', '.join(p for p in SEARCH_PARAMS if p[0] != '_')})")
        if name == "_format":
            continue
        if name == "_count":
            if not value.isdigit() or int(value) < 1:
                raise InvalidSearch("_count must be a whole number of at least 1")
            count = min(int(value), 1000)
        elif name == "_cursor":
            if not value.isdigit() or len(value) > 18:
                raise InvalidSearch("_cursor is not one this server gave out")
            cursor = int(value)
        elif name == "patient":
            where.append(_entity_clause([_reference(v, "Patient") for v in _values(value)], patient=True))
        elif name == "entity":
            where.append(_entity_clause([_reference(v) for v in _values(value)], patient=False))
        elif name == "agent":
            where.append(t.c.agent.in_([_reference(v) for v in _values(value)]))
        elif name == "altid":
            where.append(t.c.client.in_(_values(value)))
        elif name == "address":
            where.append(t.c.address.in_(_values(value)))
        elif name == "date":
            where.append(_date_clause(t.c.recorded, value))
        elif name in ("type", "subtype"):
            where.append(_token_clause(t.c[name], value))
        elif name in ("outcome", "action"):
            where.append(t.c[name].in_([v.split("|")[-1] for v in _values(value)]))
        elif name == "_id":
            where.append(t.c.id.in_(_values(value)))
    stmt = (select(t.c.seq, t.c.id, t.c.content).where(t.c.seq > cursor, *where)
            .order_by(t.c.seq).limit(count + 1))
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    more = len(rows) > count
    rows = rows[:count]
    keep = tuple((k, v) for k, v in params if k != "_cursor")
    return AuditPage(tuple((r.id, r.content) for r in rows),
                     str(rows[-1].seq) if more and rows else None, keep)


def read_event(store: Any, event_id: str) -> str:
    """Return one AuditEvent's JSON text; NotFound when there is none with this id."""
    trail_for(store).flush()
    t = audit_event_table
    with store.engine.connect() as conn:
        content = conn.execute(select(t.c.content).where(t.c.id == event_id[:64])).scalar()
    if content is None:
        raise NotFound(f"AuditEvent/{event_id} is not known")
    return str(content)


def export_lines(store: Any, *, until: str, since: str | None = None,
                 batch: int = 2000) -> Iterator[list[str]]:
    """Yield the NDJSON lines of the AuditEvents recorded up to ``until`` (after ``since``)."""
    trail_for(store).flush()
    t = audit_event_table
    where = [t.c.recorded <= until]
    if since:
        where.append(t.c.recorded > since)
    last = 0
    while True:
        with store.engine.connect() as conn:
            rows = conn.execute(select(t.c.seq, t.c.content).where(t.c.seq > last, *where)
                                .order_by(t.c.seq).limit(batch)).all()
        if not rows:
            return
        last = rows[-1].seq
        yield [r.content for r in rows]


def searchset_bytes(page: AuditPage, *, base: str, self_url: str, next_url: str | None) -> bytes:
    """Return the searchset Bundle of a page (events embedded as stored, not re-encoded)."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    head = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "link": links})[:-1]
    entries = []
    for event_id, content in page.events:
        entries.append(b'{"fullUrl":' + orjson.dumps(f"{base}/AuditEvent/{event_id}")
                       + b',"resource":' + content.encode() + b',"search":{"mode":"match"}}')
    return head + b',"entry":[' + b",".join(entries) + b"]}"
