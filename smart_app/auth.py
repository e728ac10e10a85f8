"""Authorization on /fhir: bearer token → scopes and context → allow or deny.

Registered in create_app. Every /fhir request except ``GET /fhir/metadata``
needs ``Authorization: Bearer <token>`` with a token the authorization server
issued (looked up in the shared database): hw-fhir's own Backend Services
endpoint ``/auth/token`` (:mod:`smart_app.backend`) or the sandbox's. The request then runs against a
:class:`~hw_fhir.smart.guard.GuardedStore` (``g.fhir_store``) that enforces the
token's scopes, the patient compartment and granular filters. Denials are
OperationOutcomes with 401/403 and a ``WWW-Authenticate: Bearer`` challenge.
With ``open_api`` (development only) /fhir is served without any check.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from flask import Flask, current_app, g, request

from hw_fhir.smart.authstore import AuthStore
from hw_fhir.smart.client import OAUTH_URIS_EXTENSION
from hw_fhir.smart.care_team import my_patients
from hw_fhir.smart.guard import GuardedStore
from hw_fhir.smart.policy import AccessPolicy, Grant, unauthorized

from .cors import cors_enabled

__all__ = ["init_app", "authorize_fhir_request", "current_grant", "PUBLIC_ENDPOINTS"]

#: /fhir endpoints served without a token.
PUBLIC_ENDPOINTS = {"fhir.metadata"}

_SECURITY_SERVICE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
    "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
}


def _auth_store() -> AuthStore:
    return current_app.extensions["hw_fhir_smart_auth"]  # type: ignore[no-any-return]


def authorize_fhir_request() -> None:
    """Check the bearer token of a /fhir request and install the guarded store."""
    services = current_app.extensions["hw_fhir"]
    if services.settings.open_api:
        return
    if request.endpoint in PUBLIC_ENDPOINTS or request.method == "OPTIONS":
        return
    header = request.headers.get("Authorization", "").strip()
    if not header:
        raise unauthorized("This FHIR API needs an access token: send 'Authorization: Bearer <token>'",
                           error=None)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Only 'Authorization: Bearer <token>' is accepted", error="invalid_request")
    record = _auth_store().introspect(token.strip())
    if record is None:
        raise unauthorized("The access token is unknown, expired or revoked")
    grant = Grant.from_token(record.scope, record.client_id, record.context)
    if services.settings.user_access == "my-patients" and "user" in grant.scopes.contexts:
        grant = replace(grant, patients=my_patients(services.store, grant.fhir_user))
    g.smart_grant = grant
    g.fhir_store = GuardedStore(services.store, AccessPolicy(grant))
    return


def current_grant() -> Grant | None:
    """Return the Grant of the current /fhir request (None with open_api or outside /fhir)."""
    return g.get("smart_grant")


class _Capabilities(dict):  # type: ignore[type-arg]
    """``hw_fhir_capabilities`` whose ``security`` is built per request (URLs depend on the host)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key == "security":
            return _security() or default
        return super().get(key, default)


def _security() -> dict[str, Any] | None:
    if current_app.extensions["hw_fhir"].settings.open_api:
        return None
    security: dict[str, Any] = {"cors": cors_enabled(current_app.extensions["hw_fhir"].settings), "service": [_SECURITY_SERVICE],
                                "description": "Send 'Authorization: Bearer <token>'; SMART App Launch "
                                               "2.x scopes (v1 and v2) are enforced."}
    uris: Callable[[], dict[str, str]] | None = current_app.extensions.get("hw_fhir_smart_oauth_uris")
    if uris is not None:
        security["extension"] = [{"url": OAUTH_URIS_EXTENSION, "extension": [
            {"url": name, "valueUri": url} for name, url in uris().items()]}]
    return security


def init_app(app: Flask) -> None:
    """Register the /fhir authorizer, the Backend Services token endpoint, the CapabilityStatement's security."""
    from . import backend

    app.extensions["hw_fhir_smart_auth"] = AuthStore(app.extensions["hw_fhir"].store)
    backend.init_app(app, app.extensions["hw_fhir_smart_auth"])
    app.extensions.setdefault("hw_fhir_before_fhir", []).append(authorize_fhir_request)
    app.extensions["hw_fhir_capabilities"] = _Capabilities(app.extensions.get("hw_fhir_capabilities") or {})
