"""The sandbox's SMART authorization server over real HTTP: discovery, PKCE, codes, refresh,
id_tokens, Backend Services, and the attacks that must fail."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from conftest import serve
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey
from smart_support import (
    APP_CLIENT,
    BackendClient,
    Browser,
    browser_like_cookies,  # noqa: F401  (autouse fixture)
    authorize,
    browser,  # noqa: F401
    fhir,
    make_app,
    pkce_pair,
    query,
    redeem,
    sandbox_app,  # noqa: F401
    sandbox_server,  # noqa: F401
    token_for,
    unsigned_jwt,
)


def test_smart_configuration_has_the_required_fields(browser: Browser) -> None:
    response = browser.get("/fhir/.well-known/smart-configuration")
    assert response.status_code == 200
    config = response.json()
    base = browser.base
    assert config["issuer"] == f"{base}/fhir"
    assert config["authorization_endpoint"] == f"{base}/sandbox/authorize"
    assert config["token_endpoint"] == f"{base}/sandbox/token"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(config["grant_types_supported"])
    assert {"launch-ehr", "launch-standalone", "permission-v2", "permission-v1", "sso-openid-connect",
            "context-ehr-patient", "client-confidential-asymmetric"} <= set(config["capabilities"])
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    jwks = browser.get(config["jwks_uri"]).json()
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])  # public halves only


def test_capability_statement_announces_the_oauth_uris_without_a_token(browser: Browser) -> None:
    statement = requests.get(f"{browser.base}/fhir/metadata", timeout=10).json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris == {"authorize": f"{browser.base}/sandbox/authorize", "token": f"{browser.base}/sandbox/token",
                    "introspect": f"{browser.base}/auth/introspect", "revoke": f"{browser.base}/auth/revoke"}
    assert security["cors"] is True  # the sandbox allows any origin unless HW_FHIR_CORS_ORIGINS says otherwise


def test_code_exchange_gives_context_scope_and_a_verifiable_id_token(browser: Browser) -> None:
    token = token_for(browser, "launch/patient openid fhirUser offline_access patient/*.rs")
    assert token["token_type"] == "Bearer"
    assert token["patient"] == "pat-ava"
    assert token["need_patient_banner"] is True
    assert set(token["scope"].split()) == {"launch/patient", "openid", "fhirUser", "offline_access",
                                           "patient/*.rs"}
    assert token["refresh_token"] and 0 < token["expires_in"] <= 3600
    config = browser.get("/fhir/.well-known/smart-configuration").json()
    keys = KeySet.import_key_set(browser.get(config["jwks_uri"]).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["iss"] == config["issuer"]
    assert claims["aud"] in (APP_CLIENT, [APP_CLIENT])
    assert claims["fhirUser"] == f"{browser.base}/fhir/Patient/pat-ava"
    assert claims["exp"] > time.time()


def test_token_requests_are_not_cached(browser: Browser) -> None:
    grant = authorize(browser, scope="launch/patient patient/Patient.rs")
    response = redeem(browser.base, grant)
    assert response.status_code == 200
    assert "no-store" in response.headers.get("Cache-Control", "")


# ------------------------------------------------------------------ PKCE


def test_missing_code_verifier_is_invalid_grant(browser: Browser) -> None:
    grant = authorize(browser, scope="launch/patient patient/Patient.rs")
    response = redeem(browser.base, grant, omit_verifier=True)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_wrong_code_verifier_is_invalid_grant(browser: Browser) -> None:
    grant = authorize(browser, scope="launch/patient patient/Patient.rs")
    other_verifier, _ = pkce_pair()
    response = redeem(browser.base, grant, verifier=other_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # the code is spent: even the right verifier cannot use it now
    assert redeem(browser.base, grant).json()["error"] == "invalid_grant"


def test_authorize_without_pkce_is_refused_back_to_the_client(browser: Browser) -> None:
    params = {"response_type": "code", "client_id": APP_CLIENT, "redirect_uri": f"{browser.base}/callback",
              "scope": "launch/patient patient/Patient.rs", "state": "s1", "aud": f"{browser.base}/fhir"}
    response = browser.get("/sandbox/authorize", params=params)
    assert response.status_code == 302
    got = query(response.headers["Location"])
    assert got["error"] == "invalid_request" and got["state"] == "s1"
    assert "PKCE" in got["error_description"]


def test_plain_code_challenge_method_is_refused(browser: Browser) -> None:
    verifier, _ = pkce_pair()
    params = {"response_type": "code", "client_id": APP_CLIENT, "redirect_uri": f"{browser.base}/callback",
              "scope": "launch/patient patient/Patient.rs", "state": "s2", "aud": f"{browser.base}/fhir",
              "code_challenge": verifier, "code_challenge_method": "plain"}
    response = browser.get("/sandbox/authorize", params=params)
    assert response.status_code == 302
    assert query(response.headers["Location"])["error"] == "invalid_request"


# ----------------------------------------------------------- code rules


def test_reused_code_is_refused_and_revokes_the_first_token(browser: Browser) -> None:
    grant = authorize(browser, scope="launch/patient patient/Patient.rs")
    first = redeem(browser.base, grant)
    assert first.status_code == 200
    access = first.json()["access_token"]
    assert fhir(browser.base, access, "GET", "Patient/pat-ava").status_code == 200
    second = redeem(browser.base, grant)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert fhir(browser.base, access, "GET", "Patient/pat-ava").status_code == 401


def test_code_is_bound_to_its_redirect_uri(browser: Browser) -> None:
    grant = authorize(browser, scope="launch/patient patient/Patient.rs")
    grant.redirect_uri = f"{browser.base}/elsewhere"
    response = redeem(browser.base, grant)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_wrong_aud_is_refused(browser: Browser) -> None:
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": APP_CLIENT, "redirect_uri": f"{browser.base}/callback",
              "scope": "launch/patient patient/Patient.rs", "state": "s3",
              "aud": "https://attacker.example/fhir", "code_challenge": challenge,
              "code_challenge_method": "S256"}
    response = browser.get("/sandbox/authorize", params=params)
    assert response.status_code == 302
    got = query(response.headers["Location"])
    assert got["error"] == "invalid_request" and "aud" in got["error_description"]


def test_unknown_redirect_uri_is_never_redirected_to(browser: Browser) -> None:
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": APP_CLIENT, "redirect_uri": "https://attacker.example/cb",
              "scope": "launch/patient", "state": "s4", "aud": f"{browser.base}/fhir",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    response = browser.get("/sandbox/authorize", params=params)
    assert response.status_code == 400
    assert "attacker" not in response.headers.get("Location", "")
    assert 'id="oauth-error"' in response.text


def test_unknown_launch_id_is_refused(browser: Browser) -> None:
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": APP_CLIENT, "redirect_uri": f"{browser.base}/callback",
              "scope": "launch openid", "state": "s5", "aud": f"{browser.base}/fhir", "launch": "nope",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    response = browser.get("/sandbox/authorize", params=params)
    assert query(response.headers["Location"])["error"] == "invalid_request"


def test_denied_authorization_goes_back_as_access_denied(browser: Browser) -> None:
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": APP_CLIENT, "redirect_uri": f"{browser.base}/callback",
              "scope": "launch/patient patient/Patient.rs", "state": "s6", "aud": f"{browser.base}/fhir",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    page = browser.get("/sandbox/authorize", params=params)
    from smart_support import form_fields

    action, hidden = form_fields(page.text, "authorize-form")
    response = browser.post(action, data={**hidden, "user": "Patient/pat-ava", "decision": "deny"})
    got = query(response.headers["Location"])
    assert (got["error"], got["state"]) == ("access_denied", "s6")
    assert "code" not in got


def test_approval_needs_the_csrf_token(browser: Browser) -> None:
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": APP_CLIENT, "redirect_uri": f"{browser.base}/callback",
              "scope": "launch/patient patient/Patient.rs", "state": "s7", "aud": f"{browser.base}/fhir",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    page = browser.get("/sandbox/authorize", params=params)
    from smart_support import form_fields

    action, _ = form_fields(page.text, "authorize-form")
    response = browser.post(action, data={"user": "Patient/pat-ava", "decision": "approve"})
    assert response.status_code == 403
    assert "Location" not in response.headers


def test_patient_user_cannot_grant_user_scopes(browser: Browser) -> None:
    token = token_for(browser, "launch/patient patient/Patient.rs user/*.cruds", user="Patient/pat-ben")
    assert token["scope"] == "launch/patient patient/Patient.rs"
    assert token["patient"] == "pat-ben"


# -------------------------------------------------------------- refresh


def test_refresh_token_rotates_and_keeps_the_context(browser: Browser) -> None:
    token = token_for(browser, "launch/patient offline_access patient/Patient.rs")
    form = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": APP_CLIENT}
    refreshed = requests.post(f"{browser.base}/sandbox/token", data=form, timeout=10)
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["access_token"] != token["access_token"]
    assert new["patient"] == "pat-ava" and new["scope"] == token["scope"]
    assert new["refresh_token"] != token["refresh_token"]
    assert fhir(browser.base, new["access_token"], "GET", "Patient/pat-ava").status_code == 200
    again = requests.post(f"{browser.base}/sandbox/token", data=form, timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_no_refresh_token_without_offline_or_online_access(browser: Browser) -> None:
    token = token_for(browser, "launch/patient patient/Patient.rs")
    assert "refresh_token" not in token


# ---------------------------------------------------- backend services


@pytest.fixture
def backend(app_config: dict[str, Any]) -> Any:
    rs = BackendClient.create("sync-rs", "RS384", "system/*.rs")
    es = BackendClient.create("sync-es", "ES384", "system/QuestionnaireResponse.rs system/Task.rs")
    app = make_app(app_config, extra={"smart": {"sandbox_clients": [rs.config, es.config]}})
    server = serve(app)
    yield server.url, rs, es
    server.stop()
    app.extensions["hw_fhir"].close()


def test_backend_services_token_with_rs384_and_es384(backend: Any) -> None:
    base, rs, es = backend
    for client in (rs, es):
        response = client.token_request(base)
        assert response.status_code == 200, response.text
        token = response.json()
        assert token["token_type"] == "Bearer" and token["expires_in"] <= 300
        assert "refresh_token" not in token
        assert token["scope"] == client.scope
    es_token = es.token_request(base).json()["access_token"]
    assert fhir(base, es_token, "GET", "QuestionnaireResponse").status_code == 200
    assert fhir(base, es_token, "GET", "Patient").status_code == 403


def test_backend_scope_is_narrowed_to_the_registration(backend: Any) -> None:
    base, rs, _ = backend
    response = rs.token_request(base, scope="system/Patient.rs system/Task.cruds")
    assert response.status_code == 200
    assert response.json()["scope"] == "system/Patient.rs"
    refused = rs.token_request(base, scope="system/Task.cud")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"


def test_replayed_client_assertion_is_refused(backend: Any) -> None:
    base, rs, _ = backend
    assertion = rs.assertion(f"{base}/sandbox/token")
    assert rs.token_request(base, assertion).status_code == 200
    replay = rs.token_request(base, assertion)
    assert replay.status_code in (400, 401) and replay.json()["error"] == "invalid_client"


def test_hs256_assertion_is_refused(backend: Any) -> None:
    base, rs, _ = backend
    public_n = rs.key.as_dict(private=False)["n"]
    forged_key = OctKey.import_key(public_n.encode())  # the classic "public key as HMAC secret"
    assertion = rs.assertion(f"{base}/sandbox/token", alg="HS256", key=forged_key)
    response = rs.token_request(base, assertion)
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"
    assert "RS384 or ES384" in response.json()["error_description"]


def test_none_signed_assertion_is_refused(backend: Any) -> None:
    base, rs, _ = backend
    now = int(time.time())
    assertion = unsigned_jwt({"iss": rs.client_id, "sub": rs.client_id, "aud": f"{base}/sandbox/token",
                              "exp": now + 60, "jti": "x-none"})
    response = rs.token_request(base, assertion)
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"


def test_rs256_is_not_accepted_for_backend_assertions(backend: Any) -> None:
    base, rs, _ = backend
    from hw_fhir.smart.keys import generate_key, public_jwks

    rs256 = generate_key("RS256")
    rs.config["jwks"]["keys"].append(public_jwks([rs256])["keys"][0])  # even a registered key
    response = rs.token_request(base, rs.assertion(f"{base}/sandbox/token", key=rs256))
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"


def test_assertion_living_longer_than_five_minutes_is_refused(backend: Any) -> None:
    base, rs, _ = backend
    response = rs.token_request(base, rs.assertion(f"{base}/sandbox/token", lifetime=3600))
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"
    assert "5 minutes" in response.json()["error_description"]


def test_assertion_signed_by_another_key_or_for_another_audience_is_refused(backend: Any) -> None:
    base, rs, _ = backend
    stranger = BackendClient.create("sync-rs", "RS384")
    assert rs.token_request(base, stranger.assertion(f"{base}/sandbox/token")).status_code in (400, 401)
    wrong_aud = rs.assertion("https://other.example/token")
    assert rs.token_request(base, wrong_aud).json()["error"] == "invalid_client"
    expired = rs.assertion(f"{base}/sandbox/token", lifetime=-120)
    assert rs.token_request(base, expired).json()["error"] == "invalid_client"


def test_backend_client_cannot_use_a_public_client_flow(backend: Any) -> None:
    base, rs, _ = backend
    response = requests.post(f"{base}/sandbox/token", data={
        "grant_type": "client_credentials", "client_id": rs.client_id, "scope": "system/*.rs"}, timeout=10)
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"


# ------------------------------------------------------------ fhirclient


def test_fhirclient_does_an_ehr_launch_against_the_sandbox(app_config: dict[str, Any]) -> None:
    """The independent `fhirclient` library, as a SMART client of the sandbox."""
    from fhirclient import client as fhirclient

    redirect = "http://127.0.0.1:9/fhirclient-callback"
    app = make_app(app_config, extra={"smart": {"sandbox_clients": [{
        "client_id": "fhirclient-test", "token_endpoint_auth_method": "none", "redirect_uris": [redirect],
        "scope": "launch openid fhirUser profile user/*.cruds patient/*.read"}]}})
    server = serve(app)
    try:
        browser = Browser(server.url)
        launch_url = browser.open_ehr_chart("dr-okafor", "pat-carmen")
        launch_id = query(launch_url)["launch"]
        saved: dict[str, Any] = {}
        smart = fhirclient.FHIRClient(settings={"app_id": "fhirclient-test", "api_base": f"{server.url}/fhir",
                                                "redirect_uri": redirect, "launch_token": launch_id},
                                      save_func=saved.update)
        authorize_url = smart.authorize_url  # reads /fhir/metadata and its OAuth URIs
        assert authorize_url.startswith(f"{server.url}/sandbox/authorize?")
        assert query(authorize_url)["code_challenge_method"] == "S256"
        callback = browser.approve(browser.get(authorize_url))
        assert callback.headers["Location"].startswith(redirect)
        smart.handle_callback(callback.headers["Location"])
        assert smart.ready
        assert smart.patient_id == "pat-carmen"
        assert smart.human_name(smart.patient.name[0]) == "Carmen Lopez"
        from fhirclient.models.practitioner import Practitioner

        practitioner = Practitioner.read("dr-okafor", smart.server)
        assert practitioner.name[0].family == "Okafor"
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()
