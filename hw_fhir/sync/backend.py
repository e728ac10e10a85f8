"""hw-fhir as a SMART Backend Services client: ``client_credentials`` with a ``private_key_jwt``.

:class:`BackendServicesToken` is a token provider for
:class:`~hw_fhir.store.remote.RemoteStore`: it signs a client assertion
(RS384 or ES384, ``exp`` 4 minutes ahead, fresh ``jti``) with the key kept in
the instance folder, asks the EHR's token endpoint (configured, or discovered
from ``{fhir_base}/.well-known/smart-configuration``) for an access token, and
reuses that token until shortly before it expires, or until ``force_refresh``.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import requests
from joserfc import jwt

from ..egress import EgressPolicy
from ..errors import BackendServicesMisconfigured, EgressRefused, RemoteError, Unauthorized
from ..smart.client import discover

__all__ = ["BackendServicesToken", "client_assertion", "ASSERTION_TYPE"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_assertion(client_id: str, token_url: str, key: Any, *, lifetime: int = 240) -> str:
    """Return a signed client assertion JWT for the token endpoint."""
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": now,
              "exp": now + lifetime, "jti": secrets.token_urlsafe(24)}
    alg = getattr(key, "alg", None) or "RS384"
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[alg])


class BackendServicesToken:
    """A cached Backend Services access token; call it to get the current token."""

    def __init__(self, *, client_id: str, key: Any, scope: str, fhir_base: str = "",
                 token_url: str = "", timeout: float = 10.0, margin: float = 30.0) -> None:
        if not token_url and not fhir_base:
            raise BackendServicesMisconfigured("BackendServicesToken needs token_url or fhir_base")
        self.client_id = client_id
        self.key = key
        self.scope = scope
        self.fhir_base = fhir_base
        self.token_url = token_url
        #: hosts the operator configured: the EHR's and a configured token endpoint's
        self.egress = EgressPolicy().trusting(fhir_base, token_url)
        self.timeout = timeout
        self.margin = margin
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def _endpoint(self) -> str:
        if not self.token_url:
            self.token_url = discover(self.fhir_base).token_endpoint
        return self.token_url

    def __call__(self, force_refresh: bool = False) -> str:
        """Return a valid access token, fetching a new one when needed."""
        with self._lock:
            if not force_refresh and self._token and time.time() < self._expires - self.margin:
                return self._token
            token_url = self._endpoint()
            form = {"grant_type": "client_credentials", "scope": self.scope,
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": client_assertion(self.client_id, token_url, self.key)}
            try:
                # the EHR's host is configured (trusted); a token endpoint elsewhere must be public
                response = self.egress.request(
                    "POST", token_url, data=form, timeout=self.timeout,
                    headers={"Accept": "application/json"})
            except EgressRefused as exc:
                raise RemoteError(f"Not calling the token endpoint: {exc.message}") from None
            except requests.RequestException as exc:
                raise RemoteError(f"Cannot reach the token endpoint: {type(exc).__name__}") \
                    from None
            if response.status_code >= 500 or response.status_code == 429:
                raise RemoteError(f"The token endpoint answered HTTP {response.status_code}",
                                  status=response.status_code)
            try:
                body = response.json()
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            if response.status_code != 200 or not body.get("access_token"):
                error = body.get("error_description") or body.get("error")
                raise Unauthorized(f"The token endpoint refused the client {self.client_id!r}: "
                                   f"{error or f'HTTP {response.status_code}'}")
            self._token = str(body["access_token"])
            self._expires = time.time() + float(body.get("expires_in") or 300)
            return self._token
