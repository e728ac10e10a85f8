"""hw-fhir's authorization server as outside SMART clients see it, over real HTTP.

CORS for browser-only apps, one token endpoint for every registered client kind,
SMART 2.2 discovery field by field in both modes, OpenID Connect discovery,
introspection (RFC 7662), revocation (RFC 7009), public-client refresh without
``client_id``, refresh-token reuse revoking the family, and self-URLs from the
configured base URL (never the Host header) with https required off localhost.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import requests
from conftest import serve
from joserfc import jwt
from joserfc.jwk import KeySet
from smart_support import (
    APP_CLIENT,
    BackendClient,
    Browser,
    browser_like_cookies,  # noqa: F401  (autouse fixture)
    authorize,
    browser,  # noqa: F401
    demo_app,
    fhir,
    make_app,
    redeem,
    sandbox_app,  # noqa: F401
    sandbox_server,  # noqa: F401
    token_for,
)

from hw_fhir.config import load_settings
from hw_fhir.errors import ConfigurationError
from hw_fhir.smart.keys import public_jwks

ORIGIN = "https://app.example.org"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PATIENT_SCOPE = "launch/patient openid fhirUser offline_access patient/*.cruds"


def _preflight(url: str, origin: str = ORIGIN, method: str = "POST",
               headers: str = "authorization, content-type, if-match, prefer") -> requests.Response:
    return requests.options(url, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                          "Access-Control-Request-Headers": headers}, timeout=10)


def _lower_set(value: str | None) -> set[str]:
    return {v.strip().lower() for v in (value or "").split(",") if v.strip()}


def _backend_entry(client: BackendClient) -> dict[str, Any]:
    return {"client_id": client.client_id, "jwks": public_jwks([client.key]), "scopes": client.scope}


def _client_credentials(url: str, client: BackendClient, aud: str | None = None) -> requests.Response:
    return requests.post(url, data={
        "grant_type": "client_credentials", "scope": client.scope, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client.assertion(aud or url)}, timeout=10)


@pytest.fixture
def sync_job() -> BackendClient:
    return BackendClient.create("health-system-sync", "ES384", "system/Patient.rs system/Task.rs")


@pytest.fixture
def sandbox_with_backend(app_config: dict[str, Any], sync_job: BackendClient) -> Iterator[str]:
    """The sandbox app with one ``[[smart.backend_clients]]`` client."""
    app = make_app(app_config, extra={"smart": {"backend_clients": [_backend_entry(sync_job)]}})
    server = serve(app)
    yield server.url
    server.stop()
    app.extensions["hw_fhir"].close()


def _production_app(app_config: dict[str, Any], client: BackendClient, **settings: Any) -> Any:
    from smart_app import create_app

    return demo_app(create_app({**app_config, "sandbox": False, "open_api": False,
                                "extra": {"smart": {"backend_clients": [_backend_entry(client)]}},
                                **settings}))


@pytest.fixture
def production(app_config: dict[str, Any], sync_job: BackendClient) -> Iterator[str]:
    """hw-fhir without the sandbox (its own Backend Services server), CORS not configured."""
    app = _production_app(app_config, sync_job)
    server = serve(app)
    yield server.url
    server.stop()
    app.extensions["hw_fhir"].close()


# ----------------------------------------------------------------------- CORS


def test_cors_preflight_and_exposed_headers_on_fhir(browser: Browser) -> None:
    base = browser.base
    export = _preflight(f"{base}/fhir/$export", method="GET", headers="authorization, prefer, accept")
    assert export.status_code in (200, 204) and export.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    pre = _preflight(f"{base}/fhir/Task/some-id", method="PUT",
                     headers="authorization, content-type, if-match, prefer, if-none-exist")
    assert pre.status_code in (200, 204)
    assert pre.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    assert {"authorization", "content-type", "if-match", "prefer", "if-none-exist"} <= \
        _lower_set(pre.headers.get("Access-Control-Allow-Headers"))
    assert "PUT" in pre.headers.get("Access-Control-Allow-Methods", "")
    assert "Access-Control-Allow-Credentials" not in pre.headers  # tokens never travel in cookies

    token = token_for(browser, PATIENT_SCOPE)["access_token"]
    created = fhir(base, token, "POST", "Observation", headers={"Origin": ORIGIN}, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "mood"},
        "subject": {"reference": "Patient/pat-ava"}, "valueInteger": 6})
    assert created.status_code == 201, created.text
    assert created.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    exposed = _lower_set(created.headers.get("Access-Control-Expose-Headers"))
    assert {"location", "etag", "content-location"} <= exposed
    denied = fhir(base, None, "GET", "Patient/pat-ava", headers={"Origin": ORIGIN})
    assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)


def test_cors_on_token_introspection_revocation_and_discovery(browser: Browser) -> None:
    base = browser.base
    for path in ("/sandbox/token", "/auth/token", "/auth/introspect", "/auth/revoke"):
        pre = _preflight(f"{base}{path}", headers="content-type")
        assert pre.status_code in (200, 204), path
        assert pre.headers.get("Access-Control-Allow-Origin") in ("*", ORIGIN), path
    for path in ("/fhir/.well-known/smart-configuration", "/fhir/.well-known/openid-configuration",
                 "/sandbox/jwks.json", "/fhir/metadata"):
        got = requests.get(f"{base}{path}", headers={"Origin": "https://anyone.example"}, timeout=10)
        assert got.status_code == 200 and got.headers["Access-Control-Allow-Origin"] == "*", path
    statement = requests.get(f"{base}/fhir/metadata", timeout=10).json()
    assert statement["rest"][0]["security"]["cors"] is True


def test_without_configured_origins_production_sends_no_cors(production: str) -> None:
    pre = _preflight(f"{production}/fhir/Patient")
    assert "Access-Control-Allow-Origin" not in pre.headers
    token = _preflight(f"{production}/auth/token")
    assert "Access-Control-Allow-Origin" not in token.headers
    metadata = requests.get(f"{production}/fhir/metadata", headers={"Origin": ORIGIN}, timeout=10)
    assert "Access-Control-Allow-Origin" not in metadata.headers
    assert metadata.json()["rest"][0]["security"]["cors"] is False
    # discovery documents are public: any origin may read them
    config = requests.get(f"{production}/fhir/.well-known/smart-configuration",
                          headers={"Origin": ORIGIN}, timeout=10)
    assert config.headers["Access-Control-Allow-Origin"] == "*"


def test_configured_origins_only(app_config: dict[str, Any], sync_job: BackendClient) -> None:
    app = _production_app(app_config, sync_job, cors_origins=f"{ORIGIN}, https://other.example.org")
    server = serve(app)
    try:
        allowed = _preflight(f"{server.url}/fhir/Patient")
        assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
        refused = _preflight(f"{server.url}/fhir/Patient", origin="https://evil.example")
        assert "Access-Control-Allow-Origin" not in refused.headers
        statement = requests.get(f"{server.url}/fhir/metadata", timeout=10).json()
        assert statement["rest"][0]["security"]["cors"] is True
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()


def test_cors_and_base_url_settings_are_checked(tmp_path: Any) -> None:
    common = {"environ": {}, "secret_key": "x", "instance_path": str(tmp_path)}
    with pytest.raises(ConfigurationError, match="HW_FHIR_BASE_URL is required"):
        load_settings(**common, production=True)
    with pytest.raises(ConfigurationError, match=r"CORS_ORIGINS=\* is refused"):
        load_settings(**common, production=True, base_url="https://hw.example.org", cors_origins="*")
    with pytest.raises(ConfigurationError, match="not an origin"):
        load_settings(**common, cors_origins="app.example.org")
    settings = load_settings(**common, production=True, base_url="https://hw.example.org",
                             cors_origins="https://a.example.org https://b.example.org/")
    assert settings.cors_origin_list == ["https://a.example.org", "https://b.example.org"]
    assert load_settings(**common, production=True, base_url="https://hw.example.org").cors_origin_list == []
    assert load_settings(**common, sandbox=True).cors_origin_list == ["*"]


# ------------------------------------------------------------------ discovery


def test_sandbox_smart_configuration_field_by_field(browser: Browser) -> None:
    base = browser.base
    config = browser.get("/fhir/.well-known/smart-configuration").json()
    assert config == {
        "issuer": f"{base}/fhir",
        "jwks_uri": f"{base}/sandbox/jwks.json",
        "authorization_endpoint": f"{base}/sandbox/authorize",
        "token_endpoint": f"{base}/sandbox/token",
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "scopes_supported": config["scopes_supported"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "introspection_endpoint": f"{base}/auth/introspect",
        "revocation_endpoint": f"{base}/auth/revoke",
        "capabilities": config["capabilities"],
    }
    assert {"openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
            "patient/*.cruds", "user/*.cruds", "patient/*.read", "system/*.rs"} <= set(config["scopes_supported"])
    assert set(config["capabilities"]) == {
        "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
        "client-confidential-asymmetric", "context-ehr-patient", "context-standalone-patient",
        "context-banner", "context-style", "permission-offline", "permission-online",
        "permission-patient", "permission-user", "permission-v1", "permission-v2", "sso-openid-connect"}
    assert "plain" not in config["code_challenge_methods_supported"]


def test_production_smart_configuration_field_by_field(production: str) -> None:
    config = requests.get(f"{production}/fhir/.well-known/smart-configuration", timeout=10).json()
    assert config == {
        "token_endpoint": f"{production}/auth/token",
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/Patient.rs", "system/Task.rs"],
        "code_challenge_methods_supported": ["S256"],
        "introspection_endpoint": f"{production}/auth/introspect",
        "revocation_endpoint": f"{production}/auth/revoke",
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }
    # no id_tokens, no sso-openid-connect: no issuer, no OpenID discovery
    assert requests.get(f"{production}/fhir/.well-known/openid-configuration", timeout=10).status_code == 404


def test_openid_configuration_at_the_issuer_matches_id_tokens(browser: Browser) -> None:
    smart = browser.get("/fhir/.well-known/smart-configuration").json()
    response = requests.get(f"{smart['issuer']}/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    oidc = response.json()
    assert oidc["issuer"] == smart["issuer"]
    assert oidc["jwks_uri"] == smart["jwks_uri"] and oidc["token_endpoint"] == smart["token_endpoint"]
    assert oidc["authorization_endpoint"] == smart["authorization_endpoint"]
    assert "RS256" in oidc["id_token_signing_alg_values_supported"] and "public" in oidc["subject_types_supported"]
    token = token_for(browser, PATIENT_SCOPE)
    keys = KeySet.import_key_set(requests.get(oidc["jwks_uri"], timeout=10).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=oidc["id_token_signing_alg_values_supported"]).claims
    assert claims["iss"] == oidc["issuer"]


# --------------------------------------------------- one token endpoint


def test_backend_client_is_served_at_the_discovered_token_endpoint(sandbox_with_backend: str,
                                                                   sync_job: BackendClient) -> None:
    base = sandbox_with_backend
    config = requests.get(f"{base}/fhir/.well-known/smart-configuration", timeout=10).json()
    assert "client_credentials" in config["grant_types_supported"]
    for url in (config["token_endpoint"], f"{base}/auth/token"):
        response = _client_credentials(url, sync_job)
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert fhir(base, token, "GET", "Patient/pat-ava").status_code == 200
        assert fhir(base, token, "GET", "Observation").status_code == 403
    # an assertion naming some other server is refused
    assert _client_credentials(f"{base}/auth/token", sync_job, aud="https://elsewhere.example/token") \
        .status_code in (400, 401)


# ----------------------------------------------------------------- refresh


def test_public_client_refreshes_without_client_authentication(browser: Browser) -> None:
    token = token_for(browser, PATIENT_SCOPE)
    refreshed = requests.post(f"{browser.base}/sandbox/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["patient"] == "pat-ava" and new["refresh_token"] != token["refresh_token"]
    assert fhir(browser.base, new["access_token"], "GET", "Patient/pat-ava").status_code == 200
    # a confidential client's refresh token still needs that client's authentication
    unknown = requests.post(f"{browser.base}/sandbox/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": "not-a-token"})
    assert unknown.status_code in (400, 401) and unknown.json()["error"] in ("invalid_client", "invalid_grant")


def test_a_confidential_clients_refresh_token_still_needs_its_secret(app_config: dict[str, Any]) -> None:
    redirect = "http://127.0.0.1:9/confidential-callback"
    app = make_app(app_config, extra={"smart": {"sandbox_clients": [{
        "client_id": "confidential", "token_endpoint_auth_method": "client_secret_basic",
        "client_secret": "s3cret-s3cret", "redirect_uris": [redirect],
        "scope": "launch/patient offline_access patient/*.rs"}]}})
    server = serve(app)
    try:
        user = Browser(server.url)
        grant = authorize(user, client_id="confidential", redirect_uri=redirect,
                          scope="launch/patient offline_access patient/*.rs")
        token = redeem(server.url, grant, auth=("confidential", "s3cret-s3cret")).json()
        url = f"{server.url}/auth/token"
        for extra in ({}, {"client_id": "confidential"}):
            refused = requests.post(url, data={"grant_type": "refresh_token",
                                               "refresh_token": token["refresh_token"], **extra}, timeout=10)
            assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        ok = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
                           auth=("confidential", "s3cret-s3cret"), timeout=10)
        assert ok.status_code == 200, ok.text
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()


def test_reusing_a_rotated_refresh_token_revokes_the_family(browser: Browser) -> None:
    first = token_for(browser, PATIENT_SCOPE)
    url = f"{browser.base}/sandbox/token"
    second = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                      "client_id": APP_CLIENT}, timeout=10).json()
    third = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"],
                                     "client_id": APP_CLIENT}, timeout=10).json()
    assert fhir(browser.base, third["access_token"], "GET", "Patient/pat-ava").status_code == 200
    # the first refresh token leaked and is replayed: refused, and every token of the grant dies
    replay = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                           timeout=10)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    for access in (first["access_token"], second["access_token"], third["access_token"]):
        assert fhir(browser.base, access, "GET", "Patient/pat-ava").status_code == 401
    after = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": third["refresh_token"]},
                          timeout=10)
    assert after.status_code == 400
    # another grant of the same user and client is untouched
    other = token_for(browser, PATIENT_SCOPE)
    assert fhir(browser.base, other["access_token"], "GET", "Patient/pat-ava").status_code == 200


# ------------------------------------------------- introspection, revocation


def test_introspection_reports_active_tokens_with_their_context(browser: Browser) -> None:
    token = token_for(browser, PATIENT_SCOPE)
    url = f"{browser.base}/auth/introspect"
    got = requests.post(url, data={"token": token["access_token"], "client_id": APP_CLIENT}, timeout=10)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["active"] is True and body["client_id"] == APP_CLIENT
    assert body["scope"] == token["scope"] and body["patient"] == "pat-ava"
    assert body["fhirUser"] == "Patient/pat-ava" and body["exp"] > body["iat"]
    refresh = requests.post(url, data={"token": token["refresh_token"], "token_type_hint": "refresh_token",
                                       "client_id": APP_CLIENT}, timeout=10).json()
    assert refresh["active"] is True
    for bogus in ("nothing-like-a-token", token["access_token"] + "x"):
        assert requests.post(url, data={"token": bogus, "client_id": APP_CLIENT}, timeout=10).json() == \
            {"active": False}
    anonymous = requests.post(url, data={"token": token["access_token"]}, timeout=10)
    assert anonymous.status_code in (400, 401) and anonymous.json()["error"] == "invalid_client"


def test_a_client_cannot_introspect_another_clients_token(sandbox_with_backend: str,
                                                           sync_job: BackendClient) -> None:
    base = sandbox_with_backend
    backend_token = _client_credentials(f"{base}/auth/token", sync_job).json()["access_token"]
    mine = requests.post(f"{base}/auth/introspect", timeout=10, data={
        "token": backend_token, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": sync_job.assertion(f"{base}/auth/introspect")}).json()
    assert mine["active"] is True and mine["scope"] == sync_job.scope
    theirs = requests.post(f"{base}/auth/introspect", timeout=10,
                           data={"token": backend_token, "client_id": APP_CLIENT}).json()
    assert theirs == {"active": False}


def test_revoking_a_refresh_token_ends_the_grant(browser: Browser) -> None:
    token = token_for(browser, PATIENT_SCOPE)
    revoked = requests.post(f"{browser.base}/auth/revoke", timeout=10, data={
        "token": token["refresh_token"], "token_type_hint": "refresh_token", "client_id": APP_CLIENT})
    assert revoked.status_code == 200, revoked.text
    assert fhir(browser.base, token["access_token"], "GET", "Patient/pat-ava").status_code == 401
    refresh = requests.post(f"{browser.base}/sandbox/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": APP_CLIENT})
    assert refresh.status_code == 400
    unknown = requests.post(f"{browser.base}/auth/revoke", data={"token": "unknown", "client_id": APP_CLIENT},
                            timeout=10)
    assert unknown.status_code == 200  # RFC 7009 2.2


def test_revoking_an_access_token(browser: Browser) -> None:
    token = token_for(browser, PATIENT_SCOPE)
    assert fhir(browser.base, token["access_token"], "GET", "Patient/pat-ava").status_code == 200
    response = requests.post(f"{browser.base}/auth/revoke", timeout=10,
                             data={"token": token["access_token"], "client_id": APP_CLIENT})
    assert response.status_code == 200
    assert fhir(browser.base, token["access_token"], "GET", "Patient/pat-ava").status_code == 401
    introspected = requests.post(f"{browser.base}/auth/introspect", timeout=10,
                                 data={"token": token["access_token"], "client_id": APP_CLIENT}).json()
    assert introspected == {"active": False}


# ------------------------------------------------------- self URLs, transport


def test_plain_http_with_a_foreign_host_is_a_clear_oauth_error(browser: Browser) -> None:
    for path in ("/auth/token", "/sandbox/token", "/auth/introspect", "/auth/revoke"):
        response = requests.post(f"{browser.base}{path}", headers={"Host": "hw.example.org"}, timeout=10,
                                 data={"grant_type": "client_credentials", "token": "x"})
        assert response.status_code == 400, (path, response.text)
        body = response.json()
        assert body["error"] == "insecure_transport" and "https" in body["error_description"], path


def test_configured_base_url_is_the_only_self_url(app_config: dict[str, Any], sync_job: BackendClient) -> None:
    configured = "http://127.0.0.1:9/hw"
    app = _production_app(app_config, sync_job, base_url=configured)
    server = serve(app)
    try:
        statement = requests.get(f"{server.url}/fhir/metadata", headers={"Host": "evil.example"}, timeout=10)
        assert statement.status_code == 200
        assert "evil.example" not in statement.text and f"{configured}/fhir" in statement.text
        config = requests.get(f"{server.url}/fhir/.well-known/smart-configuration",
                              headers={"Host": "evil.example"}, timeout=10).json()
        assert config["token_endpoint"] == f"{configured}/auth/token"
        # the assertion must name the configured token URL; the URL the request came in on is refused
        real = f"{server.url}/auth/token"
        assert _client_credentials(real, sync_job).status_code in (400, 401)
        assert _client_credentials(real, sync_job, aud=f"{configured}/auth/token").status_code == 200
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()
