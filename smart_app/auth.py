"""SMART on /fhir, wired once per app: the token store, the token endpoints, the security statement.

:func:`init_app` (called by create_app) creates the :class:`~hw_fhir.smart.authstore.AuthStore`
every issued token is looked up in, registers hw-fhir's own Backend Services
authorization server (:mod:`smart_app.backend`), and makes the CapabilityStatement
announce SMART-on-FHIR (``rest.security``, built per request since its URLs depend on
the host). The check of each /fhir request is :mod:`smart_app.fhir_auth`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from hw_fhir.smart.authstore import AuthStore
from hw_fhir.smart.client import OAUTH_URIS_EXTENSION

from . import backend
from .cors import cors_enabled
from .state import app_state

__all__ = ["init_app", "security_statement"]

_SECURITY_SERVICE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
    "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
}


def security_statement() -> dict[str, Any] | None:
    """The CapabilityStatement's ``rest.security`` for the current request (None with open_api)."""
    state = app_state()
    settings = state.services.settings
    if settings.open_api:
        return None
    security: dict[str, Any] = {"cors": cors_enabled(settings), "service": [_SECURITY_SERVICE],
                                "description": "Send 'Authorization: Bearer <token>'; SMART App Launch "
                                               "2.x scopes (v1 and v2) are enforced."}
    uris = state.smart_oauth_uris
    if uris is not None:
        security["extension"] = [{"url": OAUTH_URIS_EXTENSION, "extension": [
            {"url": name, "valueUri": url} for name, url in uris().items()]}]
    return security


def init_app(app: Flask) -> None:
    """Create the token store, register the Backend Services token endpoint, announce SMART."""
    state = app_state(app)
    state.smart_auth = AuthStore(state.services.store)
    backend.init_app(app, state.smart_auth)
    state.capability_security = security_statement
