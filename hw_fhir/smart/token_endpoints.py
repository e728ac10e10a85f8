"""Token introspection (RFC 7662), revocation (RFC 7009) and public-client refresh, on authlib.

Framework-free parts both authorization servers register (the sandbox's and
hw-fhir's own Backend Services one):

* :func:`introspection_endpoint` — authlib's ``IntrospectionEndpoint`` over
  :class:`~hw_fhir.smart.authstore.AuthStore`. The caller authenticates as a client
  (``client_secret_basic``, ``client_secret_post``, ``private_key_jwt``, or ``none`` with
  its ``client_id`` for a public client) and may introspect the tokens issued to it;
  any other token is ``{"active": false}``. An active answer carries the SMART
  context: ``scope``, ``client_id``, ``exp``, ``iat``, ``sub``/``fhirUser``, ``patient``...
* :func:`revocation_endpoint` — authlib's ``RevocationEndpoint``: revoking a refresh
  token revokes its whole family (every token issued from the same authorization
  code); revoking an access token revokes that token (and the refresh token issued
  with it). Unknown tokens answer 200, as RFC 7009 says.
* :func:`public_client_auth` — the ``none`` client authentication, extended for
  SMART 2.x public apps that refresh without sending ``client_id`` (client-js): the
  client is the one the refresh token was issued to, when that client is public.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from .authserver import ClientRegistration
from .authstore import AuthStore, TokenRecord, hash_secret

__all__ = ["IssuedToken", "ENDPOINT_AUTH_METHODS", "introspection_endpoint", "revocation_endpoint",
           "public_client_auth"]

#: How a client authenticates at the introspection and revocation endpoints.
ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]

_CONTEXT_FIELDS = ("patient", "encounter", "fhirContext", "fhirUser")


class IssuedToken:
    """One issued token (access or refresh) as authlib's endpoints expect it."""

    def __init__(self, record: TokenRecord, kind: str) -> None:
        self.record = record
        self.kind = kind

    def is_expired(self) -> bool:
        """Whether the token has expired (or, for a refresh token, was rotated)."""
        now = int(time.time())
        if self.kind == "refresh_token":
            return not self.record.refresh_expires_at or self.record.refresh_expires_at <= now
        return self.record.expires_at <= now

    def is_revoked(self) -> bool:
        """Whether the token was revoked."""
        return self.record.revoked

    def check_client(self, client: ClientRegistration) -> bool:
        """Whether the token was issued to this client."""
        return client.client_id == self.record.client_id

    def get_scope(self) -> str:
        """Return the granted scope."""
        return self.record.scope


def _query(auth_store: AuthStore, token: str, hint: str | None) -> IssuedToken | None:
    record = auth_store.find_token(token, hint)
    if record is None:
        return None
    kind = "refresh_token" if record.refresh_hash == hash_secret(token) else "access_token"
    return IssuedToken(record, kind)


def introspection_endpoint(auth_store: AuthStore, issuer: Callable[[], str]) -> type[IntrospectionEndpoint]:
    """Return the RFC 7662 endpoint class for an authorization server."""

    class SmartIntrospection(IntrospectionEndpoint):
        CLIENT_AUTH_METHODS = ENDPOINT_AUTH_METHODS

        def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
            return _query(auth_store, token_string, token_type_hint)

        def check_permission(self, token: IssuedToken, client: ClientRegistration, request: Any) -> bool:
            return token.check_client(client)

        def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
            record = token.record
            payload: dict[str, Any] = {
                "active": True, "scope": record.scope, "client_id": record.client_id,
                "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
                "iat": record.issued_at, "iss": issuer(),
                "exp": record.expires_at if token.kind == "access_token" else record.refresh_expires_at,
            }
            for name in _CONTEXT_FIELDS:
                if name in record.context:
                    payload[name] = record.context[name]
            if "fhirUser" in record.context:
                payload["sub"] = record.context["fhirUser"]
            return payload

    return SmartIntrospection


def revocation_endpoint(auth_store: AuthStore) -> type[RevocationEndpoint]:
    """Return the RFC 7009 endpoint class for an authorization server."""

    class SmartRevocation(RevocationEndpoint):
        CLIENT_AUTH_METHODS = ENDPOINT_AUTH_METHODS

        def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
            return _query(auth_store, token_string, token_type_hint)

        def revoke_token(self, token: IssuedToken, request: Any) -> None:
            if token.kind == "refresh_token":
                auth_store.revoke_family(token.record)
            else:
                auth_store.revoke_record(token.record)

    return SmartRevocation


def public_client_auth(auth_store: AuthStore) -> Callable[[Callable[[str], Any], Any], Any]:
    """Return the ``none`` client authentication, allowing refresh without ``client_id``."""

    def authenticate_none(query_client: Callable[[str], Any], request: Any) -> Any:
        data = request.payload.data
        if data.get("client_secret") or data.get("client_assertion"):
            return None
        client_id = request.payload.client_id
        if not client_id and data.get("grant_type") == "refresh_token" and data.get("refresh_token") \
                and not request.headers.get("Authorization"):
            record = auth_store.find_token(str(data["refresh_token"]), "refresh_token")
            client_id = record.client_id if record else None
        if not client_id:
            return None
        client = query_client(client_id)
        return client if client is not None and client.auth_method == "none" else None

    return authenticate_none
