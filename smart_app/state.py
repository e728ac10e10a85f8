"""The Flask app's state: one typed object instead of string-keyed ``app.extensions`` slots.

:func:`smart_app.create_app` stores one :class:`AppState` per app (at
``app.extensions["hw_fhir_app"]``); every part of the web layer reads it through
:func:`app_state`. Each ``init_app`` fills the fields it owns (the launcher, the
authorization server, the sandbox ...). The system's own parts — settings, store,
plugins, events — stay in :class:`hw_fhir.services.Services` (``state.services``; also
``app.extensions["hw_fhir"]``, the handle plugins and tests use).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from flask import Flask, Response, current_app

if TYPE_CHECKING:
    from authlib.integrations.flask_oauth2 import AuthorizationServer

    from hw_fhir.audit import AuditTrail
    from hw_fhir.links import PatientLinks
    from hw_fhir.services import Services
    from hw_fhir.smart.authserver import ClientRegistration
    from hw_fhir.smart.authstore import AuthStore
    from hw_fhir.smart.keys import Key
    from hw_fhir.smart.launcher import Launcher

    from .patient.ratelimit import RateLimiter
    from .sandbox.context import Sandbox

__all__ = ["AppState", "CachedValue", "FhirHook", "STATE_KEY", "SERVICES_KEY", "app_state", "install_state", "services"]

#: Where :func:`install_state` keeps the AppState.
STATE_KEY = "hw_fhir_app"
#: Where the Services are published for plugins and tests (``app.extensions["hw_fhir"]``).
SERVICES_KEY = "hw_fhir"

#: A callable run before every /fhir request; a returned Response ends the request.
FhirHook = Callable[[], Response | None]


@dataclass
class CachedValue:
    """A value kept for a few seconds (``until`` is a ``time.monotonic()`` moment)."""

    value: Any = None
    until: float = 0.0

    def fresh(self) -> bool:
        """Whether the value may still be used."""
        return self.until > time.monotonic()

    def keep(self, value: Any, seconds: float) -> None:
        """Keep ``value`` for ``seconds``."""
        self.value, self.until = value, time.monotonic() + seconds

    def clear(self) -> None:
        """Forget the value."""
        self.value, self.until = None, 0.0


@dataclass
class AppState:
    """Everything one Flask app of hw-fhir holds beside its Services."""

    #: Settings, store, plugins and the events dispatcher.
    services: Services
    #: The /fhir before-hooks, run in this order after the bearer-token check
    #: (:func:`smart_app.fhir_auth.before_fhir_request`).
    fhir_hooks: list[FhirHook] = field(default_factory=list)
    #: Operations the CapabilityStatement announces (``$export``, ``$measure-progress`` ...).
    capability_operations: list[dict[str, Any]] = field(default_factory=list)
    #: Builds the CapabilityStatement's ``rest.security`` per request (None: not announced).
    capability_security: Callable[[], dict[str, Any] | None] | None = None
    #: Issued tokens, codes, launches and consents (:mod:`smart_app.auth`).
    smart_auth: AuthStore | None = None
    #: The authorization server's endpoint URLs for the CapabilityStatement (:mod:`smart_app.backend`).
    smart_oauth_uris: Callable[[], dict[str, str]] | None = None
    #: hw-fhir's own Backend Services authorization server and its clients.
    backend_server: AuthorizationServer | None = None
    backend_clients: dict[str, ClientRegistration] = field(default_factory=dict)
    #: The sandbox EHR (None unless ``settings.sandbox``).
    sandbox: Sandbox | None = None
    #: The SMART launcher and the app's own client key (made on first use).
    launcher: Launcher | None = None
    client_key: Key | None = None
    #: The audit trail (:mod:`smart_app.audit`).
    audit: AuditTrail | None = None
    #: The patient pages' rate limiter and (when set, e.g. by a test) their secure link service.
    patient_limiter: RateLimiter | None = None
    patient_links: PatientLinks | None = None
    #: The clinician pages' cached "workers are silent" banner.
    worker_banner: CachedValue = field(default_factory=CachedValue)


def install_state(app: Flask, services: Services) -> AppState:
    """Give ``app`` its AppState (and publish ``services`` at ``app.extensions["hw_fhir"]``)."""
    state = AppState(services=services)
    app.extensions[SERVICES_KEY] = services
    app.extensions[STATE_KEY] = state
    return state


def app_state(app: Flask | None = None) -> AppState:
    """Return the AppState of ``app`` (default: the current app)."""
    return (app or current_app).extensions[STATE_KEY]  # type: ignore[no-any-return]


def services(app: Flask | None = None) -> Services:
    """Return the Services of ``app`` (default: the current app)."""
    return app_state(app).services
