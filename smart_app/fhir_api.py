"""The /fhir API: a FHIR R4 REST facade over the SqlStore.

Views are thin: they parse HTTP (body, headers, Prefer), call the store and
:mod:`hw_fhir.rest`, and turn results into responses. Errors become
OperationOutcomes in :mod:`smart_app.errors`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, request

from hw_fhir import rest, task_workflow
from hw_fhir.body_limits import check_body
from hw_fhir.errors import (
    InvalidResource,
    InvalidSearch,
    Issue,
    UnsupportedMediaType,
    UnsupportedResourceType,
    operation_outcome,
)
from hw_fhir.limits import check_search_value, limits
from hw_fhir.models import validation_reused
from hw_fhir.store import SearchResult, Stored, WriteResult
from hw_fhir.store.searchparams import PARAMS
from hw_fhir.store.writes import index_rows_reused

from . import outcomes_api
from .errors import FHIR_JSON, outcome_response
from .fhir_auth import fhir_store, protect
from .state import app_state, services

__all__ = ["bp", "init_app", "fhir_base"]

bp = Blueprint("fhir", __name__, url_prefix="/fhir")

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
#: Bodies Werkzeug parses into ``request.form`` (their parameters are checked like the URL's).
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def init_app(app: Flask) -> None:
    """Register the /fhir blueprint."""
    app.register_blueprint(bp)


def fhir_base() -> str:
    """The FHIR base URL: the configured one, or the one this request came in on."""
    return services().settings.fhir_base or request.url_root.rstrip("/") + "/fhir"


@bp.before_request
def _check_search_values() -> None:
    # only what can carry parameters is parsed: a read by id has no query string and no form
    if request.query_string:
        for name, value in request.args.items(multi=True):
            check_search_value(name, value)
    if request.mimetype in _FORM_TYPES:
        for name, value in request.form.items(multi=True):
            check_search_value(name, value)


protect(bp)  # then the one /fhir authorizer (smart_app.fhir_auth)


# ----------------------------------------------------------------- helpers


def _body() -> Any:
    mimetype = (request.mimetype or "").lower()
    if mimetype not in _JSON_TYPES:
        raise UnsupportedMediaType(f"Send FHIR JSON (Content-Type application/fhir+json), not {mimetype or 'nothing'!r}")
    raw = request.get_data(cache=True)
    if not raw:
        raise InvalidResource("The request body is empty")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidResource(f"The request body is not valid JSON: {exc}") from None
    check_body(body, len(raw), limits(services().settings))
    return body


def _prefer() -> dict[str, str]:
    out = {}
    for part in request.headers.get("Prefer", "").split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out[key.strip().lower()] = value.strip().strip('"')
    return out


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return Response(body, status=status, headers=headers or {}, content_type=FHIR_JSON)


def _resource_headers(stored: Stored, *, location: bool = False) -> dict[str, str]:
    headers = {"ETag": rest.etag(stored), "Last-Modified": rest.http_date(stored.last_updated)}
    if location:
        headers["Location"] = f"{fhir_base()}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
    return headers


def _write_response(result: WriteResult, *, status: int, warnings: list[Issue] | None = None) -> Response:
    headers = _resource_headers(result.stored, location=True) | outcomes_api.warning_headers(warnings)
    prefer = _prefer().get("return", "representation").lower()
    if prefer == "minimal":
        return Response(status=status, headers=headers)
    if prefer == "operationoutcome":
        outcome = operation_outcome([Issue(f"{result.stored.reference} stored as version "
                                           f"{result.stored.version_id}", code="informational",
                                           severity="information"), *(warnings or [])])
        return _json(outcome, status, headers)
    return _json(result.stored.raw.encode() if result.stored.raw else b"{}", status, headers)


def _check_type(rtype: str) -> None:
    if rtype not in PARAMS:
        raise UnsupportedResourceType(f"Resource type {rtype!r} is not supported by this server")


def _check_resource_type(body: Any, rtype: str) -> None:
    if not isinstance(body, dict):
        raise InvalidResource("The request body must be a JSON object")
    if body.get("resourceType") != rtype:
        raise InvalidResource(f"The body is a {body.get('resourceType')!r} but the URL names {rtype}",
                              issues=[Issue(f"resourceType must be {rtype}", expression="resourceType")])


# ------------------------------------------------------------------ system


@bp.get("/metadata")
def metadata() -> Response:
    """Return the CapabilityStatement."""
    try:
        software_version = version("hw-fhir")
    except PackageNotFoundError:
        software_version = "0.0.0"
    state = app_state()
    security = state.capability_security() if state.capability_security is not None else None
    statement = rest.capability_statement(
        base=fhir_base(), software_version=software_version, date="2026-11-21",
        security=security, operations=state.capability_operations or None)
    return _json(statement)


@bp.post("/")
@bp.post("")
def transaction() -> Response:
    """Process a transaction or batch Bundle."""
    with index_rows_reused():  # the entries' index rows: counted by the body check, then written
        body = _body()
        _check_resource_type(body, "Bundle")
        svc = services()
        with validation_reused():  # the SDC workflow's validation of an entry counts for the store's
            result = task_workflow.write_bundle(  # responses answering Tasks: the SDC workflow
                svc.store, body, authorize=getattr(fhir_store(), "check_bundle", None),
                events=svc.events)
            if result is None:
                result = fhir_store().transaction(body)
    return _json(outcomes_api.score_bundle(result))  # after-write: scoring


@bp.get("/_history")
def system_history() -> Response:
    """Return the history of every resource."""
    return _history(None, None)


# -------------------------------------------------------------------- type


@bp.get("/<rtype>")
def search(rtype: str) -> Response:
    """Search by GET."""
    _check_type(rtype)
    return _search(rtype, list(request.args.items(multi=True)))


@bp.post("/<rtype>/_search")
def search_post(rtype: str) -> Response:
    """Search by POST (form-encoded parameters, plus any in the URL)."""
    _check_type(rtype)
    if request.mimetype not in ("application/x-www-form-urlencoded", ""):
        raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded parameters")
    params = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
    return _search(rtype, params)


def _search(rtype: str, params: list[tuple[str, str]]) -> Response:
    strict = _prefer().get("handling") == "strict"
    result: SearchResult = fhir_store().search(rtype, params, strict=strict)
    base = fhir_base()
    keep = [(k, v) for k, v in result.params if k not in ("_offset", "_cursor")]
    self_url = rest.page_url(base, rtype, result.params)
    next_url = prev_url = None
    if result.has_more and result.matches:
        sorted_ = any(k == "_sort" for k, _ in keep)
        if sorted_:
            next_url = rest.page_url(base, rtype, keep + [("_offset", str(result.offset + result.count))])
        else:
            last = result.matches[-1]
            next_url = rest.page_url(base, rtype, keep + [("_cursor", f"{last.last_updated},{last.id}")])
    if result.offset and any(k == "_sort" for k, _ in keep):
        prev_url = rest.page_url(base, rtype, keep + [("_offset", str(max(0, result.offset - result.count)))])
    outcome = None
    if result.warnings:
        outcome = operation_outcome([Issue(w, code="not-supported", severity="warning")
                                     for w in result.warnings])
    body = rest.searchset_bytes(result, base=base, self_url=self_url, next_url=next_url,
                                prev_url=prev_url, outcome=outcome)
    return _json(body)


@bp.post("/<rtype>")
def create(rtype: str) -> Response:
    """Create (or, with If-None-Exist, conditionally create)."""
    _check_type(rtype)
    body = _body()
    _check_resource_type(body, rtype)
    body = {k: v for k, v in body.items() if k != "id"}
    with _validated_once(body):
        result = _answer_task(body) or fhir_store().create(
            body, if_none_exist=request.headers.get("If-None-Exist"))
    result, warnings = outcomes_api.score_written(result)  # after-write: scoring
    return _write_response(result, status=201 if result.created else 200, warnings=warnings)


def _validated_once(body: dict[str, Any]) -> AbstractContextManager[None]:
    """For a QuestionnaireResponse the SDC workflow's validation counts for the store's."""
    if body.get("resourceType") != "QuestionnaireResponse":
        return nullcontext()
    return validation_reused()


def _answer_task(body: dict[str, Any]) -> WriteResult | None:
    """Write a QuestionnaireResponse answering a Task together with the Task (SDC workflow)."""
    if body.get("resourceType") != "QuestionnaireResponse":
        return None
    svc = services()
    return task_workflow.write_response(
        svc.store, body, if_match=request.headers.get("If-Match"),
        if_none_exist=request.headers.get("If-None-Exist"),
        authorize=getattr(fhir_store(), "authorize_write", None),
        events=svc.events)


@bp.get("/<rtype>/_history")
def type_history(rtype: str) -> Response:
    """Return the history of a resource type."""
    _check_type(rtype)
    return _history(rtype, None)


# ---------------------------------------------------------------- instance


@bp.get("/<rtype>/<rid>")
def read(rtype: str, rid: str) -> Response:
    """Read the current version."""
    _check_type(rtype)
    stored = fhir_store().read(rtype, rid)
    headers = _resource_headers(stored)
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and if_none_match.strip() == headers["ETag"]:
        return Response(status=304, headers=headers)
    return _json(stored.raw.encode(), 200, headers)  # the stored JSON as it is: no parse


@bp.put("/<rtype>/<rid>")
def update(rtype: str, rid: str) -> Response:
    """Update (or create with this id); If-Match makes it conditional on the version."""
    _check_type(rtype)
    body = _body()
    _check_resource_type(body, rtype)
    if body.get("id") != rid:
        raise InvalidResource(f"The body's id {body.get('id')!r} does not match the URL id {rid!r}",
                              issues=[Issue("id must match the URL", expression="id")])
    with _validated_once(body):
        result = _answer_task(body) or fhir_store().update(
            body, if_match=request.headers.get("If-Match"))
    result, warnings = outcomes_api.score_written(result)  # after-write: scoring
    return _write_response(result, status=201 if result.created else 200, warnings=warnings)


@bp.delete("/<rtype>/<rid>")
def delete(rtype: str, rid: str) -> Response:
    """Delete (a new, deleted version)."""
    _check_type(rtype)
    fhir_store().delete(rtype, rid)
    return Response(status=204)


@bp.get("/<rtype>/<rid>/_history")
def instance_history(rtype: str, rid: str) -> Response:
    """Return the history of one resource."""
    _check_type(rtype)
    return _history(rtype, rid)


@bp.get("/<rtype>/<rid>/_history/<vid>")
def vread(rtype: str, rid: str, vid: str) -> Response:
    """Read one version."""
    _check_type(rtype)
    stored = fhir_store().vread(rtype, rid, vid)
    return _json(stored.raw.encode(), 200, _resource_headers(stored))


def _history(rtype: str | None, rid: str | None) -> Response:
    allowed = {"_since", "_count", "_cursor", "_format"}
    unknown = [k for k in request.args if k not in allowed]
    if unknown:
        raise InvalidSearch(f"_history does not support {', '.join(unknown)}")
    try:
        count = int(request.args.get("_count", "100"))
    except ValueError:
        raise InvalidSearch("_count must be a whole number") from None
    if count < 1:
        raise InvalidSearch("_count must be at least 1")
    count = min(count, 1000)
    since = request.args.get("_since")
    result = fhir_store().history(rtype, rid, since=since, count=count,
                              cursor=request.args.get("_cursor"))
    base = fhir_base()
    path = "/".join(p for p in (rtype, rid, "_history") if p)
    keep = [(k, v) for k, v in request.args.items(multi=True) if k != "_cursor"]
    next_url = rest.page_url(base, path, keep + [("_cursor", result.next_cursor)]) \
        if result.next_cursor else None
    body = rest.history_bundle_bytes(result, base=base, self_url=request.url, next_url=next_url)
    return _json(body)


@bp.route("/<path:anything>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def unknown(anything: str) -> Response:
    """Answer any other /fhir path with an OperationOutcome."""
    if request.method == "PATCH":
        return outcome_response(405, operation_outcome([Issue("PATCH is not supported; use PUT",
                                                              code="not-supported")]),
                                {"Allow": "GET, PUT, DELETE"})
    return outcome_response(404, operation_outcome([Issue(f"/fhir/{anything} is not a supported "
                                                          "FHIR endpoint", code="not-found")]))
