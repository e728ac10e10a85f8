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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app, request

from hw_fhir.smart.authserver import ClientRegistration, client_from_config
from hw_fhir.smart.authstore import AuthStore
from hw_fhir.smart.keys import load_or_create_key
from hw_fhir.smart.registry import SANDBOX_CLIENT_ID

from ..backend import register_token_endpoints
from ..fhir_api import fhir_base
from .server import SandboxEndpoints, build_server

__all__ = ["init_app", "Sandbox", "sandbox", "app_base", "APP_CLIENT_SCOPE"]

#: What the built-in hw-fhir client may be granted.
APP_CLIENT_SCOPE = ("launch launch/patient openid fhirUser profile offline_access online_access "
                    "patient/*.cruds user/*.cruds")


@dataclass
class Sandbox:
    """The sandbox's parts for one app: the authlib server, signing key, clients, records."""

    server: Any
    signing_key: Any
    clients: dict[str, ClientRegistration]
    auth_store: AuthStore


def sandbox() -> Sandbox:
    """Return the current app's sandbox."""
    return current_app.extensions["hw_fhir_sandbox"]  # type: ignore[no-any-return]


def app_base() -> str:
    """The app's base URL: the configured one, or the one this request came in on."""
    settings = current_app.extensions["hw_fhir"].settings
    return (settings.base_url or request.url_root).rstrip("/")


def _app_client() -> ClientRegistration:
    settings = current_app.extensions["hw_fhir"].settings
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
        found = current_app.extensions.get("hw_fhir_backend_clients", {}).get(client_id)
    return found  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    """Turn the sandbox on for an app (call only when settings.sandbox is set)."""
    from . import views

    services = app.extensions["hw_fhir"]
    settings = services.settings
    config = (settings.extra or {}).get("smart") or {}
    clients = {c.client_id: c
               for c in (client_from_config(item) for item in config.get("sandbox_clients") or [])}
    key = load_or_create_key(Path(settings.instance_path) / "sandbox_signing_key.json", "RS256")
    auth_store = app.extensions.get("hw_fhir_smart_auth") or AuthStore(services.store)
    endpoints = SandboxEndpoints(fhir_base=fhir_base, token_url=lambda: f"{app_base()}/sandbox/token",
                                 query_client=_query_client)
    server = build_server(app, auth_store=auth_store, endpoints=endpoints, signing_key=key)
    register_token_endpoints(server, auth_store)
    app.extensions["hw_fhir_sandbox"] = Sandbox(server, key, clients, auth_store)
    app.register_blueprint(views.bp)
