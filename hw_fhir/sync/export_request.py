"""What a Bulk Data ``$export`` kick-off asked for: :class:`ExportRequest` and its parser.

:func:`parse_export_request` checks the kick-off parameters (``_outputFormat``,
``_type``, ``_since``, ``_typeFilter``) against the export level and returns the
request the job stores; :func:`type_filter_query` parses one ``_typeFilter``
query the way the writer (:mod:`hw_fhir.sync.export`) runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import parse_qsl

import orjson

from ..errors import InvalidInput, InvalidSearch, Issue, UnknownExportLevel
from ..smart.compartment import COMPARTMENT_PARAMS
from ..store.query import parse_query
from ..store.searchparams import PARAMS, date_range

__all__ = [
    "AUDIT_EVENT",
    "NDJSON",
    "OUTPUT_FORMATS",
    "ExportRequest",
    "parse_export_request",
    "split_type_filters",
    "type_filter_query",
]

#: The audit trail's type: exported from its own table, at system level only.
AUDIT_EVENT = "AuditEvent"
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
#: The one output format written (every accepted ``_outputFormat`` means it).
NDJSON = "application/fhir+ndjson"

_LEVELS = ("system", "patient", "group")
_NOT_SUPPORTED = {"_elements", "patient", "includeAssociatedData", "organizeOutputBy",
                  "allowPartialManifests"}
_IGNORED = {"_format", "_pretty"}
_FILTER_START = re.compile(r",(?=[A-Z][A-Za-z]+\?)")


@dataclass(frozen=True)
class ExportRequest:
    """What a client asked to export."""

    level: str = "system"
    group_id: str | None = None
    types: tuple[str, ...] = ()
    since: str | None = None
    type_filters: tuple[tuple[str, str], ...] = ()
    output_format: str = NDJSON
    request_url: str = ""

    def resolved_types(self) -> tuple[str, ...]:
        """The types to export: ``_type``, or every type of the level."""
        if self.types:
            return self.types
        if self.level == "system":  # the audit trail too (hw_fhir.audit), for system/ scopes
            return tuple(sorted([*(t for t in PARAMS if t != "Subscription"), AUDIT_EVENT]))
        return tuple(sorted(COMPARTMENT_PARAMS))

    def to_json(self) -> str:
        """Serialise for the job table."""
        return orjson.dumps({
            "level": self.level, "group_id": self.group_id, "types": list(self.types),
            "since": self.since, "type_filters": [list(f) for f in self.type_filters],
            "output_format": self.output_format, "request_url": self.request_url}).decode()

    @classmethod
    def from_json(cls, raw: str) -> "ExportRequest":
        """Read back what :meth:`to_json` wrote."""
        data = orjson.loads(raw)
        return cls(level=data["level"], group_id=data.get("group_id"), types=tuple(data["types"]),
                   since=data.get("since"),
                   type_filters=tuple((t, q) for t, q in data.get("type_filters") or []),
                   output_format=data.get("output_format") or NDJSON,
                   request_url=data.get("request_url") or "")


def _bad(message: str, param: str) -> InvalidInput:
    return InvalidInput(message, issues=[Issue(message, code="invalid", expression=param)])


def split_type_filters(raw: str) -> list[str]:
    """Split a ``_typeFilter`` value into its ``Type?query`` parts (commas start a new type)."""
    return [part for part in _FILTER_START.split(raw) if part]


def _parse_type_filter(value: str, store_base: str | None) -> tuple[str, str]:
    rtype, sep, query = value.partition("?")
    if not sep or rtype not in PARAMS or not query:
        raise _bad(f"_typeFilter {value!r} must look like Type?param=value", "_typeFilter")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise _bad(f"_typeFilter {value!r} is not a valid query", "_typeFilter") from None
    type_filter_query(rtype, pairs, store_base)  # reject what cannot be run now, not in the worker
    return rtype, query


def type_filter_query(rtype: str, pairs: list[tuple[str, str]], base_url: str | None) -> Any:
    """Parse one ``_typeFilter`` query; InvalidInput unless it is search criteria only."""
    try:
        q = parse_query(rtype, pairs, strict=True, base_url=base_url)
    except InvalidSearch as exc:
        raise _bad(f"_typeFilter {rtype}: {exc.message}", "_typeFilter") from None
    if q.include or q.revinclude or q.sort or q.cursor or q.summary_count or q.offset \
            or any(k in ("_count", "_total") for k, _ in pairs):
        raise _bad(f"_typeFilter {rtype}: only search criteria are allowed (no _include, _sort, "
                   "_count...)", "_typeFilter")
    return q


def parse_export_request(params: Iterable[tuple[str, str]], *, level: str = "system",
                         group_id: str | None = None, request_url: str = "",
                         lenient: bool = False, base_url: str | None = None) -> ExportRequest:
    """Check the kick-off parameters and return the request; InvalidInput when they are wrong.

    With ``lenient`` (``Prefer: handling=lenient``) unsupported parameters are
    ignored instead of refused.
    """
    if level not in _LEVELS:
        raise UnknownExportLevel(f"unknown export level {level!r}")
    output_format = NDJSON
    types: list[str] = []
    since: str | None = None
    filters: list[tuple[str, str]] = []
    for name, value in params:
        if name == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise _bad(f"_outputFormat {value!r} is not supported (use "
                           f"{', '.join(OUTPUT_FORMATS)})", name)
            output_format = NDJSON
        elif name == "_type":
            for rtype in (t.strip() for t in value.split(",")):
                if rtype not in PARAMS and not (rtype == AUDIT_EVENT and level == "system"):
                    raise _bad(f"_type: {rtype!r} is not a resource type this server exports", name)
                if level != "system" and rtype not in COMPARTMENT_PARAMS:
                    raise _bad(f"_type: {rtype} is not in the patient compartment; a {level}-level "
                               "export holds only patient data", name)
                if rtype not in types:
                    types.append(rtype)
        elif name == "_since":
            if since is not None:
                raise _bad("_since may be given once", name)
            if "T" in value and not re.search(r"(Z|[+-]\d\d:\d\d)$", value):
                raise _bad(f"_since {value!r} needs a time zone (an instant, e.g. "
                           "2026-01-31T12:00:00Z)", name)
            try:
                since = date_range(value)[0]
            except ValueError:
                raise _bad(f"_since {value!r} is not a FHIR instant", name) from None
        elif name == "_typeFilter":
            filters.extend(_parse_type_filter(v, base_url) for v in split_type_filters(value))
        elif name in _IGNORED:
            continue
        elif not lenient:
            what = "is not supported" if name in _NOT_SUPPORTED else "is not a $export parameter"
            raise _bad(f"{name} {what} (send Prefer: handling=lenient to ignore it)", name)
    for rtype, _ in filters:
        if types and rtype not in types:
            raise _bad(f"_typeFilter names {rtype}, which is not in _type", "_typeFilter")
        if level != "system" and rtype not in COMPARTMENT_PARAMS:
            raise _bad(f"_typeFilter names {rtype}, which a {level}-level export never holds",
                       "_typeFilter")
    return ExportRequest(level, group_id, tuple(types), since, tuple(filters), output_format,
                         request_url)
