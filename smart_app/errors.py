"""Map errors to HTTP in one place: OperationOutcome under /fhir, a readable page elsewhere."""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, render_template_string, request
from werkzeug.exceptions import HTTPException

from hw_fhir.errors import HwFhirError, Issue, operation_outcome

__all__ = ["init_app", "outcome_response", "FHIR_JSON"]

log = logging.getLogger("hw_fhir.web")

FHIR_JSON = "application/fhir+json; charset=utf-8"

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title></head><body style="font-family: system-ui, sans-serif; max-width: 40rem;
margin: 2rem auto; padding: 0 1rem; line-height: 1.5"><h1>{{ title }}</h1><p>{{ message }}</p>
</body></html>"""

_ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found",
                405: "not-supported", 406: "not-supported", 409: "conflict", 410: "deleted",
                412: "conflict", 413: "too-costly", 415: "not-supported", 422: "business-rule",
                429: "throttled"}


def outcome_response(status: int, outcome: dict, headers: dict | None = None) -> Response:
    """Return an OperationOutcome response."""
    return Response(orjson.dumps(outcome), status=status, headers=headers or {},
                    content_type=FHIR_JSON)


def _wants_fhir() -> bool:
    return request.path.startswith("/fhir") or request.accept_mimetypes.best in (
        "application/fhir+json", "application/json")


def init_app(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(HwFhirError)
    def _hw_error(exc: HwFhirError) -> Response:
        headers = getattr(exc, "headers", None) or {}
        if _wants_fhir():
            return outcome_response(exc.status, exc.outcome, headers)
        return Response(render_template_string(_PAGE, title="Something is not right",
                                               message=exc.message),
                        status=exc.status, headers=headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if _wants_fhir():
            out = operation_outcome([Issue(exc.description or exc.name,
                                           code=_ISSUE_CODES.get(status, "exception"))])
            response = outcome_response(status, out)
            if status == 405 and exc.valid_methods if hasattr(exc, "valid_methods") else False:
                response.headers["Allow"] = ", ".join(exc.valid_methods)
            return response
        return Response(render_template_string(_PAGE, title=exc.name, message=exc.description),
                        status=status)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        message = "The server could not complete the request. The error was logged."
        if _wants_fhir():
            return outcome_response(500, operation_outcome([Issue(message, code="exception")]))
        return Response(render_template_string(_PAGE, title="Something went wrong",
                                               message=message), status=500)
