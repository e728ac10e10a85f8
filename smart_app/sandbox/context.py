"""The sandbox's parts for one app (:class:`Sandbox`) and how its views reach them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import request

from hw_fhir.smart.authserver import ClientRegistration
from hw_fhir.smart.authstore import AuthStore

from ..state import app_state

__all__ = ["Sandbox", "sandbox", "app_base"]


@dataclass
class Sandbox:
    """The sandbox's parts for one app: the authlib server, signing key, clients, records."""

    server: Any
    signing_key: Any
    clients: dict[str, ClientRegistration]
    auth_store: AuthStore


def sandbox() -> Sandbox:
    """Return the current app's sandbox."""
    found = app_state().sandbox
    assert found is not None, "smart_app.sandbox.init_app builds it (settings.sandbox on)"
    return found


def app_base() -> str:
    """The app's base URL: the configured one, or the one this request came in on."""
    settings = app_state().services.settings
    return (settings.base_url or request.url_root).rstrip("/")
