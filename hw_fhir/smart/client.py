"""hw-fhir as a SMART client: discovery, authorize URL, token exchange, refresh, id_token checks.

Built on authlib's OAuth 2 client (requests) and joserfc. PKCE S256 is always
used. The client authenticates to the token endpoint as its registration says:
``public`` (client_id in the body), ``client_secret_basic`` or ``private_key_jwt``
(an RS384 assertion signed with the app's key, ``exp`` ≤ 5 minutes, fresh ``jti``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, cast
from urllib.parse import urljoin

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..egress import EgressPolicy
from ..errors import EgressRefused, InvalidInput, RemoteError, Unauthorized
from .registry import EhrRegistration, normalize_iss

__all__ = [
    "SmartConfiguration",
    "TokenResponse",
    "discover",
    "new_code_verifier",
    "authorization_url",
    "exchange_code",
    "refresh_tokens",
    "fetch_jwks",
    "verify_id_token",
    "EhrClient",
    "ID_TOKEN_ALGORITHMS",
    "OAUTH_URIS_EXTENSION",
]

OAUTH_URIS_EXTENSION = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "ES256", "ES384")
TIMEOUT = 10.0
_FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class SmartConfiguration:
    """The SMART endpoints and capabilities of one FHIR server."""

    authorization_endpoint: str
    token_endpoint: str
    issuer: str | None = None
    jwks_uri: str | None = None
    capabilities: tuple[str, ...] = ()
    code_challenge_methods_supported: tuple[str, ...] = ()
    grant_types_supported: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    source: str = "smart-configuration"


def _absolute(url: Any, what: str, iss: str) -> str:
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise RemoteError(f"{iss} announces no usable {what} ({url!r})")
    return url


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _get_json(url: str, *, accept: str, session: requests.Session | None = None,
              egress: EgressPolicy | None = None) -> Any:
    """GET a JSON document through the egress policy (strict unless told whom to trust)."""
    try:
        response = (egress or EgressPolicy()).request("GET", url, session=session,
                                                      headers={"Accept": accept}, timeout=TIMEOUT)
    except EgressRefused as exc:
        raise RemoteError(f"Not fetching {url}: {exc.message}") from None
    except requests.RequestException as exc:
        raise RemoteError(f"Cannot reach {url}: {exc.__class__.__name__}") from None
    if response.status_code != 200:
        raise RemoteError(f"{url} answered HTTP {response.status_code}", response=response)
    try:
        return response.json()
    except ValueError:
        raise RemoteError(f"{url} did not answer JSON", response=response) from None


def discover(iss: str, *, session: requests.Session | None = None,
             egress: EgressPolicy | None = None) -> SmartConfiguration:
    """Read ``{iss}/.well-known/smart-configuration``; fall back to the CapabilityStatement.

    ``iss`` is a registered EHR (configured by the operator): its host is trusted by the
    egress policy; redirects are not followed.
    """
    iss = normalize_iss(iss)
    egress = (egress or EgressPolicy()).trusting(iss)
    try:
        doc = _get_json(f"{iss}/.well-known/smart-configuration", accept="application/json",
                        session=session, egress=egress)
        if not isinstance(doc, dict):
            raise RemoteError(f"{iss}/.well-known/smart-configuration is not a JSON object")
        return SmartConfiguration(
            authorization_endpoint=_absolute(doc.get("authorization_endpoint"), "authorization_endpoint", iss),
            token_endpoint=_absolute(doc.get("token_endpoint"), "token_endpoint", iss),
            issuer=doc.get("issuer") if isinstance(doc.get("issuer"), str) else None,
            jwks_uri=doc.get("jwks_uri") if isinstance(doc.get("jwks_uri"), str) else None,
            capabilities=_tuple(doc.get("capabilities")),
            code_challenge_methods_supported=_tuple(doc.get("code_challenge_methods_supported")),
            grant_types_supported=_tuple(doc.get("grant_types_supported")),
            scopes_supported=_tuple(doc.get("scopes_supported")),
        )
    except RemoteError as first:
        try:
            return _from_capability_statement(iss, session, egress)
        except RemoteError:
            raise first from None


def _from_capability_statement(iss: str, session: requests.Session | None,
                               egress: EgressPolicy) -> SmartConfiguration:
    statement = _get_json(f"{iss}/metadata", accept=_FHIR_JSON, session=session, egress=egress)
    uris: dict[str, str] = {}
    for rest in (statement.get("rest") or []) if isinstance(statement, dict) else []:
        for ext in ((rest.get("security") or {}).get("extension") or []):
            if ext.get("url") == OAUTH_URIS_EXTENSION:
                for sub in ext.get("extension") or []:
                    if isinstance(sub.get("valueUri"), str):
                        uris[str(sub.get("url"))] = sub["valueUri"]
    if "authorize" not in uris or "token" not in uris:
        raise RemoteError(f"{iss}/metadata announces no SMART OAuth endpoints")
    return SmartConfiguration(
        authorization_endpoint=_absolute(uris["authorize"], "authorize URI", iss),
        token_endpoint=_absolute(uris["token"], "token URI", iss),
        source="capability-statement",
    )


def new_code_verifier() -> str:
    """Return a fresh PKCE code verifier (86 characters)."""
    return secrets.token_urlsafe(64)


def _session(reg: EhrRegistration, *, client_key: Any = None, token_endpoint: str = "",
             scope: str | None = None, redirect_uri: str | None = None) -> OAuth2Session:
    """Return an OAuth2Session that authenticates to the token endpoint as registered."""
    if reg.client_auth == "private_key_jwt":
        if client_key is None:
            raise InvalidInput(f"{reg.iss} is registered with private_key_jwt but the app has no key")
        session = OAuth2Session(reg.client_id, client_key, token_endpoint_auth_method="private_key_jwt",
                                scope=scope, redirect_uri=redirect_uri, code_challenge_method="S256")
        now = int(time.time())
        session.register_client_auth_method(PrivateKeyJWT(
            token_endpoint, claims={"exp": now + 240, "iat": now, "jti": secrets.token_urlsafe(24)},
            headers={"kid": client_key.kid, "typ": "JWT"}, alg=client_key.alg or "RS384"))
        return session
    if reg.client_auth == "client_secret_basic":
        return OAuth2Session(reg.client_id, reg.client_secret, token_endpoint_auth_method="client_secret_basic",
                             scope=scope, redirect_uri=redirect_uri, code_challenge_method="S256")
    return OAuth2Session(reg.client_id, token_endpoint_auth_method="none", scope=scope,
                         redirect_uri=redirect_uri, code_challenge_method="S256")


def authorization_url(config: SmartConfiguration, reg: EhrRegistration, *, redirect_uri: str,
                      scope: str, state: str, code_verifier: str, launch: str | None = None,
                      nonce: str | None = None) -> str:
    """Return the authorize URL (response_type=code, PKCE S256, ``aud`` = iss)."""
    extra: dict[str, str] = {"aud": reg.iss}
    if launch:
        extra["launch"] = launch
    if nonce:
        extra["nonce"] = nonce
    with OAuth2Session(reg.client_id, scope=scope, redirect_uri=redirect_uri,
                       code_challenge_method="S256") as session:
        url, _ = session.create_authorization_url(config.authorization_endpoint, state=state,
                                                  code_verifier=code_verifier, **extra)
    return url


@dataclass(frozen=True)
class TokenResponse:
    """A token endpoint's answer, with the SMART launch context it carries."""

    access_token: str
    token_type: str
    scope: str
    expires_at: int | None = None
    refresh_token: str | None = None
    id_token: str | None = None
    patient: str | None = None
    encounter: str | None = None
    fhir_context: list[dict[str, Any]] = field(default_factory=list, hash=False)
    need_patient_banner: bool | None = None
    smart_style_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], *, requested_scope: str = "") -> "TokenResponse":
        """Read a token response; raise RemoteError when it is not a usable Bearer token."""
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise RemoteError("The token endpoint sent no access_token")
        token_type = str(data.get("token_type", ""))
        if token_type.lower() != "bearer":
            raise RemoteError(f"The token endpoint sent a {token_type or 'typeless'} token, not Bearer")
        expires_in = data.get("expires_in")
        expires_at = int(time.time()) + int(expires_in) if isinstance(expires_in, (int, float)) else None
        banner = data.get("need_patient_banner")
        context = data.get("fhirContext")
        return cls(
            access_token=token, token_type="Bearer",
            scope=str(data.get("scope") or requested_scope),
            expires_at=expires_at,
            refresh_token=data.get("refresh_token") if isinstance(data.get("refresh_token"), str) else None,
            id_token=data.get("id_token") if isinstance(data.get("id_token"), str) else None,
            patient=str(data["patient"]) if data.get("patient") else None,
            encounter=str(data["encounter"]) if data.get("encounter") else None,
            fhir_context=[c for c in context if isinstance(c, dict)] if isinstance(context, list) else [],
            need_patient_banner=banner if isinstance(banner, bool) else None,
            smart_style_url=data.get("smart_style_url") if isinstance(data.get("smart_style_url"), str) else None,
            raw=dict(data),
        )


def _token_call(call: Callable[[], Any]) -> dict[str, Any]:
    try:
        return dict(call())
    except AuthlibBaseError as exc:
        error = getattr(exc, "error", "error")
        description = getattr(exc, "description", "") or ""
        raise Unauthorized(f"The EHR refused the token request: {error}"
                           + (f" ({description})" if description else "")) from None
    except requests.RequestException as exc:
        raise RemoteError(f"Cannot reach the token endpoint: {exc.__class__.__name__}") from None
    except ValueError:
        raise RemoteError("The token endpoint did not answer JSON") from None


def exchange_code(token_endpoint: str, reg: EhrRegistration, *, code: str, redirect_uri: str,
                  code_verifier: str, scope: str = "", client_key: Any = None) -> TokenResponse:
    """Exchange an authorization code (with its PKCE verifier) for tokens."""
    with _session(reg, client_key=client_key, token_endpoint=token_endpoint,
                  redirect_uri=redirect_uri) as session:
        data = _token_call(lambda: session.fetch_token(
            token_endpoint, grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
            code_verifier=code_verifier, timeout=TIMEOUT))
    return TokenResponse.from_json(data, requested_scope=scope)


def refresh_tokens(token_endpoint: str, reg: EhrRegistration, refresh_token: str, *,
                   client_key: Any = None) -> TokenResponse:
    """Use a refresh token; the old refresh token is kept when the server sends no new one."""
    with _session(reg, client_key=client_key, token_endpoint=token_endpoint) as session:
        data = _token_call(lambda: session.refresh_token(token_endpoint, refresh_token=refresh_token,
                                                         timeout=TIMEOUT))
    data.setdefault("refresh_token", refresh_token)
    return TokenResponse.from_json(data)


def fetch_jwks(jwks_uri: str, *, session: requests.Session | None = None,
               egress: EgressPolicy | None = None) -> dict[str, Any]:
    """Download a JWKS document through the egress policy (default: public addresses only)."""
    doc = _get_json(jwks_uri, accept="application/json", session=session, egress=egress)
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise RemoteError(f"{jwks_uri} is not a JWKS document")
    return doc


def verify_id_token(id_token: str, *, jwks: dict[str, Any], issuer: str, client_id: str,
                    nonce: str | None = None, leeway: int = 60) -> dict[str, Any]:
    """Verify an id_token's signature (against the JWKS), ``iss``, ``aud``, ``exp``; return its claims."""
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(cast(Any, jwks)),
                           algorithms=list(ID_TOKEN_ALGORITHMS))
        registry = jwt.JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            exp={"essential": True},
            sub={"essential": True},
        )
        registry.validate(token.claims)
    except (JoseError, ValueError) as exc:
        raise Unauthorized(f"The id_token is not valid: {getattr(exc, 'description', '') or exc}") from None
    claims = dict(token.claims)
    if nonce and claims.get("nonce") != nonce:
        raise Unauthorized("The id_token is not valid: its nonce does not match this launch")
    return claims


class EhrClient:
    """FHIR calls to the EHR with a launch's token: refreshed before expiry or on a 401, once."""

    def __init__(self, base: str, token: Callable[[], str], refresh: Callable[[], bool],
                 expiring: Callable[[], bool]) -> None:
        self.base = normalize_iss(base)
        self._token = token
        self._refresh = refresh
        self._expiring = expiring

    def url(self, path: str) -> str:
        """Return the absolute URL of a path below the FHIR base (absolute URLs are kept)."""
        if path.startswith(("https://", "http://")):
            return path
        return urljoin(self.base + "/", path.lstrip("/"))

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request with the Bearer token; refresh first if it is about to expire, or once on 401."""
        url = self.url(path)
        if not url.startswith(self.base + "/"):
            raise InvalidInput(f"{url} is not on the EHR's FHIR server {self.base}")
        refreshed = False
        if self._expiring():
            refreshed = self._refresh()
        headers = {"Accept": _FHIR_JSON, **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", TIMEOUT)
        for attempt in range(2):
            headers["Authorization"] = f"Bearer {self._token()}"
            try:
                response = requests.request(method, url, headers=headers, **kwargs)
            except requests.RequestException as exc:
                raise RemoteError(f"Cannot reach {self.base}: {exc.__class__.__name__}") from None
            if response.status_code != 401 or refreshed or attempt:
                return response
            refreshed = self._refresh()
            if not refreshed:
                return response
        return response

    def read(self, resource_type: str, id: str) -> dict[str, Any]:
        """Read one resource; RemoteError unless the EHR answers 200 with that resource."""
        response = self.request("GET", f"{resource_type}/{id}")
        if response.status_code != 200:
            raise RemoteError(f"The EHR answered HTTP {response.status_code} to reading {resource_type}/{id}",
                              response=response, status=502)
        try:
            data = response.json()
        except ValueError:
            raise RemoteError(f"The EHR sent no JSON for {resource_type}/{id}", response=response) from None
        if not isinstance(data, dict) or data.get("resourceType") != resource_type:
            raise RemoteError(f"The EHR sent something else than {resource_type}/{id}", response=response)
        return data
