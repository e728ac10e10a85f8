"""The launch flow of hw-fhir as a SMART app, without any web framework.

:meth:`Launcher.start` checks ``iss`` against the registry (an unregistered
``iss`` is refused before any outbound request), discovers the endpoints,
stores a pending launch bound to the browser session and returns the authorize
URL. :meth:`Launcher.complete` claims the pending launch by ``state`` (same
browser session only), exchanges the code with the PKCE verifier, verifies the
``id_token``, stores the tokens server-side and mirrors the EHR's Patient and
Practitioner into the local store.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import replace
from typing import Any, Callable

from ..egress import EgressPolicy
from ..errors import InvalidInput, RemoteError, Unauthorized
from ..store.base import Store
from .client import (
    EhrClient,
    SmartConfiguration,
    TokenResponse,
    authorization_url,
    discover,
    exchange_code,
    fetch_jwks,
    new_code_verifier,
    refresh_tokens,
    verify_id_token,
)
from .mirror import mirror_resource
from .registry import SANDBOX_CLIENT_ID, EhrRegistration, EhrRegistry, normalize_iss
from .scopes import ScopeSet
from .sessions import Launch, LaunchContext, LaunchStore, LaunchTokens, PendingLaunch

__all__ = ["Launcher", "relative_reference"]

log = logging.getLogger("hw_fhir.smart")


def relative_reference(url: str | None, iss: str) -> str | None:
    """Turn ``fhirUser`` (absolute on ``iss``, or relative) into ``Type/id``; None when elsewhere."""
    if not url:
        return None
    base = normalize_iss(iss) + "/"
    if url.startswith(("https://", "http://")):
        if not url.startswith(base):
            return None
        url = url[len(base):]
    parts = url.strip("/").split("/")
    if len(parts) != 2 or not parts[0][:1].isupper() or not parts[1]:
        return None
    return f"{parts[0]}/{parts[1]}"


def _tokens(response: TokenResponse, token_endpoint: str) -> LaunchTokens:
    return LaunchTokens(access_token=response.access_token, token_endpoint=token_endpoint,
                        expires_at=response.expires_at, refresh_token=response.refresh_token)


class Launcher:
    """Start and complete SMART launches, and talk to the EHR afterwards."""

    def __init__(self, *, store: Store, registry: EhrRegistry, launches: LaunchStore,
                 client_key: Callable[[], Any] | None = None, discovery_ttl: int = 300) -> None:
        self.store = store
        self.registry = registry
        self.launches = launches
        self._client_key = client_key
        self._ttl = discovery_ttl
        self._cache: dict[str, tuple[float, SmartConfiguration]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ discovery

    def registration(self, iss: str, *, local_fhir_base: str | None = None) -> EhrRegistration:
        """Return the registration of ``iss``; InvalidInput when there is none."""
        reg = self.registry.lookup(iss, local_fhir_base=local_fhir_base)
        if reg is None:
            raise InvalidInput(
                f"{iss or 'This EHR'} is not registered with hw-fhir, so the launch was refused. "
                "An administrator adds the EHR's FHIR base URL under [[smart.ehr]] in the config file.")
        return reg

    def configuration(self, iss: str) -> SmartConfiguration:
        """Return the SMART configuration of a registered ``iss`` (cached for a few minutes)."""
        key = normalize_iss(iss)
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > time.monotonic():
                return hit[1]
        config = discover(key)
        with self._lock:
            self._cache[key] = (time.monotonic() + self._ttl, config)
        return config

    def client_key(self, reg: EhrRegistration) -> Any:
        """Return the app's private key when the registration uses private_key_jwt."""
        if reg.client_auth != "private_key_jwt" or self._client_key is None:
            return None
        return self._client_key()

    # ---------------------------------------------------------------- start

    def start(self, *, iss: str, launch: str | None, session_id: str, redirect_uri: str,
              local_fhir_base: str | None = None) -> tuple[str, str]:
        """Begin a launch; return (launch id, authorize URL)."""
        reg = self.registration(iss, local_fhir_base=local_fhir_base)
        config = self.configuration(reg.iss)
        scope = reg.scope if launch else reg.standalone_scope
        pending = PendingLaunch(
            iss=reg.iss, client_id=reg.client_id, state=secrets.token_urlsafe(32),
            code_verifier=new_code_verifier(), redirect_uri=redirect_uri, scope=scope,
            nonce=secrets.token_urlsafe(16), launch=launch or None,
            token_endpoint=config.token_endpoint, authorization_endpoint=config.authorization_endpoint,
            jwks_uri=config.jwks_uri, issuer=config.issuer)
        launch_id = self.launches.create_pending(session_id, pending)
        url = authorization_url(config, reg, redirect_uri=redirect_uri, scope=scope, state=pending.state,
                                code_verifier=pending.code_verifier, launch=pending.launch,
                                nonce=pending.nonce)
        return launch_id, url

    # ------------------------------------------------------------- complete

    def complete(self, *, state: str, code: str | None, session_id: str, error: str | None = None,
                 error_description: str | None = None, local_fhir_base: str | None = None) -> Launch:
        """Finish a launch from the callback's parameters; return the active launch."""
        launch_id, pending = self.launches.take_pending(state, session_id)
        try:
            if error:
                raise Unauthorized(f"The EHR did not authorize the launch: {error}"
                                   + (f" ({error_description})" if error_description else ""))
            if not code:
                raise InvalidInput("The callback carries no authorization code")
            reg = self.registration(pending.iss, local_fhir_base=local_fhir_base)
            response = exchange_code(pending.token_endpoint, reg, code=code,
                                     redirect_uri=pending.redirect_uri,
                                     code_verifier=pending.code_verifier, scope=pending.scope,
                                     client_key=self.client_key(reg))
            claims = self._id_token_claims(response, pending, reg)
            context = LaunchContext(
                iss=reg.iss, client_id=reg.client_id, scope=response.scope,
                patient=response.patient, encounter=response.encounter,
                fhir_context=response.fhir_context, need_patient_banner=response.need_patient_banner,
                smart_style_url=response.smart_style_url,
                fhir_user=claims.get("fhirUser") if isinstance(claims.get("fhirUser"), str) else None,
                standalone=not pending.launch, id_token_claims=claims)
            active = self.launches.activate(launch_id, context, _tokens(response, pending.token_endpoint))
            return self._mirror(active, same_store=bool(local_fhir_base) and
                                normalize_iss(local_fhir_base or "") == reg.iss)
        except Exception:
            self.launches.fail(launch_id)
            raise

    def _id_token_claims(self, response: TokenResponse, pending: PendingLaunch,
                         reg: EhrRegistration) -> dict[str, Any]:
        granted = ScopeSet.parse(response.scope)
        if not response.id_token:
            if "openid" in granted:
                raise Unauthorized("The EHR granted openid but sent no id_token")
            return {}
        if not pending.jwks_uri:
            raise Unauthorized("The EHR sent an id_token but publishes no jwks_uri to verify it")
        # the EHR (a registered iss) is trusted; a jwks_uri elsewhere must be a public address
        jwks = fetch_jwks(pending.jwks_uri, egress=EgressPolicy().trusting(pending.iss))
        return verify_id_token(response.id_token, jwks=jwks,
                               issuer=pending.issuer or pending.iss, client_id=reg.client_id,
                               nonce=pending.nonce or None)

    def _mirror(self, launch: Launch, *, same_store: bool) -> Launch:
        ctx = launch.context
        client = self.ehr_client(launch)
        user_ref = relative_reference(ctx.fhir_user, ctx.iss)
        patient_id = ctx.patient or (user_ref.split("/")[1] if user_ref and user_ref.startswith("Patient/")
                                     else None)
        local_patient = local_practitioner = None
        if patient_id:
            ehr_patient = client.read("Patient", patient_id)
            local_patient = mirror_resource(self.store, ehr_patient, iss=ctx.iss, same_store=same_store)
        if user_ref and user_ref.startswith("Practitioner/"):
            try:
                ehr_user = client.read("Practitioner", user_ref.split("/")[1])
                local_practitioner = mirror_resource(self.store, ehr_user, iss=ctx.iss, same_store=same_store)
            except RemoteError as exc:
                log.warning("could not mirror the launch user %s from %s: %s", user_ref, ctx.iss, exc.message)
        current = self.launches.reload(launch) or launch
        context = replace(ctx, local_patient=local_patient, local_practitioner=local_practitioner)
        return self.launches.activate(launch.id, context, current.tokens)

    # ----------------------------------------------------------- afterwards

    def get(self, launch_id: str, session_id: str | None) -> Launch | None:
        """Return an active launch of this browser session."""
        return self.launches.get(launch_id, session_id)

    def refresh(self, launch: Launch) -> Launch | None:
        """Refresh a launch's access token; None when it cannot be refreshed."""
        current = self.launches.reload(launch) or launch
        if current.tokens.access_token != launch.tokens.access_token:
            return current  # another request refreshed it already
        if not current.tokens.refresh_token:
            return None
        try:
            reg = self.registration(current.context.iss, local_fhir_base=current.context.iss
                                    if current.context.client_id == SANDBOX_CLIENT_ID else None)
        except InvalidInput:
            return None
        try:
            response = refresh_tokens(current.tokens.token_endpoint, reg, current.tokens.refresh_token,
                                      client_key=self.client_key(reg))
        except (Unauthorized, RemoteError) as exc:
            log.info("token refresh for launch %s failed: %s", launch.id, exc.message)
            return None
        return self.launches.update_tokens(current, _tokens(response, current.tokens.token_endpoint))

    def ehr_client(self, launch: Launch) -> EhrClient:
        """Return a FHIR client for the launch's EHR that refreshes the token when needed."""
        holder = {"launch": launch}

        def token() -> str:
            return holder["launch"].tokens.access_token

        def expiring() -> bool:
            return holder["launch"].tokens.expires_within(60)

        def refresh() -> bool:
            new = self.refresh(holder["launch"])
            if new is None:
                return False
            holder["launch"] = new
            return True

        return EhrClient(launch.context.iss, token, refresh, expiring)
