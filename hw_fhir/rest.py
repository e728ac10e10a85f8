"""FHIR REST building blocks with no web framework: Bundles and the CapabilityStatement.

Search and history Bundles are assembled from the stored JSON text without
re-parsing each resource, which keeps the API within a small factor of the bare
SQL query plus JSON encoding.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable
from urllib.parse import urlencode

import orjson

from .models import FHIR_VERSION
from .store.base import HistoryResult, SearchResult, Stored
from .store.searchparams import PARAMS

__all__ = [
    "searchset_bytes",
    "history_bundle_bytes",
    "capability_statement",
    "etag",
    "http_date",
    "page_url",
]


def etag(stored: Stored) -> str:
    """Return the weak ETag of a stored version."""
    return f'W/"{stored.version_id}"'


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(instant: str) -> str:
    """Turn a FHIR instant into an HTTP-date for Last-Modified (IMF-fixdate, RFC 9110)."""
    dt = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    dt = dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return (f"{_DAYS[dt.weekday()]}, {dt.day:02d} {_MONTHS[dt.month - 1]} {dt.year:04d} "
            f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} GMT")


def page_url(base: str, path: str, params: Iterable[tuple[str, str]]) -> str:
    """Build an absolute URL from the FHIR base, a path and query pairs."""
    query = urlencode(list(params))
    return f"{base.rstrip('/')}/{path.lstrip('/')}" + (f"?{query}" if query else "")


def _entry(base: str, stored: Stored, mode: str) -> bytes:
    full_url = f"{base}/{stored.resource_type}/{stored.id}".encode()
    return (b'{"fullUrl":"' + full_url + b'","resource":' + (stored.raw or "{}").encode()
            + b',"search":{"mode":"' + mode.encode() + b'"}}')


def searchset_bytes(result: SearchResult, *, base: str, self_url: str,
                    next_url: str | None = None, prev_url: str | None = None,
                    outcome: dict[str, Any] | None = None) -> bytes:
    """Serialise a search result as a searchset Bundle (JSON bytes)."""
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        head["total"] = result.total
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    if prev_url:
        links.append({"relation": "previous", "url": prev_url})
    head["link"] = links
    base = base.rstrip("/")
    parts = [_entry(base, s, "match") for s in result.matches]
    parts += [_entry(base, s, "include") for s in result.included]
    if outcome:
        parts.append(b'{"resource":' + orjson.dumps(outcome) + b',"search":{"mode":"outcome"}}')
    if not parts:
        return orjson.dumps(head)
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(parts) + b"]}"


def history_bundle_bytes(result: HistoryResult, *, base: str, self_url: str,
                         next_url: str | None = None) -> bytes:
    """Serialise history entries as a history Bundle (JSON bytes)."""
    base = base.rstrip("/")
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if result.total is not None:
        head["total"] = result.total
    head["link"] = [{"relation": "self", "url": self_url}]
    if next_url:
        head["link"].append({"relation": "next", "url": next_url})
    parts = []
    for s in result.entries:
        url = f"{s.resource_type}/{s.id}"
        status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[s.method]
        entry: dict[str, Any] = {
            "fullUrl": f"{base}/{url}",
            "request": {"method": s.method, "url": url if s.method != "POST" else s.resource_type},
            "response": {"status": status, "etag": etag(s), "lastModified": s.last_updated},
        }
        blob = orjson.dumps(entry)
        if s.raw and not s.deleted:
            blob = blob[:-1] + b',"resource":' + s.raw.encode() + b"}"
        parts.append(blob)
    if not parts:
        return orjson.dumps(head)
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(parts) + b"]}"


def capability_statement(*, base: str, software_version: str, date: str,
                         security: dict[str, Any] | None = None,
                         operations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return the CapabilityStatement listing exactly what /fhir supports."""
    resources = []
    for rtype, params in sorted(PARAMS.items()):
        references = [sp for sp in params.values() if sp.type == "reference"]
        resources.append({
            "type": rtype,
            "interaction": [{"code": c} for c in (
                "read", "vread", "update", "delete", "history-instance", "history-type",
                "create", "search-type")],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchInclude": [f"{rtype}:{sp.name}" for sp in references],
            "searchRevInclude": sorted(
                f"{other}:{sp.name}" for other, ps in PARAMS.items() for sp in ps.values()
                if sp.type == "reference" and (not sp.targets or rtype in sp.targets)
                and other != rtype),
            "searchParam": [
                {"name": "_id", "type": "token",
                 "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
                {"name": "_lastUpdated", "type": "date",
                 "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
                *({"name": sp.name, "type": sp.type, "definition": sp.definition}
                  for sp in params.values()),
            ],
        })
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "Modifiers: :missing, :exact, :contains (string), :not (token), "
                         ":[type] (reference). Date prefixes eq ne gt lt ge le sa eb. "
                         "_count, _offset, _sort, _total, _summary=count, _include, _revinclude.",
        "resource": resources,
        "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
    }
    if security:
        rest["security"] = security
    if operations:
        rest["operation"] = operations
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "hw-fhir",
        "kind": "instance",
        "software": {"name": "hw-fhir", "version": software_version},
        "implementation": {"description": "hw-fhir therapy homework FHIR API", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": [],
        "rest": [rest],
    }
