"""Bulk Data ``$export`` and Subscription ``$status`` on /fhir (thin views over hw_fhir.sync).

* ``GET|POST /fhir/$export``, ``/fhir/Patient/$export``, ``/fhir/Group/<id>/$export``
  with ``Prefer: respond-async`` → 202 and ``Content-Location`` (the status URL);
* ``GET /fhir/bulkstatus/<job>`` → 202 with ``X-Progress`` and ``Retry-After`` while
  it runs, 200 with the manifest when done, 500 with an OperationOutcome if it failed;
  ``DELETE`` cancels;
* ``GET /fhir/bulkfiles/<job>/<file>`` → the NDJSON file.

Requests pass the same authorizer as the rest of /fhir (bearer tokens, so no CSRF
token). A job belongs to the client that started it (its ``client_id``, plus the user
or patient of the token when there is one); anyone else gets 404 for its status and files.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import orjson
from flask import Blueprint, Flask, Response, request, send_file

from hw_fhir.errors import InvalidInput, Issue, operation_outcome
from hw_fhir.sync import export as bulk
from hw_fhir.sync import subscriptions

from .errors import FHIR_JSON, outcome_response
from .fhir_api import fhir_base
from .fhir_auth import current_grant, fhir_store, protect
from .security import csrf_exempt
from .state import app_state, services

__all__ = ["bp", "init_app", "job_owner"]

bp = protect(Blueprint("fhir_bulk", __name__, url_prefix="/fhir"))  # the one /fhir authorizer

_RETRY_AFTER = "2"


def init_app(app: Flask) -> None:
    """Register the blueprint and announce the operations in the CapabilityStatement."""
    app.register_blueprint(bp)
    operations = app_state(app).capability_operations
    for operation in bulk.EXPORT_OPERATIONS + subscriptions.SUBSCRIPTION_OPERATIONS:
        if operation not in operations:
            operations.append(operation)


def job_owner() -> str:
    """Who owns the jobs this request may see: the client, plus its user or patient if any."""
    grant = current_grant()
    if grant is None:
        return ""
    who = grant.fhir_user or (f"Patient/{grant.patient}" if grant.patient else "")
    return f"{grant.client_id}|{who}" if who else grant.client_id


def _prefer() -> dict[str, str]:
    out = {}
    for part in request.headers.get("Prefer", "").split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out[key.strip().lower()] = value.strip().strip('"').lower()
    return out


def _parameters_body() -> list[tuple[str, str]]:
    raw = request.get_data(cache=True)
    if not raw:
        return []
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput("The request body is not valid JSON") from None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidInput("POST $export takes a Parameters resource")
    pairs = []
    for p in body.get("parameter") or []:
        if not isinstance(p, dict):
            continue
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if isinstance(value, dict):
            value = value.get("reference") or ""
        pairs.append((str(p.get("name", "")), str(value if value is not None else "")))
    return pairs


def _kickoff(level: str, group_id: str | None = None) -> Response:
    prefer = _prefer()
    if "respond-async" not in prefer:
        raise InvalidInput("$export runs asynchronously: send 'Prefer: respond-async'")
    params = list(request.args.items(multi=True))
    if request.method == "POST":
        params += _parameters_body()
    req = bulk.parse_export_request(params, level=level, group_id=group_id, request_url=request.url,
                                    lenient=prefer.get("handling") == "lenient",
                                    base_url=services().settings.fhir_base)
    if group_id is not None:
        fhir_store().read("Group", group_id)  # 404 / 403 before anything is queued
    grant = current_grant()
    access = bulk.ExportAccess.from_grant(grant) if grant is not None else None
    job = bulk.start_export(services(), req, client_id=job_owner(), access=access)
    location = f"{fhir_base()}/bulkstatus/{job.id}"
    outcome = operation_outcome([Issue(f"The export was queued; poll {location}",
                                       code="informational", severity="information")])
    return Response(orjson.dumps(outcome), status=202, headers={"Content-Location": location},
                    content_type=FHIR_JSON)


@bp.route("/$export", methods=["GET", "POST"])
@csrf_exempt
def export_system() -> Response:
    """Kick off a system-level export."""
    return _kickoff("system")


@bp.route("/Patient/$export", methods=["GET", "POST"])
@csrf_exempt
def export_patients() -> Response:
    """Kick off an export of every patient's data."""
    return _kickoff("patient")


@bp.route("/Group/<group_id>/$export", methods=["GET", "POST"])
@csrf_exempt
def export_group(group_id: str) -> Response:
    """Kick off an export of the data of a Group's member patients."""
    return _kickoff("group", group_id)


def _http_date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, timezone.utc), usegmt=True)


@bp.get("/bulkstatus/<job_id>")
def export_status(job_id: str) -> Response:
    """Report progress, the manifest, or the error of an export."""
    job = bulk.get_export(services(), job_id, job_owner())
    if job.running:
        return Response(status=202, headers={"X-Progress": (job.progress or "Queued")[:100],
                                             "Retry-After": _RETRY_AFTER})
    if job.status == "failed":
        return outcome_response(500, operation_outcome([Issue(job.error or "The export failed",
                                                              code="exception")]))
    base = fhir_base()
    manifest = bulk.export_manifest(
        job, lambda name: f"{base}/bulkfiles/{job.id}/{name}",
        requires_access_token=not services().settings.open_api)
    headers = {"Expires": _http_date(job.expires_at)} if job.expires_at else {}
    return Response(orjson.dumps(manifest), status=200, headers=headers,
                    content_type="application/json")


@bp.delete("/bulkstatus/<job_id>")
@csrf_exempt
def export_cancel(job_id: str) -> Response:
    """Cancel an export and delete its files."""
    bulk.cancel_export(services(), job_id, job_owner())
    return Response(status=202)


@bp.get("/bulkfiles/<job_id>/<name>")
def export_download(job_id: str, name: str) -> Response:
    """Send one NDJSON file of a completed export."""
    path = bulk.export_file(services(), job_id, job_owner(), name)
    return send_file(path, mimetype=bulk.NDJSON, conditional=True, max_age=0)


@bp.get("/Subscription/<sub_id>/$status")
def subscription_status(sub_id: str) -> Response:
    """Return the status of one Subscription (Backport IG ``$status``)."""
    return _status_bundle([sub_id])


@bp.get("/Subscription/$status")
def subscriptions_status() -> Response:
    """Return the status of the Subscriptions named by ``id`` (comma separated)."""
    ids = [i for value in request.args.getlist("id") for i in value.split(",") if i]
    if not ids:
        raise InvalidInput("Name the Subscriptions with ?id=...")
    return _status_bundle(ids)


def _status_bundle(ids: list[str]) -> Response:
    for sub_id in ids:
        fhir_store().read("Subscription", sub_id)  # 404 / 403 as for a read
    bundle = subscriptions.status_bundle(services(), ids, base=fhir_base())
    return Response(orjson.dumps(bundle), status=200, content_type=FHIR_JSON)
