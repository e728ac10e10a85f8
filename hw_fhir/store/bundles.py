"""Transaction and batch Bundles over a store's unit of work.

A transaction is all-or-nothing: every entry is validated before anything is
written, ``urn:uuid:`` fullUrls of created resources are resolved to the ids the
store assigns (or to the existing match of a conditional create), entries run in
the FHIR order (DELETE, POST, PUT/PATCH, GET) inside one database transaction,
and any failure rolls everything back. A batch runs each entry on its own (no rider of
:mod:`hw_fhir.store.riders` comes along: its entries commit one by one).
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import orjson

from ..errors import HwFhirError, InvalidInput, InvalidResource, Issue, NotFound
from ..models import validate
from . import riders
from .base import SearchResult, Stored, WriteResult

__all__ = ["process_bundle", "entry_response", "search_bundle_entry"]

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}


class _Unit(Protocol):
    def __enter__(self) -> "_Unit": ...
    def __exit__(self, *exc: Any) -> Any: ...
    def create(self, data: dict[str, Any], *, if_none_exist: str | None = None,
               id: str | None = None) -> WriteResult: ...
    def update(self, data: dict[str, Any], *, if_match: str | None = None) -> WriteResult: ...
    def delete(self, resource_type: str, id: str) -> None: ...
    def read(self, resource_type: str, id: str) -> Stored: ...
    def search(self, resource_type: str, params: list[tuple[str, str]]) -> SearchResult: ...
    def match(self, resource_type: str, criteria: str) -> Stored | None: ...
    def preload(self, refs: list[tuple[str, str]]) -> None: ...


def _fail(n: int, message: str, cls: type[HwFhirError] = InvalidInput) -> HwFhirError:
    return cls(f"Bundle.entry[{n}]: {message}",
               issues=[Issue(message, expression=f"Bundle.entry[{n}]")])


def _parse_url(n: int, url: str) -> tuple[str, str | None, str | None, list[tuple[str, str]]]:
    """Split an entry request url into (type, id, version, query)."""
    parts = urlsplit(url)
    path = parts.path.strip("/").split("/")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not path or not path[0]:
        raise _fail(n, f"request.url {url!r} names no resource type")
    rtype = path[0]
    rid = path[1] if len(path) > 1 else None
    version = path[3] if len(path) > 3 and path[2] == "_history" else None
    return rtype, rid, version, query


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in ids:
                out[k] = ids[v]
            else:
                out[k] = _rewrite(v, ids)
        return out
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


#: A ``reference`` member with a string value in compact JSON (orjson's): the value as
#: JSON string content. In valid JSON ``"reference":"`` can only be such a member (a
#: string's own quotes are escaped, and a string followed by ``:`` is a key).
_REFERENCE = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')


def _names_any(resource: Any, ids: dict[str, str]) -> bool:
    """Whether any ``reference`` in ``resource`` is one of ``ids`` (so :func:`_rewrite` has work).

    Read from the resource's JSON text: walking it in Python costs as much as rewriting
    it, for the many entries of a Bundle that name no other entry. When unsure (not
    plain JSON), True.
    """
    try:
        text = orjson.dumps(resource)
    except (TypeError, orjson.JSONEncodeError):
        return True
    for found in _REFERENCE.finditer(text):
        value = found.group(1)
        ref = orjson.loads(b'"' + value + b'"') if b"\\" in value else value.decode()
        if ref in ids:
            return True
    return False


def entry_response(result: WriteResult | None, *, status: str,
                   include_resource: bool = True) -> dict[str, Any]:
    """Build a Bundle.entry for a write result."""
    if result is None:
        return {"response": {"status": status}}
    s = result.stored
    entry: dict[str, Any] = {
        "fullUrl": s.reference,
        "response": {
            "status": status,
            "location": f"{s.reference}/_history/{s.version_id}",
            "etag": f'W/"{s.version_id}"',
            "lastModified": s.last_updated,
        },
    }
    if include_resource:
        entry["resource"] = s.resource
    return entry


def search_bundle_entry(result: SearchResult) -> dict[str, Any]:
    """Build a searchset Bundle (as a nested resource) for a GET inside a Bundle."""
    entries = [{"fullUrl": m.reference, "resource": m.resource, "search": {"mode": "match"}}
               for m in result.matches]
    entries += [{"fullUrl": m.reference, "resource": m.resource, "search": {"mode": "include"}}
                for m in result.included]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    if result.total is not None:
        bundle["total"] = result.total
    return bundle


def _prepare(bundle: Any) -> tuple[str, list[dict[str, Any]]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidResource("Expected a Bundle")
    btype = bundle.get("type")
    if btype not in ("transaction", "batch"):
        raise InvalidInput(f"Bundle.type must be transaction or batch, not {btype!r}")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InvalidResource("Bundle.entry must be a list")
    return btype, entries


def _check_entry(n: int, entry: Any) -> dict[str, Any]:
    """Validate one entry's shape and resource; return a normalised work item."""
    if not isinstance(entry, dict):
        raise _fail(n, "an entry must be a JSON object")
    request = entry.get("request")
    if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
        raise _fail(n, "request.method and request.url are required")
    method = str(request["method"]).upper()
    if method not in _ORDER:
        raise _fail(n, f"request.method {method} is not supported (use GET, POST, PUT, DELETE)")
    rtype, rid, version, query = _parse_url(n, str(request["url"]))
    item: dict[str, Any] = {"n": n, "method": method, "type": rtype, "id": rid,
                            "version": version, "query": query, "request": request,
                            "fullUrl": entry.get("fullUrl")}
    if method in ("POST", "PUT"):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            raise _fail(n, f"a {method} entry needs a resource")
        if resource.get("resourceType") != rtype:
            raise _fail(n, f"resource is a {resource.get('resourceType')!r} but request.url "
                           f"names {rtype!r}")
        if method == "PUT" and (rid is None or query):
            raise _fail(n, "PUT needs request.url Type/id (conditional update is not supported)")
        if method == "PUT" and resource.get("id") not in (None, rid):
            raise _fail(n, f"resource.id {resource.get('id')!r} does not match request.url id {rid!r}")
        try:
            item["resource"] = validate(resource)
        except InvalidResource as exc:
            raise InvalidResource(
                f"Bundle.entry[{n}]: {exc.message}",
                issues=[Issue(i.message, code=i.code,
                              expression=f"Bundle.entry[{n}].resource"
                              + (("." + i.expression.split(".", 1)[1])
                                 if i.expression and "." in i.expression else ""))
                        for i in exc.issues]) from None
        if method == "PUT":
            item["resource"]["id"] = rid
    elif method == "DELETE" and (rid is None or query):
        raise _fail(n, "DELETE needs request.url Type/id (conditional delete is not supported)")
    return item


def _run_item(unit: _Unit, item: dict[str, Any], assigned: dict[int, str | Stored]) -> dict[str, Any]:
    method, rtype, rid = item["method"], item["type"], item["id"]
    request = item["request"]
    if method == "DELETE":
        unit.delete(rtype, rid)
        return {"response": {"status": "204 No Content"}}
    if method == "POST":
        target = assigned.get(item["n"])
        if isinstance(target, Stored):
            return entry_response(WriteResult(target, created=False), status="200 OK")
        result = unit.create(item["resource"], id=target if isinstance(target, str) else None,
                             if_none_exist=None if target else request.get("ifNoneExist"))
        return entry_response(result, status="201 Created" if result.created else "200 OK")
    if method == "PUT":
        result = unit.update(item["resource"], if_match=request.get("ifMatch"))
        return entry_response(result, status="201 Created" if result.created else "200 OK")
    if rid:
        stored = unit.read(rtype, rid)
        return {"fullUrl": stored.reference, "resource": stored.resource,
                "response": {"status": "200 OK", "etag": f'W/"{stored.version_id}"'}}
    return {"resource": search_bundle_entry(unit.search(rtype, item["query"])),
            "response": {"status": "200 OK"}}


def _transaction(store: Any, entries: list[Any]) -> dict[str, Any]:
    items = [_check_entry(n, e) for n, e in enumerate(entries)]
    full_urls = [i["fullUrl"] for i in items if i["fullUrl"]]
    if len(full_urls) != len(set(full_urls)):
        raise InvalidInput("Bundle has two entries with the same fullUrl")
    responses: dict[int, dict[str, Any]] = {}
    with store.unit_of_work() as unit:
        # resolve ids of created resources (or their conditional-create match) first
        ids: dict[str, str] = {}
        assigned: dict[int, str | Stored] = {}
        for item in items:
            if item["method"] != "POST":
                continue
            match = None
            if item["request"].get("ifNoneExist"):
                match = unit.match(item["type"], item["request"]["ifNoneExist"])
            if match is not None:
                assigned[item["n"]] = match
                target = match.reference
            else:
                new_id = str(uuid.uuid4())
                assigned[item["n"]] = new_id
                target = f"{item['type']}/{new_id}"
            if item["fullUrl"]:
                ids[item["fullUrl"]] = target
        for item in items:
            if item["fullUrl"] and item["method"] == "PUT" and item["id"]:
                ids.setdefault(item["fullUrl"], f"{item['type']}/{item['id']}")
        for item in items:
            if "resource" in item and ids and _names_any(item["resource"], ids):
                item["resource"] = _rewrite(item["resource"], ids)
        # the current versions of everything PUT or DELETEd, in one query per type
        unit.preload([(i["type"], i["id"]) for i in items if i["method"] in ("PUT", "DELETE")])
        for item in sorted(items, key=lambda i: (_ORDER[i["method"]], i["n"])):
            try:
                responses[item["n"]] = _run_item(unit, item, assigned)
            except HwFhirError as exc:
                exc.message = f"Bundle.entry[{item['n']}]: {exc.message}"
                exc.issues = [Issue(i.message, code=i.code, severity=i.severity,
                                    expression=i.expression or f"Bundle.entry[{item['n']}]")
                              for i in exc.issues]
                raise
    return {"resourceType": "Bundle", "type": "transaction-response",
            "entry": [responses[i] for i in range(len(items))]}


def _batch(store: Any, entries: list[Any]) -> dict[str, Any]:
    with riders.suspended():  # entries commit one by one: the request records itself after
        return _run_batch(store, entries)


def _run_batch(store: Any, entries: list[Any]) -> dict[str, Any]:
    out = []
    for n, entry in enumerate(entries):
        try:
            item = _check_entry(n, entry)
            with store.unit_of_work() as unit:
                out.append(_run_item(unit, item, {}))
        except HwFhirError as exc:
            out.append({"response": {"status": f"{exc.status} {type(exc).__name__}",
                                     "outcome": exc.outcome}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}


def process_bundle(store: Any, bundle: Any) -> dict[str, Any]:
    """Process a transaction or batch Bundle against a store with ``unit_of_work()``."""
    btype, entries = _prepare(bundle)
    if btype == "transaction":
        return _transaction(store, entries)
    return _batch(store, entries)

