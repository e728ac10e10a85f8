"""hw-fhir's authorization server front: token, introspection, revocation and discovery.

One story for every client kind. Routes (all CORS-enabled, see :mod:`smart_app.cors`):

* ``POST /auth/token`` — the token endpoint. Sandbox off (production): hw-fhir's own
  Backend Services server (``client_credentials`` + ``private_key_jwt``, clients from
  ``[[smart.backend_clients]]``, checks in :mod:`hw_fhir.smart.backend`). Sandbox on:
  the sandbox's server, which serves sandbox users' apps, ``[[smart.sandbox_clients]]``
  *and* the Backend Services clients; ``/sandbox/token`` is the same server.
* ``POST /auth/introspect`` (RFC 7662) and ``POST /auth/revoke`` (RFC 7009), authlib's
  endpoint classes (:mod:`hw_fhir.smart.token_endpoints`) on the same server.
* ``GET /fhir/.well-known/smart-configuration`` (both modes) and, with the sandbox on
  (it issues id_tokens), ``GET /fhir/.well-known/openid-configuration`` whose
  ``issuer`` is the ``iss`` of every id_token (:mod:`hw_fhir.smart.discovery`).

Self-URLs (the audience client assertions must name, discovery links) come from
``HW_FHIR_BASE_URL``, required in production; in development without it they are
taken from the request's Host. OAuth requests over plain http to a non-local host
get a 400 ``insecure_transport`` OAuth error.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Flask, Response, jsonify, request

from hw_fhir.smart.authserver import ClientRegistration
from hw_fhir.smart.authstore import AuthStore
from hw_fhir.smart.backend import (
    BackendServicesGrant,
    backend_assertion,
    backend_clients,
    generate_backend_token,
    save_backend_token,
)
from hw_fhir.smart.discovery import SANDBOX_SCOPES, ServerUrls, openid_configuration
from hw_fhir.smart.discovery import smart_configuration as build_smart_configuration
from hw_fhir.smart.token_endpoints import introspection_endpoint, public_client_auth, revocation_endpoint

from .fhir_api import fhir_base
from .security import csrf_exempt
from .state import app_state

__all__ = ["bp", "init_app", "token_url", "server_base", "server_urls", "oauth_response",
           "register_token_endpoints", "assertion_audiences", "smart_configuration"]

bp = Blueprint("backend_auth", __name__)


def _server() -> AuthorizationServer:
    """The server answering /auth/*: the sandbox's when it runs, else the Backend Services one."""
    state = app_state()
    if state.sandbox is not None:
        return state.sandbox.server  # type: ignore[no-any-return]
    assert state.backend_server is not None, "init_app builds it"
    return state.backend_server


def _clients() -> dict[str, ClientRegistration]:
    return app_state().backend_clients


def _sandbox_on() -> bool:
    return app_state().sandbox is not None


def server_base() -> str:
    """The app's base URL: ``HW_FHIR_BASE_URL`` (required in production), else the request's."""
    settings = app_state().services.settings
    return (settings.base_url or request.url_root).rstrip("/")


def token_url() -> str:
    """Return the URL of the /auth/token endpoint."""
    return f"{server_base()}/auth/token"


def assertion_audiences() -> list[str]:
    """The ``aud`` values a client assertion may name: this server's token endpoints."""
    urls = [token_url(), f"{server_base()}/auth/introspect", f"{server_base()}/auth/revoke"]
    if _sandbox_on():
        urls.append(f"{server_base()}/sandbox/token")
    return urls


def server_urls() -> ServerUrls:
    """Return the authorization server's URLs for the current request."""
    base = server_base()
    if _sandbox_on():
        return ServerUrls(fhir_base=fhir_base(), token=f"{base}/sandbox/token",
                          introspection=f"{base}/auth/introspect", revocation=f"{base}/auth/revoke",
                          authorization=f"{base}/sandbox/authorize", jwks=f"{base}/sandbox/jwks.json")
    return ServerUrls(fhir_base=fhir_base(), token=token_url(), introspection=f"{base}/auth/introspect",
                      revocation=f"{base}/auth/revoke")


def oauth_response(server: AuthorizationServer, endpoint: str | None = None) -> Response:
    """Run the token endpoint (or a named endpoint) of ``server``; OAuth errors stay OAuth errors."""
    try:
        if endpoint is None:
            return server.create_token_response()  # type: ignore[no-any-return]
        return server.create_endpoint_response(endpoint)  # type: ignore[no-any-return]
    except OAuth2Error as error:  # raised before authlib's own handling: InsecureTransportError
        if error.error == "insecure_transport":
            error.description = ("OAuth requests must use https (plain http is accepted only on "
                                 "localhost); set HW_FHIR_BASE_URL to the https URL of this server")
        return server.handle_error_response(None, error)  # type: ignore[no-any-return]


@bp.post("/auth/token")
@csrf_exempt
def token() -> Response:
    """Issue an access token to any registered client (see the module docstring)."""
    return oauth_response(_server())


@bp.post("/auth/introspect")
@csrf_exempt
def introspect() -> Response:
    """Answer an RFC 7662 token introspection request."""
    return oauth_response(_server(), "introspection")


@bp.post("/auth/revoke")
@csrf_exempt
def revoke() -> Response:
    """Answer an RFC 7009 token revocation request."""
    return oauth_response(_server(), "revocation")


def _scopes() -> list[str]:
    backend = sorted({s for client in _clients().values() for s in client.scope.split()})
    if not _sandbox_on():
        return backend
    return SANDBOX_SCOPES + [s for s in backend if s not in SANDBOX_SCOPES]


def _public_json(data: dict[str, Any]) -> Response:
    response = jsonify(data)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/fhir/.well-known/smart-configuration")
def smart_configuration() -> Response:
    """Return the SMART configuration of the authorization server (SMART App Launch 2.2)."""
    sandbox = _sandbox_on()
    return _public_json(build_smart_configuration(server_urls(), sandbox=sandbox, scopes=_scopes()))


@bp.get("/fhir/.well-known/openid-configuration")
def openid_discovery() -> Response | tuple[Response, int]:
    """Return OpenID Connect discovery at the issuer (sandbox only: no id_tokens otherwise)."""
    if not _sandbox_on():
        return _public_json({"error": "not_found",
                             "error_description": "This server issues no id_tokens (OpenID Connect "
                                                  "runs only with the sandbox EHR)"}), 404
    return _public_json(openid_configuration(server_urls(), scopes=_scopes()))


def register_token_endpoints(server: AuthorizationServer, auth_store: AuthStore) -> None:
    """Add introspection, revocation and public-client refresh to an authorization server."""
    server.register_client_auth_method("none", public_client_auth(auth_store))
    server.register_client_auth_method("private_key_jwt", backend_assertion(auth_store, assertion_audiences))
    server.register_endpoint(introspection_endpoint(auth_store, fhir_base))
    server.register_endpoint(revocation_endpoint(auth_store))


def init_app(app: Flask, auth_store: AuthStore) -> None:
    """Register /auth/* and the discovery documents."""
    state = app_state(app)
    settings = state.services.settings
    clients = backend_clients((settings.extra or {}).get("smart") or {})
    server = AuthorizationServer()
    server.init_app(app, query_client=clients.get, save_token=save_backend_token(auth_store))
    server.register_token_generator("default", generate_backend_token)
    register_token_endpoints(server, auth_store)
    server.register_grant(BackendServicesGrant)
    state.backend_server = server
    state.backend_clients = clients
    app.register_blueprint(bp)
    state.smart_oauth_uris = lambda: {
        name: url for name, url in (
            ("authorize", server_urls().authorization), ("token", server_urls().token),
            ("introspect", server_urls().introspection), ("revoke", server_urls().revocation)) if url}
