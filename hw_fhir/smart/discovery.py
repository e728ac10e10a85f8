"""The discovery documents of hw-fhir's authorization server (SMART App Launch 2.2, OIDC).

Two modes, one builder:

* **sandbox** (demo/tests): a full SMART server — EHR and standalone launch, public
  and confidential clients, Backend Services, OpenID Connect (``issuer`` = the FHIR
  base URL, which is the ``iss`` of every id_token, and ``jwks_uri``);
* **production** (sandbox off): hw-fhir's own server serves only Backend Services
  (``client_credentials`` + ``private_key_jwt``); no authorization endpoint, no
  id_tokens, hence no ``issuer`` (SMART: only with ``sso-openid-connect``).

Both advertise introspection (RFC 7662) and revocation (RFC 7009), PKCE
``S256`` only, and the v1 and v2 scope syntaxes (both are accepted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ServerUrls", "smart_configuration", "openid_configuration", "SANDBOX_CAPABILITIES",
           "BACKEND_CAPABILITIES", "SANDBOX_SCOPES", "SIGNING_ALGORITHMS", "ID_TOKEN_ALGORITHMS"]

SIGNING_ALGORITHMS = ["RS384", "ES384"]
ID_TOKEN_ALGORITHMS = ["RS256"]

SANDBOX_CAPABILITIES = [
    "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
    "client-confidential-asymmetric", "context-ehr-patient", "context-standalone-patient",
    "context-banner", "context-style", "permission-offline", "permission-online",
    "permission-patient", "permission-user", "permission-v1", "permission-v2", "sso-openid-connect",
]
BACKEND_CAPABILITIES = ["client-confidential-asymmetric", "permission-v1", "permission-v2"]

SANDBOX_SCOPES = ["openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access",
                  "online_access", "patient/*.cruds", "user/*.cruds", "system/*.rs", "patient/*.read",
                  "patient/*.write", "user/*.read", "user/*.write", "system/*.read"]


@dataclass(frozen=True)
class ServerUrls:
    """Where the authorization server's endpoints are, for one request."""

    fhir_base: str
    token: str
    introspection: str
    revocation: str
    authorization: str | None = None   # sandbox only
    jwks: str | None = None            # sandbox only: the id_token signing keys


def smart_configuration(urls: ServerUrls, *, sandbox: bool, scopes: list[str]) -> dict[str, Any]:
    """Return ``.well-known/smart-configuration`` for the mode the server runs in."""
    if sandbox:
        return {
            "issuer": urls.fhir_base,
            "jwks_uri": urls.jwks,
            "authorization_endpoint": urls.authorization,
            "token_endpoint": urls.token,
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGORITHMS,
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types_supported": ["code"],
            "scopes_supported": scopes,
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ID_TOKEN_ALGORITHMS,
            "introspection_endpoint": urls.introspection,
            "revocation_endpoint": urls.revocation,
            "capabilities": SANDBOX_CAPABILITIES,
        }
    return {
        "token_endpoint": urls.token,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGORITHMS,
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": scopes,
        "code_challenge_methods_supported": ["S256"],
        "introspection_endpoint": urls.introspection,
        "revocation_endpoint": urls.revocation,
        "capabilities": BACKEND_CAPABILITIES,
    }


def openid_configuration(urls: ServerUrls, *, scopes: list[str]) -> dict[str, Any]:
    """Return ``{issuer}/.well-known/openid-configuration`` (sandbox only: it issues id_tokens)."""
    return {
        "issuer": urls.fhir_base,
        "authorization_endpoint": urls.authorization,
        "token_endpoint": urls.token,
        "jwks_uri": urls.jwks,
        "introspection_endpoint": urls.introspection,
        "revocation_endpoint": urls.revocation,
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ID_TOKEN_ALGORITHMS,
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGORITHMS,
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
    }
