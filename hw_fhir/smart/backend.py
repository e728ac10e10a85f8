"""SMART Backend Services (client_credentials with private_key_jwt), without a web framework.

The parts both token endpoints share — hw-fhir's own ``/auth/token`` and the
sandbox's ``/sandbox/token`` — built on authlib's framework-free OAuth 2 core:

* :class:`BackendServicesGrant`: ``grant_type=client_credentials``, granting the
  requested ``system/`` scopes the client is registered for (requested ∩ allowed);
* :func:`backend_assertion`: ``private_key_jwt`` client authentication — RS384 or
  ES384 only (HS256 and ``none`` are refused before any key is looked at), ``exp``
  at most 5 minutes ahead, ``aud`` the token endpoint, ``jti`` never seen before;
* :func:`backend_clients`: the clients registered in the config file::

    [[smart.backend_clients]]
    client_id = "reporting-job"
    jwks_url = "https://reporting.example.org/jwks.json"   # or an inline jwks = { keys = [...] }
    scopes = ["system/Observation.rs", "system/Patient.rs"]  # or one space-separated string
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, cast

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidScopeError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..egress import EgressPolicy
from ..errors import ConfigurationError
from .authserver import ClientRegistration
from .authstore import AuthStore
from .client import fetch_jwks
from .scopes import ScopeSet

__all__ = ["ASSERTION_ALGORITHMS", "MAX_ASSERTION_LIFETIME", "BACKEND_TOKEN_LIFETIME",
           "BackendServicesGrant", "backend_assertion", "backend_client_from_config", "backend_clients",
           "generate_backend_token", "save_backend_token"]

ASSERTION_ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = 300
BACKEND_TOKEN_LIFETIME = 300


class BackendServicesGrant(grants.ClientCredentialsGrant):
    """client_credentials for Backend Services: private_key_jwt, system/ scopes, no refresh token."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def validate_token_request(self) -> None:
        """Authenticate the client and narrow the requested scope to what it is registered for."""
        super().validate_token_request()
        scope = self.client.get_allowed_scope(self.request.payload.scope or "")
        granted = ScopeSet.parse(scope)
        if not granted.resource or granted.contexts != {"system"}:
            raise InvalidScopeError("Backend services request system/ scopes the client is registered for")
        self.request.scope = scope

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Issue and save an access token (never a refresh token)."""
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


def backend_assertion(auth_store: AuthStore, audiences: Callable[[], list[str]]) -> JWTBearerClientAssertion:
    """Return the ``private_key_jwt`` client authentication for a token endpoint."""

    class BackendAssertion(JWTBearerClientAssertion):
        CLIENT_AUTH_METHOD = "private_key_jwt"

        def get_audiences(self) -> list[str]:
            return audiences()

        def resolve_client_public_key(self, client: ClientRegistration) -> KeySet:
            # jwks_url is configured by the operator: trusted by the egress policy, no redirects
            jwks = client.jwks or (fetch_jwks(client.jwks_uri,
                                              egress=EgressPolicy().trusting(client.jwks_uri))
                                   if client.jwks_uri else {"keys": []})
            return KeySet.import_key_set(cast(Any, jwks))

        def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
            try:
                alg = jws.extract_compact(assertion.encode()).headers().get("alg")
            except (JoseError, ValueError):
                raise InvalidClientError(description="The client assertion is not a JWS") from None
            if alg not in ASSERTION_ALGORITHMS:
                raise InvalidClientError(description=f"Client assertions must be signed with RS384 or "
                                                     f"ES384, not {str(alg)[:16]}")
            try:
                token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
            except (JoseError, ValueError) as exc:
                raise InvalidClientError(description="The client assertion signature is not valid") from exc
            exp = token.claims.get("exp")
            if not isinstance(exp, (int, float)) or exp - time.time() > MAX_ASSERTION_LIFETIME + self.leeway:
                raise InvalidClientError(description="The client assertion exp must be at most 5 minutes ahead")
            self.verify_claims(token.claims)
            return dict(token.claims)

        def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
            return auth_store.use_jti(str(claims["sub"]), str(jti), int(claims["exp"]))

    return BackendAssertion()


def generate_backend_token(grant_type: str, client: ClientRegistration, user: Any = None,
                           scope: str | None = None, expires_in: int | None = None,
                           include_refresh_token: bool = True) -> dict[str, Any]:
    """Return a new opaque, short-lived bearer token (authlib's token generator signature)."""
    return {"token_type": "Bearer", "access_token": generate_token(43),
            "expires_in": BACKEND_TOKEN_LIFETIME, "scope": scope or ""}


def save_backend_token(auth_store: AuthStore) -> Callable[[dict[str, Any], Any], None]:
    """Return authlib's ``save_token`` callback storing Backend Services tokens (no launch context)."""

    def save_token(token: dict[str, Any], request: Any) -> None:
        auth_store.save_token(access_token=token["access_token"], client_id=request.client.client_id,
                              scope=str(token.get("scope") or ""), context={},
                              expires_in=int(token["expires_in"]))

    return save_token


def _scopes(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split())
    return " ".join(str(s).strip() for s in value or () if str(s).strip())


def backend_client_from_config(item: Mapping[str, Any]) -> ClientRegistration:
    """Build a client from one ``[[smart.backend_clients]]`` table of the config file."""
    client_id = str(item.get("client_id") or "")
    if not client_id:
        raise ConfigurationError("smart.backend_clients: client_id is required")
    jwks, jwks_url = item.get("jwks"), item.get("jwks_url") or item.get("jwks_uri")
    if bool(jwks) == bool(jwks_url):
        raise ConfigurationError(f"smart.backend_clients {client_id}: give exactly one of jwks or jwks_url")
    if jwks and not isinstance(jwks, Mapping) or jwks and not jwks.get("keys"):
        raise ConfigurationError(f"smart.backend_clients {client_id}: jwks must be a JWKS with keys")
    scope = _scopes(item.get("scopes") if "scopes" in item else item.get("scope"))
    parsed = ScopeSet.parse(scope)
    if not parsed.resource or parsed.contexts != {"system"}:
        raise ConfigurationError(f"smart.backend_clients {client_id}: scopes must be system/ scopes")
    return ClientRegistration(
        client_id=client_id, auth_method="private_key_jwt", scope=scope, grant_types=("client_credentials",),
        jwks=dict(jwks) if jwks else None, jwks_uri=str(jwks_url) if jwks_url else None,
        name=str(item.get("name") or client_id))


def backend_clients(smart_config: Mapping[str, Any]) -> dict[str, ClientRegistration]:
    """Return the ``[[smart.backend_clients]]`` of a config's ``smart`` table, by client id."""
    clients: dict[str, ClientRegistration] = {}
    for item in smart_config.get("backend_clients") or []:
        client = backend_client_from_config(item)
        if client.client_id in clients:
            raise ConfigurationError(f"smart.backend_clients {client.client_id}: listed twice")
        clients[client.client_id] = client
    return clients
