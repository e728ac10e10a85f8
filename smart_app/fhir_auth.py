"""The one /fhir authorizer: bearer token → grant → guarded store, then the /fhir before-hooks.

Every blueprint that serves FHIR data (:mod:`smart_app.fhir_api`, :mod:`smart_app.bulk_api`,
:mod:`smart_app.outcomes_api`, and any later one) calls :func:`protect` on itself (a
plugin's blueprint under ``/fhir`` is protected when mounted), so each request passes
:func:`authorize_fhir` before its view:

1. :func:`check_bearer_token`: every request except ``GET /fhir/metadata`` (and CORS
   preflights) needs ``Authorization: Bearer <token>`` with a token the authorization
   server issued (looked up in the shared database: hw-fhir's own Backend Services
   endpoint ``/auth/token`` or the sandbox's). The request then runs against a
   :class:`~hw_fhir.smart.guard.GuardedStore` (:func:`fhir_store`) that enforces the
   token's scopes, the patient compartment and granular filters, so a wrong scope or
   another patient's data is refused (403) wherever the data is read. Denials are
   OperationOutcomes with 401/403 and a ``WWW-Authenticate: Bearer`` challenge. With
   ``open_api`` (development only) no token is asked for.
2. The before-hooks registered with :func:`before_fhir_request`, in registration
   order (the audit guard of :mod:`smart_app.audit` is one); a hook returning a
   Response ends the request.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Blueprint, Flask, Response, g, request

from hw_fhir.smart.care_team import my_patients
from hw_fhir.smart.guard import GuardedStore
from hw_fhir.smart.policy import AccessPolicy, Grant, unauthorized

from .state import FhirHook, app_state

__all__ = ["PUBLIC_ENDPOINTS", "authorize_fhir", "before_fhir_request", "check_bearer_token",
           "current_grant", "fhir_store", "is_protected", "protect"]

#: /fhir endpoints served without a token.
PUBLIC_ENDPOINTS = {"fhir.metadata"}


def check_bearer_token() -> None:
    """Check the bearer token of a /fhir request and install the guarded store and grant."""
    state = app_state()
    services = state.services
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
    assert state.smart_auth is not None, "smart_app.auth.init_app installs the token store"
    record = state.smart_auth.introspect(token.strip())
    if record is None:
        raise unauthorized("The access token is unknown, expired or revoked")
    grant = Grant.from_token(record.scope, record.client_id, record.context)
    if services.settings.user_access == "my-patients" and "user" in grant.scopes.contexts:
        grant = replace(grant, patients=my_patients(services.store, grant.fhir_user))
    g.smart_grant = grant
    g.fhir_store = GuardedStore(services.store, AccessPolicy(grant))


def before_fhir_request(func: FhirHook, app: Flask | None = None) -> FhirHook:
    """Run ``func`` before every /fhir request of ``app`` (default: the current app), after the
    token check and the hooks registered before it; a returned Response ends the request."""
    app_state(app).fhir_hooks.append(func)
    return func


def authorize_fhir() -> Response | None:
    """The before-request of every FHIR-serving blueprint: the token check, then the hooks."""
    check_bearer_token()
    for hook in list(app_state().fhir_hooks):
        response = hook()
        if response is not None:
            return response
    return None


def protect(bp: Blueprint) -> Blueprint:
    """Make every request to ``bp`` pass :func:`authorize_fhir` first; return ``bp``."""
    bp.before_request(authorize_fhir)
    return bp


def is_protected(bp: Blueprint) -> bool:
    """Whether requests to ``bp`` pass :func:`authorize_fhir`."""
    return authorize_fhir in bp.before_request_funcs.get(None, [])


def current_grant() -> Grant | None:
    """Return the Grant of the current /fhir request (None with open_api or outside /fhir)."""
    return g.get("smart_grant")


def fhir_store() -> Any:
    """The store a /fhir request reads and writes: the token's guarded store, else the app's."""
    return g.get("fhir_store") or app_state().services.store
