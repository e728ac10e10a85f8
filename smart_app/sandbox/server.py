"""The sandbox's OAuth 2 / SMART authorization server, built on authlib.

* authorization_code with PKCE S256 required (a missing or wrong
  ``code_verifier`` is ``invalid_grant``), ``aud`` must be this /fhir, ``launch``
  must be a live launch id; codes are single use (a reused code revokes the
  tokens issued from it); ``openid fhirUser`` adds an RS256 id_token;
* refresh_token (rotated on every use; a rotated refresh token presented again
  revokes its whole family; a public client may refresh without ``client_id``);
* client_credentials for Backend Services clients authenticating with
  ``private_key_jwt`` (RS384 or ES384 only, ``exp`` at most 5 minutes ahead,
  ``jti`` never seen before), shared with hw-fhir's own token endpoint
  (:mod:`hw_fhir.smart.backend`).

Tokens are opaque random strings stored (hashed) by
:class:`hw_fhir.smart.authstore.AuthStore`; /fhir introspects them there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN
from authlib.oidc.core import AuthorizationCodeMixin
from authlib.oidc.core.grants import OpenIDCode

from hw_fhir.smart.authserver import (
    RESPONSE_FIELDS,
    AuthUser,
    ClientRegistration,
    narrow_scope_for_user,
    token_context,
)
from hw_fhir.smart.authstore import AuthStore, CodeRecord, TokenRecord
from hw_fhir.smart.backend import (
    ASSERTION_ALGORITHMS,
    BACKEND_TOKEN_LIFETIME,
    BackendServicesGrant,
)
from hw_fhir.smart.registry import normalize_iss
from hw_fhir.smart.scopes import ScopeSet

__all__ = ["SandboxEndpoints", "build_server", "ASSERTION_ALGORITHMS",
           "ACCESS_TOKEN_LIFETIME", "BACKEND_TOKEN_LIFETIME", "REFRESH_TOKEN_LIFETIME"]

ACCESS_TOKEN_LIFETIME = 3600
REFRESH_TOKEN_LIFETIME = 24 * 3600


@dataclass(frozen=True)
class SandboxEndpoints:
    """Callables giving the sandbox's URLs for the current request."""

    fhir_base: Callable[[], str]
    token_url: Callable[[], str]
    query_client: Callable[[str], ClientRegistration | None]


# --------------------------------------------------------------------- models


class _Code(AuthorizationCodeMixin):
    """An authorization code record, as authlib's grants expect it."""

    def __init__(self, record: CodeRecord) -> None:
        self.record = record
        self.code_challenge = record.get("code_challenge")
        self.code_challenge_method = record.get("code_challenge_method")
        self.user = AuthUser.from_dict(record.get("user"))

    def get_redirect_uri(self) -> str:
        return str(self.record.get("redirect_uri") or "")

    def get_scope(self) -> str:
        return str(self.record.get("scope") or "")

    def get_nonce(self) -> str | None:
        return self.record.get("nonce")

    def get_auth_time(self) -> int | None:
        return self.record.get("auth_time")

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return None


class _RefreshCredential:
    """A refresh token's record, as authlib's RefreshTokenGrant expects it."""

    def __init__(self, record: TokenRecord, refresh_token: str) -> None:
        self.record = record
        self.refresh_token = refresh_token

    def get_scope(self) -> str:
        return self.record.scope

    def check_client(self, client: ClientRegistration) -> bool:
        return client.client_id == self.record.client_id


# --------------------------------------------------------------------- PKCE


class _S256Required(CodeChallenge):
    """PKCE with S256 only, required at the authorize and the token endpoint."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        verifier = grant.request.form.get("code_verifier")
        if not verifier:
            raise InvalidGrantError("Missing 'code_verifier' (PKCE is required)")
        if not CODE_VERIFIER_PATTERN.match(verifier):
            raise InvalidGrantError("Invalid 'code_verifier'")
        if not grant.request.authorization_code.code_challenge:
            raise InvalidGrantError("The code was issued without a code_challenge")
        try:
            super().validate_code_verifier(grant, result)
        except InvalidRequestError as exc:
            raise InvalidGrantError(exc.description) from None


# ------------------------------------------------------------------- grants


def _client_auth_methods() -> list[str]:
    return ["none", "client_secret_basic", "private_key_jwt"]


def build_server(app: Any, *, auth_store: AuthStore, endpoints: SandboxEndpoints,
                 signing_key: Any) -> AuthorizationServer:
    """Create the authorization server for an app."""

    def fhir_base() -> str:
        return normalize_iss(endpoints.fhir_base())

    class SmartCodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = _client_auth_methods()

        def validate_authorization_request(self) -> str:
            redirect_uri = super().validate_authorization_request()
            data = self.request.payload.data
            try:
                if normalize_iss(data.get("aud") or "") != fhir_base():
                    raise InvalidRequestError(f"aud must be this server's FHIR base URL {fhir_base()}")
                launch = data.get("launch")
                if launch and auth_store.get_launch(launch) is None:
                    raise InvalidRequestError("The launch id is unknown or has expired")
                if "launch" in ScopeSet.parse(self.request.scope) and not launch:
                    raise InvalidScopeError("The launch scope needs a launch parameter (EHR launch)")
            except (InvalidRequestError, InvalidScopeError) as exc:
                exc.redirect_uri = redirect_uri
                raise
            return redirect_uri

        def save_authorization_code(self, code: str, request: Any) -> None:
            user: AuthUser = request.user
            data = request.payload.data
            auth_store.save_code(code, request.client.client_id, {
                "redirect_uri": request.payload.redirect_uri,
                "scope": narrow_scope_for_user(request.scope or "", user),
                "code_challenge": data.get("code_challenge"),
                "code_challenge_method": data.get("code_challenge_method"),
                "nonce": data.get("nonce"),
                "auth_time": int(time.time()),
                "user": user.as_dict(),
            })

        def query_authorization_code(self, code: str, client: ClientRegistration) -> _Code | None:
            record = auth_store.take_code(code, client.client_id)
            return _Code(record) if record else None

        def delete_authorization_code(self, authorization_code: _Code) -> None:
            return None  # codes are marked used when they are taken

        def authenticate_user(self, authorization_code: _Code) -> AuthUser | None:
            return authorization_code.user

    class SmartRefreshGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = _client_auth_methods()
        INCLUDE_NEW_REFRESH_TOKEN = True

        def authenticate_refresh_token(self, refresh_token: str) -> _RefreshCredential | None:
            record = auth_store.find_refresh(refresh_token)
            return _RefreshCredential(record, refresh_token) if record else None

        def authenticate_user(self, credential: _RefreshCredential) -> AuthUser | None:
            return AuthUser.from_dict(credential.record.context.get("user")) or AuthUser()

        def revoke_old_credential(self, credential: _RefreshCredential) -> None:
            auth_store.retire_refresh(credential.refresh_token)

    class SmartOpenID(OpenIDCode):
        def resolve_client_private_key(self, client: ClientRegistration) -> Any:
            return signing_key

        def get_client_algorithm(self, client: ClientRegistration) -> str:
            return "RS256"

        def get_encode_header(self, client: ClientRegistration) -> dict[str, str]:
            return {"alg": "RS256", "kid": signing_key.kid, "typ": "JWT"}

        def get_client_claims(self, client: ClientRegistration) -> dict[str, Any]:
            now = int(time.time())
            return {"iss": fhir_base(), "aud": client.client_id, "iat": now, "exp": now + 3600}

        def exists_nonce(self, nonce: str, request: Any) -> bool:
            return False

        def generate_user_info(self, user: AuthUser, scope: str) -> dict[str, Any]:
            info: dict[str, Any] = {"sub": user.fhir_user or "anonymous"}
            if user.fhir_user and "fhirUser" in scope.split():
                info["fhirUser"] = f"{fhir_base()}/{user.fhir_user}"
            return info

    def save_token(token: dict[str, Any], request: Any) -> None:
        client: ClientRegistration = request.client
        user: AuthUser | None = request.user
        scope = str(token.get("scope") or "")
        context = token_context(user, scope)
        code = request.form.get("code") if request.payload.grant_type == "authorization_code" else None
        parent = getattr(request, "refresh_token", None) if request.payload.grant_type == "refresh_token" \
            else None
        auth_store.save_token(
            access_token=token["access_token"], refresh_token=token.get("refresh_token"),
            client_id=client.client_id, scope=scope, context=context,
            expires_in=int(token["expires_in"]), refresh_expires_in=REFRESH_TOKEN_LIFETIME, code=code,
            family=parent.record.family if isinstance(parent, _RefreshCredential) else None)
        for name in RESPONSE_FIELDS:
            if name in context:
                token[name] = context[name]

    def generate(grant_type: str, client: ClientRegistration, user: Any = None, scope: str | None = None,
                 expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        backend = grant_type == "client_credentials"
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": generate_token(43),
            "expires_in": BACKEND_TOKEN_LIFETIME if backend else ACCESS_TOKEN_LIFETIME,
            "scope": scope or "",
        }
        names = set((scope or "").split())
        if include_refresh_token and not backend and names & {"offline_access", "online_access"}:
            token["refresh_token"] = generate_token(48)
        return token

    server = AuthorizationServer()
    server.init_app(app, query_client=endpoints.query_client, save_token=save_token)
    server.register_token_generator("default", generate)
    server.register_grant(SmartCodeGrant, [_S256Required(required=True), SmartOpenID(require_nonce=False)])
    server.register_grant(SmartRefreshGrant)
    server.register_grant(BackendServicesGrant)
    return server
