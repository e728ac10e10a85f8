"""CORS for the endpoints a browser-only SMART app calls (flask-cors does the work).

Covered: ``/fhir/*`` (the API), ``/auth/*`` (token, introspection, revocation), the
sandbox's token endpoint, and the discovery documents and JWKS. Allowed origins come
from ``settings.cors_origin_list`` (``HW_FHIR_CORS_ORIGINS``): any origin with the
sandbox on unless configured, none by default otherwise, never ``*`` in production.
Discovery documents and key sets are public and answer any origin.

No credentials: SMART apps send bearer tokens in ``Authorization``, never cookies,
so ``Access-Control-Allow-Credentials`` is never sent. Preflight (``OPTIONS``)
allows the headers a FHIR client sends (``Authorization``, ``Content-Type``,
``If-Match``, ``If-None-Exist``, ``If-None-Match``, ``Prefer``...) and responses expose
``Location``, ``ETag``, ``Content-Location`` and ``Last-Modified``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_cors import CORS

from .state import services

__all__ = ["init_app", "ALLOW_HEADERS", "EXPOSE_HEADERS", "API_PATHS", "PUBLIC_PATHS", "cors_enabled"]

ALLOW_HEADERS = ["Authorization", "Content-Type", "Accept", "If-Match", "If-None-Match",
                 "If-None-Exist", "If-Modified-Since", "Prefer", "X-Requested-With"]
EXPOSE_HEADERS = ["Location", "ETag", "Content-Location", "Last-Modified", "WWW-Authenticate"]

#: Paths served to the configured origins.
API_PATHS = [r"/fhir/.*", r"/auth/token", r"/auth/introspect", r"/auth/revoke",
             r"/sandbox/token", r"/sandbox/introspect", r"/sandbox/revoke"]
#: Public documents served to any origin.
PUBLIC_PATHS = [r"/fhir/\.well-known/.*", r"/sandbox/jwks\.json"]


def cors_enabled(settings: Any) -> bool:
    """Whether any browser origin may call the API (the CapabilityStatement's ``security.cors``)."""
    return bool(settings.cors_origin_list)


def init_app(app: Flask) -> None:
    """Install CORS on the API, token and discovery endpoints."""
    settings = services(app).settings
    common: dict[str, Any] = {"allow_headers": ALLOW_HEADERS, "expose_headers": EXPOSE_HEADERS,
                              "supports_credentials": False, "max_age": 600,
                              "methods": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]}
    anyone = {**common, "origins": "*", "send_wildcard": True}
    resources: dict[str, dict[str, Any]] = {path: anyone for path in PUBLIC_PATHS}
    origins = settings.cors_origin_list
    if origins:
        allowed = anyone if origins == ["*"] else {**common, "origins": origins}
        resources.update({path: allowed for path in API_PATHS})
    CORS(app, resources=resources, vary_header=True)
