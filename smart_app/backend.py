"""hw-fhir's own token endpoint for SMART Backend Services: ``POST /auth/token``.

Always on (production too). Only ``grant_type=client_credentials`` with a
``private_key_jwt`` client assertion (:mod:`hw_fhir.smart.backend` does the
checks); clients come from ``[[smart.backend_clients]]`` in the config file.
Tokens are stored in :class:`~hw_fhir.smart.authstore.AuthStore`, where the /fhir
authorizer (:mod:`smart_app.auth`) looks them up.

When the sandbox is off this module also serves
``/fhir/.well-known/smart-configuration``; when it is on, the sandbox serves its
own (richer) document there.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from flask import Blueprint, Flask, Response, current_app, jsonify, request

from hw_fhir.smart.authserver import ClientRegistration
from hw_fhir.smart.authstore import AuthStore
from hw_fhir.smart.backend import (
    ASSERTION_ALGORITHMS,
    BackendServicesGrant,
    backend_assertion,
    backend_clients,
    generate_backend_token,
    save_backend_token,
)

from .fhir_api import fhir_base
from .security import csrf_exempt

__all__ = ["bp", "init_app", "token_url", "smart_configuration"]

bp = Blueprint("backend_auth", __name__)


def _server() -> AuthorizationServer:
    return current_app.extensions["hw_fhir_backend_server"]  # type: ignore[no-any-return]


def _clients() -> dict[str, ClientRegistration]:
    return current_app.extensions["hw_fhir_backend_clients"]  # type: ignore[no-any-return]


def token_url() -> str:
    """Return the URL of this token endpoint (what client assertions must name as ``aud``)."""
    settings = current_app.extensions["hw_fhir"].settings
    return f"{(settings.base_url or request.url_root).rstrip('/')}/auth/token"


@bp.post("/auth/token")
@csrf_exempt
def token() -> Response:
    """Issue a Backend Services access token (client_credentials + private_key_jwt only)."""
    return _server().create_token_response()  # type: ignore[no-any-return]


def smart_configuration() -> Response:
    """Return the SMART configuration of hw-fhir's own authorization server (Backend Services)."""
    scopes = sorted({s for client in _clients().values() for s in client.scope.split()})
    response = jsonify({
        "issuer": fhir_base(),
        "token_endpoint": token_url(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": scopes,
        "capabilities": ["client-confidential-asymmetric"],
    })
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def init_app(app: Flask, auth_store: AuthStore) -> None:
    """Register /auth/token (and the SMART configuration when the sandbox is off)."""
    settings = app.extensions["hw_fhir"].settings
    clients = backend_clients((settings.extra or {}).get("smart") or {})
    server = AuthorizationServer()
    server.init_app(app, query_client=clients.get, save_token=save_backend_token(auth_store))
    server.register_token_generator("default", generate_backend_token)
    server.register_client_auth_method("private_key_jwt", backend_assertion(auth_store, lambda: [token_url()]))
    server.register_grant(BackendServicesGrant)
    app.extensions["hw_fhir_backend_server"] = server
    app.extensions["hw_fhir_backend_clients"] = clients
    app.register_blueprint(bp)
    if not settings.sandbox:
        app.add_url_rule("/fhir/.well-known/smart-configuration", "backend_auth.smart_configuration",
                         smart_configuration)
        app.extensions["hw_fhir_smart_oauth_uris"] = lambda: {"token": token_url()}
