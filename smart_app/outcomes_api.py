"""Outcomes on the /fhir API: scoring after writes, ``GET /fhir/Patient/<id>/$measure-progress``.

Every path scores. A QuestionnaireResponse created or updated through /fhir (also
inside a transaction or batch Bundle) is scored by :func:`score_written` /
:func:`score_bundle` before the response returns, so
``Observation?derived-from=QuestionnaireResponse/<id>`` finds the scores at once; a
response the SDC workflow completed was already scored by its ``response_completed``
event (:mod:`hw_fhir.default_scoring`), and is answered with those scores, not scored twice.

Scoring errors on /fhir: the response is already stored when scoring runs, and it is
never lost nor turned into an error (never a 500). The write answers as usual
(201/200, the stored response — its newest version when calculated items were filled
in — with the ETag and Location of that version). What could not be scored is
reported as warnings: in the ``Warning`` header (``199 hw-fhir "<text>"`` per
warning, comma separated); with ``Prefer: return=OperationOutcome`` as ``warning``
issues of the OperationOutcome; in a Bundle as ``entry.response.outcome``. Scoring
writes with the server's own store: the derived Observations, Flags and alerts are
the server's, whatever the client's scopes.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, request

from hw_fhir import outcomes
from hw_fhir.errors import InvalidSearch, Issue, operation_outcome
from hw_fhir.store import Stored, WriteResult

from .errors import FHIR_JSON
from .fhir_auth import fhir_store, protect
from .state import app_state, services

__all__ = ["bp", "init_app", "score_written", "score_bundle", "warning_headers", "OPERATION"]

bp = protect(Blueprint("outcomes", __name__, url_prefix="/fhir"))  # the one /fhir authorizer

#: The CapabilityStatement entry of ``$measure-progress``.
OPERATION = {
    "name": "measure-progress",
    "definition": outcomes.PROGRESS_OPERATION,
    "documentation": "GET /fhir/Patient/<id>/$measure-progress[?instrument=phq-9]: baseline, "
                     "latest, change and outcome labels (response, remission, reliable change, "
                     "deterioration) per instrument, as Parameters.",
}
_MAX_WARNING = 300


def init_app(app: Flask) -> None:
    """Register ``$measure-progress`` and list it in the CapabilityStatement.

    Scoring on completion is the built-in plugin :mod:`hw_fhir.default_scoring`,
    reached through ``services.events`` (pass it as ``events=`` to the completion
    functions); nothing is subscribed here.
    """
    app.register_blueprint(bp)
    operations = app_state(app).capability_operations
    if OPERATION not in operations:
        operations.append(OPERATION)


@bp.get("/Patient/<pid>/$measure-progress")
def measure_progress(pid: str) -> Response:
    """Return a patient's measurement-based-care progress as Parameters."""
    unknown = sorted(set(request.args) - {"instrument", "_format"})
    if unknown:
        raise InvalidSearch(f"$measure-progress does not take {', '.join(unknown)}")
    store = fhir_store()
    patient = store.read("Patient", pid).resource
    instruments = request.args.getlist("instrument") or None
    body = outcomes.measure_progress(store, f"Patient/{patient['id']}", instruments)
    return Response(orjson.dumps(body), status=200, content_type=FHIR_JSON)


# -------------------------------------------------------------- after writes


def _ascii(text: str) -> str:
    flat = unicodedata.normalize("NFKD", text).encode("ascii", "replace").decode("ascii")
    flat = " ".join(flat.replace('"', "'").replace("\\", "/").split())
    return flat if len(flat) <= _MAX_WARNING else flat[: _MAX_WARNING - 3] + "..."


def warning_headers(warnings: list[Issue] | None) -> dict[str, str]:
    """Return a ``Warning`` header (``199 hw-fhir "<text>"`` per scoring warning)."""
    if not warnings:
        return {}
    return {"Warning": ", ".join(f'199 hw-fhir "{_ascii(w.message)}"' for w in warnings)}


def score_written(result: WriteResult) -> tuple[WriteResult, list[Issue]]:
    """Score a QuestionnaireResponse the /fhir API just stored; other writes pass through.

    Return the write result to answer with (the response's newest version) and the
    scoring warnings. Never raises.
    """
    stored = result.stored
    if stored.resource_type != "QuestionnaireResponse" or stored.deleted or not stored.raw:
        return result, []
    recorded = outcomes.scores_for_written(services(), stored.resource, created=result.created)
    newest = recorded.response
    if (newest.get("meta") or {}).get("versionId") not in (None, stored.version_id):
        result = WriteResult(Stored.from_resource(dict(newest)), created=result.created)
    return result, list(recorded.warnings)


def _entry_target(entry: dict[str, Any]) -> str | None:
    resource = entry.get("resource") or {}
    if resource.get("resourceType") == "QuestionnaireResponse" and resource.get("id"):
        return str(resource["id"])
    location = str((entry.get("response") or {}).get("location", ""))
    if location.startswith("QuestionnaireResponse/"):
        return location.split("/")[1]
    return None


def score_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """Score the QuestionnaireResponses a transaction or batch wrote; return the response Bundle.

    An entry whose response gained a version gets it (resource, etag, location); its
    warnings go to ``entry.response.outcome``. Never raises.
    """
    svc = services()
    for entry in bundle.get("entry") or []:
        status = str((entry.get("response") or {}).get("status", ""))
        rid = _entry_target(entry)
        if rid is None or not status.startswith(("200", "201")):
            continue
        try:
            response = (entry.get("resource")
                        or svc.store.read("QuestionnaireResponse", rid).resource)
        except Exception:  # noqa: BLE001 - deleted since, or unreadable: nothing to score
            continue
        recorded = outcomes.scores_for_written(svc, response, created=status.startswith("201"))
        newest = recorded.response
        version = (newest.get("meta") or {}).get("versionId")
        if version and version != (response.get("meta") or {}).get("versionId"):
            if "resource" in entry:
                entry["resource"] = dict(newest)
            entry["response"].update({
                "location": f"QuestionnaireResponse/{rid}/_history/{version}",
                "etag": f'W/"{version}"',
                "lastModified": newest["meta"].get("lastUpdated"),
            })
        if recorded.warnings:
            entry["response"]["outcome"] = operation_outcome(list(recorded.warnings))
    return bundle
