"""Audit every request that touches patient data (:mod:`hw_fhir.audit` builds and stores them).

* ``/fhir`` (FHIR API, Bulk Data, outcome operations): one AuditEvent per request,
  after the response is known — also for refused ones (401/403, outcome 4). A create,
  update, delete or transaction that writes brings its event into the write's own
  database transaction instead (:class:`~hw_fhir.audit.WriteAudit`, set up before the
  view): committed together or not at all. A write that fails and rolls back is
  recorded after the response as before (outcome 4 or 8); so is a request that fails
  after its write committed (then its committed write has its own event).
* The clinician pages (launch landing included) and the patient pages: one
  AuditEvent per request, the patient from the launch or the patient session.
* AuditEvent itself is append-only on ``/fhir`` (every write refused with 403) and
  readable only with a ``system/`` scope (``system/AuditEvent.rs``).

Who, client and address come from the request (bearer token grant, launch, patient
session, ``request.remote_addr``); patients from the URL, the search parameters, the
token's patient context and the ``Patient/<id>`` references in the answer. Views stay
untouched: this runs in ``after_request``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson
from flask import Flask, Response, g, request, session

from hw_fhir.audit import (
    DCM,
    HW_SUBTYPE,
    TYPE_LOGIN,
    TYPE_PATIENT_RECORD,
    TYPE_REST,
    Access,
    AuditTrail,
    WriteAudit,
    outcome_for_status,
    trail_for,
)
from hw_fhir.audit_query import read_event, search_events, searchset_bytes
from hw_fhir.errors import Forbidden, InvalidSearch, NotFound
from hw_fhir.rest import page_url
from hw_fhir.store import WriteResult, riders

from .errors import FHIR_JSON
from .fhir_api import fhir_base
from .fhir_auth import before_fhir_request, current_grant
from .launch import current_launch
from .patient.access import SESSION_KEY
from .state import app_state, services

__all__ = ["init_app", "trail", "guard_audit_events", "ride_along"]

_REST_BLUEPRINTS = {"fhir", "fhir_bulk", "outcomes"}
_PAGE_BLUEPRINTS = {"clinician", "patient"}
#: /fhir endpoints → (restful-interaction code, action).
_INTERACTIONS = {
    "fhir.read": ("read", "R"),
    "fhir.vread": ("vread", "R"),
    "fhir.search": ("search-type", "E"),
    "fhir.search_post": ("search-type", "E"),
    "fhir.system_history": ("history-system", "R"),
    "fhir.type_history": ("history-type", "R"),
    "fhir.instance_history": ("history-instance", "R"),
    "fhir.create": ("create", "C"),
    "fhir.update": ("update", "U"),
    "fhir.delete": ("delete", "D"),
    "fhir.transaction": ("transaction", "E"),
    "fhir_bulk.export_system": ("operation", "E"),
    "fhir_bulk.export_patients": ("operation", "E"),
    "fhir_bulk.export_group": ("operation", "E"),
    "fhir_bulk.export_status": ("operation", "R"),
    "fhir_bulk.export_cancel": ("operation", "D"),
    "fhir_bulk.export_download": ("read", "R"),
}
#: Token endpoints: refused requests are recorded as failed logins (DICOM 110114/110122).
_TOKEN_ENDPOINTS = {"backend_auth.token", "sandbox.token"}
_SKIP = {"fhir.metadata", "launch.app_jwks", "launch.index", "launch.launch", "static"}
_PATIENT_REF = re.compile(rb'Patient/([A-Za-z0-9\-.]{1,64})"')
_LOCATION = re.compile(rb'"location":"([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})')
_PATIENT_PARAMS = {"patient", "subject", "for", "_id"}
#: /fhir writes whose AuditEvent commits in the write's transaction (hw_fhir.store.riders).
_RIDING = {"fhir.create", "fhir.update", "fhir.delete", "fhir.transaction"}
#: Answers larger than this are not scanned for patient references (exports stream anyway).
_SCAN_LIMIT = 8 * 1024 * 1024


def trail() -> AuditTrail:
    """Return the current app's audit trail."""
    found = app_state().audit
    assert found is not None, "smart_app.audit.init_app installs the trail"
    return found


# ------------------------------------------------------------------ guard


def guard_audit_events() -> Response | None:
    """Serve AuditEvent on /fhir (a before-hook): read and search with a system/ scope only,
    every write refused (append-only)."""
    rtype = (request.view_args or {}).get("rtype")
    if request.endpoint == "fhir.transaction":
        raw = request.get_data(cache=True)
        if b"AuditEvent" in raw:
            _check_bundle(raw)
        return None
    if request.endpoint == "fhir.delete" and rtype != "AuditEvent":
        g.audit_patients = _patients_of_current(rtype, (request.view_args or {}).get("rid"))
    if rtype != "AuditEvent":
        return None
    endpoint = request.endpoint or ""
    if request.method not in ("GET", "HEAD") and endpoint != "fhir.search_post":
        raise Forbidden("AuditEvent is append-only: hw-fhir records it; it cannot be created, "
                        "changed or deleted through the API")
    search = endpoint in ("fhir.search", "fhir.search_post")
    _require_system_scope("s" if search else "r")
    store = services().store
    view = request.view_args or {}
    if search:
        params = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
        page = search_events(store, params)
        base = fhir_base()
        next_url = (page_url(base, "AuditEvent", [*page.params, ("_cursor", page.next_cursor)])
                    if page.next_cursor else None)
        body = searchset_bytes(page, base=base, self_url=page_url(base, "AuditEvent", page.params),
                               next_url=next_url)
        return Response(body, content_type=FHIR_JSON)
    if endpoint == "fhir.read" or (endpoint == "fhir.vread" and view.get("vid") == "1"):
        return Response(read_event(store, str(view.get("rid", ""))), content_type=FHIR_JSON,
                        headers={"ETag": 'W/"1"'})
    if endpoint == "fhir.vread":
        raise NotFound("An AuditEvent has only version 1")
    raise InvalidSearch("AuditEvent is served by read and search only (no _history)")


def ride_along() -> None:
    """A /fhir before-hook: a write brings its AuditEvent into its own database transaction."""
    if request.endpoint not in _RIDING or (request.view_args or {}).get("rtype") == "AuditEvent" \
            or not trail().enabled:
        return
    rider = g.audit_rider = WriteAudit(_written_access)
    riders.ride(rider)


def _drop_rider(_exc: BaseException | None) -> None:
    riders.clear()


def _patients_of_current(rtype: Any, rid: Any) -> list[str]:
    """The patients a resource about to be deleted names (its answer will not)."""
    try:
        stored = services().store.read(str(rtype), str(rid))
    except Exception:  # noqa: BLE001 - not found, gone, bad type: the view answers that
        return []
    raw = (stored.raw or "").encode()
    return [f"Patient/{m.decode()}" for m in _PATIENT_REF.findall(raw)]


def _require_system_scope(permission: str) -> None:
    grant = current_grant()
    if grant is None:
        return  # open_api (development); without a token the authorizer refused already
    if not any(s.context == "system" for s in grant.scopes.covering(permission, "AuditEvent")):
        raise Forbidden("The audit trail needs a system/ scope (system/AuditEvent.rs)")


def _check_bundle(raw: bytes) -> None:
    try:
        bundle = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return  # the view answers the bad JSON
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        req = entry.get("request") if isinstance(entry.get("request"), dict) else {}
        method = str(req.get("method", "")).upper()
        url = str(req.get("url", ""))
        resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else {}
        if method != "GET" and (resource.get("resourceType") == "AuditEvent"
                                or url.lstrip("/").startswith("AuditEvent")):
            raise Forbidden("AuditEvent is append-only: a transaction cannot write one")
        if method == "GET" and url.lstrip("/").startswith("AuditEvent"):
            raise Forbidden("Read the audit trail with GET /fhir/AuditEvent, not in a Bundle")


# ------------------------------------------------------------------ record


def _relative(reference: str | None) -> str | None:
    if not reference:
        return None
    match = re.search(r"(?:^|/)((?:Patient|Practitioner|PractitionerRole|RelatedPerson|Person|"
                      r"Device)/[A-Za-z0-9\-.]{1,64})$", reference)
    return match.group(1) if match else reference[:255]


def _param_patients() -> list[str]:
    found = []
    for key, value in request.args.items(multi=True):
        name = key.split(":", 1)[0].split(".", 1)[0]
        if name not in _PATIENT_PARAMS:
            continue
        for item in value.split(","):
            item = item.strip()
            if item.startswith("Patient/"):
                found.append(item)
            elif name == "_id" and (request.view_args or {}).get("rtype") == "Patient" and item:
                found.append(f"Patient/{item}")
            elif name == "patient" and item and "/" not in item:
                found.append(f"Patient/{item}")
    return found


def _answer_bytes(response: Response) -> bytes:
    if response.is_streamed or response.direct_passthrough:
        return b""
    length = response.calculate_content_length()
    if length is None or length > _SCAN_LIMIT:
        return b""
    return response.get_data()


def _rest_access(response: Response) -> Access:
    endpoint = request.endpoint or ""
    body = _answer_bytes(response) if response.status_code < 300 else b""
    written: list[str] = []
    if endpoint == "fhir.create" and response.status_code < 300:
        location = response.headers.get("Location", "")
        match = re.search(r"/([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})/_history/", location)
        if match:
            written.append(match.group(1))
    batch = False
    if endpoint == "fhir.transaction" and body:
        written += [m.decode() for m in _LOCATION.findall(body)]
        batch = b'"type":"batch-response"' in body
    return _access_for(response.status_code, body, written, batch=batch)


def _written_access(results: Sequence[WriteResult]) -> Access:
    """The Access of a /fhir write, from what its transaction wrote (see :func:`ride_along`)."""
    status = {"fhir.create": 201, "fhir.delete": 204}.get(request.endpoint or "", 200)
    if request.endpoint == "fhir.update":
        view = request.view_args or {}
        mine = next((r for r in results if r.stored.resource_type == view.get("rtype")
                     and r.stored.id == view.get("rid")), results[0])
        status = 201 if mine.created else 200
    body = b"\n".join(r.stored.raw.encode() for r in results if r.stored.raw)
    return _access_for(status, body, [r.stored.reference for r in results])


def _access_for(status: int, body: bytes, written: list[str], *, batch: bool = False) -> Access:
    """The Access of a /fhir request: ``body`` is scanned for patients, ``written`` the
    resources it wrote (``Type/id``)."""
    endpoint = request.endpoint or ""
    subtype, action = _INTERACTIONS.get(endpoint, ("operation", "E"))
    view = request.view_args or {}
    rtype, rid = view.get("rtype"), view.get("rid")
    grant = current_grant()
    patients: list[str] = []
    what: list[str] = []
    if grant is not None and grant.patient:
        patients.append(f"Patient/{grant.patient}")
    if rtype == "Patient" and rid:
        patients.append(f"Patient/{rid}")
    if rtype and rid:
        what.append(f"{rtype}/{rid}")
    if request.query_string:  # a read by id has none: nothing to parse
        patients += _param_patients()
    patients += g.get("audit_patients") or []
    if body:
        patients += [f"Patient/{m.decode()}" for m in _PATIENT_REF.findall(body)]
    what += written
    if endpoint == "fhir.update" and status == 201:
        subtype, action = "create", "C"
    if batch:
        subtype = "batch"
    if rtype == "AuditEvent":
        patients = _param_patients()  # the events' own entities are not accessed patient data
    patients += [w for w in what if w.startswith("Patient/")]
    who = None
    client_id = None
    if grant is not None:
        who = _relative(grant.fhir_user) or (f"Patient/{grant.patient}" if grant.patient else None)
        client_id = grant.client_id or None
    query_type = rtype if subtype.startswith(("search", "history")) else None
    if endpoint.startswith("fhir_bulk.export_") and endpoint != "fhir_bulk.export_download":
        query_type = "$export"
    return Access(type=TYPE_REST, subtype=subtype, action=action,
                  outcome=outcome_for_status(status), who=who, client_id=client_id,
                  address=request.remote_addr, patients=tuple(patients), what=tuple(what),
                  query_type=query_type)


def _page_access(response: Response) -> Access | None:
    endpoint = request.endpoint or ""
    blueprint = request.blueprint or ""
    view = request.view_args or {}
    who = client_id = None
    patients: list[str] = []
    if blueprint == "patient":
        data = session.get(SESSION_KEY)
        if isinstance(data, dict) and data.get("patient"):
            who = f"Patient/{data['patient']}"
            patients.append(who)
    else:
        active = current_launch()
        if active is not None:
            ctx = active.context
            who = (f"Practitioner/{ctx.local_practitioner}" if ctx.local_practitioner
                   else _relative(ctx.fhir_user))
            client_id = ctx.client_id
            if ctx.local_patient:
                patients.append(f"Patient/{ctx.local_patient}")
    for key in ("patient_id", "patient"):
        if isinstance(view.get(key), str):
            patients.append(f"Patient/{view[key]}")
    what = [f"Task/{view['task_id']}"] if isinstance(view.get("task_id"), str) else []
    if not patients and not what and response.status_code < 400:
        return None  # nothing about a patient (library, style, sign-out page...)
    action = "R" if request.method in ("GET", "HEAD") else "U"
    return Access(type=TYPE_PATIENT_RECORD, subtype=endpoint or blueprint, subtype_system=HW_SUBTYPE,
                  action=action, outcome=outcome_for_status(response.status_code), who=who,
                  client_id=client_id, address=request.remote_addr, patients=tuple(patients),
                  what=tuple(what))


def _token_failure(response: Response) -> Access | None:
    """A refused token request (bad client assertion, code, refresh token...): a failed login."""
    if response.status_code < 400:
        return None
    client = request.form.get("client_id") or (request.authorization.username
                                                if request.authorization else None)
    return Access(type=TYPE_LOGIN, subtype="110122", subtype_system=DCM, action="E",
                  outcome=outcome_for_status(response.status_code), client_id=client or None,
                  address=request.remote_addr)


def _record(response: Response) -> Response:
    endpoint = request.endpoint or ""
    blueprint = request.blueprint or ""
    if endpoint in _SKIP or request.method == "OPTIONS":
        return response
    rider = g.get("audit_rider")
    if rider is not None and rider.done and response.status_code < 400:
        return response  # committed with the write (ride_along)
    if endpoint in _TOKEN_ENDPOINTS:
        access = _token_failure(response)
    elif blueprint in _REST_BLUEPRINTS:
        access = _rest_access(response)
    elif blueprint in _PAGE_BLUEPRINTS or endpoint == "launch.home":
        access = _page_access(response)
    else:
        return response
    if access is not None:
        trail().record(access, now=request.method not in ("GET", "HEAD"))
    return response


def init_app(app: Flask) -> None:
    """Record AuditEvents after every request touching patient data; guard AuditEvent on /fhir."""
    state = app_state(app)
    settings = state.services.settings
    state.audit = trail_for(state.services.store, enabled=settings.audit)
    before_fhir_request(guard_audit_events, app)
    before_fhir_request(ride_along, app)
    app.after_request(_record)
    app.teardown_request(_drop_rider)
