"""Authorization-server values with no web framework: the signed-in user, clients, launch context.

The sandbox EHR (``smart_app/sandbox``) runs authlib's authorization server over
these: an :class:`AuthUser` is who approved the request plus the launch context
they approved it for; :class:`ClientRegistration` is one OAuth client.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from ..errors import ConfigurationError
from .scopes import ScopeSet, grantable_scopes

__all__ = ["AuthUser", "ClientRegistration", "narrow_scope_for_user", "token_context", "RESPONSE_FIELDS",
           "AUTH_METHODS", "client_from_config"]

AUTH_METHODS = ("none", "client_secret_basic", "private_key_jwt")


@dataclass(frozen=True)
class AuthUser:
    """Who approved an authorization request, and the launch context they approved."""

    fhir_user: str | None = None          # "Practitioner/dr-rivera", "Patient/pat-ava"
    patient: str | None = None            # launch patient id
    encounter: str | None = None
    need_patient_banner: bool = True
    smart_style_url: str | None = None
    fhir_context: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    ehr_launch: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Return the user as JSON-able dict."""
        data = asdict(self)
        data["fhir_context"] = list(self.fhir_context)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "AuthUser | None":
        """Rebuild a user stored with :meth:`as_dict`."""
        if not data:
            return None
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["fhir_context"] = tuple(values.get("fhir_context") or ())
        return cls(**values)

    @property
    def user_type(self) -> str | None:
        """The resource type of the user (Practitioner, Patient...)."""
        return self.fhir_user.split("/")[0] if self.fhir_user else None


def narrow_scope_for_user(scope: str, user: AuthUser) -> str:
    """Drop what this user cannot grant: ``user/`` and ``system/`` scopes for a patient user."""
    if user.user_type != "Patient":
        return " ".join(s for s in scope.split() if not s.startswith("system/"))
    return " ".join(s for s in scope.split() if not s.startswith(("user/", "system/")))


def token_context(user: AuthUser | None, scope: str) -> dict[str, Any]:
    """Return the launch context a token carries for this user and granted scope."""
    if user is None:
        return {}
    granted = ScopeSet.parse(scope)
    context: dict[str, Any] = {"user": user.as_dict()}
    launch_granted = "launch" in granted and user.ehr_launch
    if user.patient and (launch_granted or "launch/patient" in granted):
        context["patient"] = user.patient
    elif user.user_type == "Patient" and user.fhir_user:
        context["patient"] = user.fhir_user.split("/")[1]
    if launch_granted and user.encounter:
        context["encounter"] = user.encounter
    if launch_granted and user.fhir_context:
        context["fhirContext"] = list(user.fhir_context)
    if launch_granted or "launch/patient" in granted:
        context["need_patient_banner"] = user.need_patient_banner
        if user.smart_style_url:
            context["smart_style_url"] = user.smart_style_url
    if user.fhir_user:
        context["fhirUser"] = user.fhir_user
    return context


#: Token-response fields taken from the context (fhirUser travels in the id_token instead).
RESPONSE_FIELDS = ("patient", "encounter", "fhirContext", "need_patient_banner", "smart_style_url")


@dataclass(frozen=True)
class ClientRegistration:
    """One OAuth client of the authorization server (authlib's ClientMixin)."""

    client_id: str
    auth_method: str = "none"
    client_secret: str = ""
    redirect_uris: tuple[str, ...] = ()
    scope: str = ""
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    jwks: dict[str, Any] | None = field(default=None, hash=False)
    jwks_uri: str | None = None
    name: str = ""

    # authlib ClientMixin ------------------------------------------------------

    def get_client_id(self) -> str:
        """Return the client id."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """Return the only redirect URI, when there is exactly one."""
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Return the requested scopes this client may have."""
        return grantable_scopes(scope or "", self.scope)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Whether the redirect URI is registered (exact match)."""
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        """Whether the secret is this client's."""
        return bool(self.client_secret) and hmac.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Whether the client authenticates with this method."""
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        """Only ``code``, for clients allowed the authorization_code grant."""
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        """Whether the client may use this grant type."""
        return grant_type in self.grant_types


def client_from_config(item: Mapping[str, Any]) -> ClientRegistration:
    """Build a client from one ``[[smart.sandbox_clients]]`` table of the config file."""
    client_id = str(item.get("client_id") or "")
    if not client_id:
        raise ConfigurationError("smart.sandbox_clients: client_id is required")
    method = str(item.get("token_endpoint_auth_method") or "none")
    if method not in AUTH_METHODS:
        raise ConfigurationError(f"smart.sandbox_clients {client_id}: token_endpoint_auth_method must be one of "
                                 f"{', '.join(AUTH_METHODS)}")
    grant_types = item.get("grant_types") or (["client_credentials"] if method == "private_key_jwt"
                                              and not item.get("redirect_uris")
                                              else ["authorization_code", "refresh_token"])
    if method == "private_key_jwt" and not (item.get("jwks") or item.get("jwks_uri")):
        raise ConfigurationError(f"smart.sandbox_clients {client_id}: private_key_jwt needs jwks or jwks_uri")
    if method == "client_secret_basic" and not item.get("client_secret"):
        raise ConfigurationError(f"smart.sandbox_clients {client_id}: client_secret_basic needs client_secret")
    return ClientRegistration(
        client_id=client_id, auth_method=method, client_secret=str(item.get("client_secret") or ""),
        redirect_uris=tuple(str(u) for u in item.get("redirect_uris") or ()),
        scope=str(item.get("scope") or ""), grant_types=tuple(str(g) for g in grant_types),
        jwks=dict(item["jwks"]) if item.get("jwks") else None,
        jwks_uri=str(item["jwks_uri"]) if item.get("jwks_uri") else None,
        name=str(item.get("name") or client_id))
