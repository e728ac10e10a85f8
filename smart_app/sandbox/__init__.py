"""The sandbox EHR: a real SMART authorization server over the app's own /fhir, plus EHR pages.

On only when ``settings.sandbox`` is set (``hw-fhir demo`` sets it; production
refuses it). Pages: ``/sandbox/`` (an EHR that launches hw-fhir in an iframe),
``/sandbox/portal`` (a patient portal for the standalone launch). OAuth:
``/sandbox/authorize``, ``/sandbox/token`` (the same server also answers
``/auth/token``, ``/auth/introspect`` and ``/auth/revoke``, and is described by
``/fhir/.well-known/smart-configuration`` — see :mod:`smart_app.backend`),
``/sandbox/jwks.json``.

Clients: hw-fhir itself (``hw-fhir-app``, public, redirect ``{base}/callback``),
every ``[[smart.backend_clients]]`` Backend Services client, and any listed in the
config file::

    [[smart.sandbox_clients]]
    client_id = "sync-job"
    token_endpoint_auth_method = "private_key_jwt"   # none | client_secret_basic | private_key_jwt
    jwks_uri = "https://sync.example.org/jwks.json"  # or an inline jwks = { keys = [...] }
    scope = "system/*.rs"
    # redirect_uris = ["https://app.example.org/callback"]  (authorization_code clients)
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request

from hw_fhir.smart.authserver import ClientRegistration, client_from_config
from hw_fhir.smart.authstore import AuthStore
from hw_fhir.smart.keys import load_or_create_key
from hw_fhir.smart.registry import SANDBOX_CLIENT_ID

from ..backend import register_token_endpoints
from ..fhir_api import fhir_base
from ..state import app_state
from . import views
from .context import Sandbox, app_base, sandbox
from .server import SandboxEndpoints, build_server

__all__ = ["init_app", "Sandbox", "sandbox", "app_base", "APP_CLIENT_SCOPE"]

#: What the built-in hw-fhir client may be granted.
APP_CLIENT_SCOPE = ("launch launch/patient openid fhirUser profile offline_access online_access "
                    "patient/*.cruds user/*.cruds")


def _app_client() -> ClientRegistration:
    settings = app_state().services.settings
    uris = {f"{app_base()}/callback", f"{request.url_root.rstrip('/')}/callback"}
    if settings.base_url:
        uris.add(f"{settings.base_url.rstrip('/')}/callback")
    return ClientRegistration(client_id=SANDBOX_CLIENT_ID, auth_method="none",
                              redirect_uris=tuple(sorted(uris)), scope=APP_CLIENT_SCOPE,
                              name="hw-fhir")


def _query_client(client_id: str) -> ClientRegistration | None:
    if client_id == SANDBOX_CLIENT_ID:
        return _app_client()
    found = sandbox().clients.get(client_id)
    if found is None:
        found = app_state().backend_clients.get(client_id)
    return found


def init_app(app: Flask) -> None:
    """Turn the sandbox on for an app (call only when settings.sandbox is set)."""
    state = app_state(app)
    services = state.services
    settings = services.settings
    config = (settings.extra or {}).get("smart") or {}
    clients = {c.client_id: c
               for c in (client_from_config(item) for item in config.get("sandbox_clients") or [])}
    key = load_or_create_key(Path(settings.instance_path) / "sandbox_signing_key.json", "RS256")
    auth_store = state.smart_auth or AuthStore(services.store)
    endpoints = SandboxEndpoints(fhir_base=fhir_base, token_url=lambda: f"{app_base()}/sandbox/token",
                                 query_client=_query_client)
    server = build_server(app, auth_store=auth_store, endpoints=endpoints, signing_key=key)
    register_token_endpoints(server, auth_store)
    state.sandbox = Sandbox(server, key, clients, auth_store)
    app.register_blueprint(views.bp)
