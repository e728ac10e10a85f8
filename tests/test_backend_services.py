"""hw-fhir's own SMART Backend Services token endpoint (/auth/token), in production mode, over real HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from conftest import serve
from joserfc.jwk import OctKey
from smart_support import BackendClient, demo_app, fhir, unsigned_jwt

from hw_fhir.errors import ConfigurationError
from hw_fhir.smart.backend import backend_client_from_config
from hw_fhir.smart.keys import generate_key, public_jwks

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _toml(value: Any) -> str:
    """Write a TOML value (dicts as inline tables; enough for a JWKS)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def _config_file(path: Path, clients: list[dict[str, Any]]) -> Path:
    lines = []
    for client in clients:
        lines.append("[[smart.backend_clients]]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in client.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class Production:
    """The served app and its registered clients."""

    def __init__(self, base: str, reporting: BackendClient, writer: BackendClient) -> None:
        self.base = base
        self.token_url = f"{base}/auth/token"
        self.reporting = reporting
        self.writer = writer

    def request(self, client: BackendClient, assertion: str | None = None, *, scope: str | None = None,
                **data: str) -> requests.Response:
        return requests.post(self.token_url, data={
            "grant_type": "client_credentials", "scope": scope or client.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion or client.assertion(self.token_url), **data}, timeout=10)

    def token(self, client: BackendClient, **kwargs: Any) -> str:
        response = self.request(client, **kwargs)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture
def production(app_config: dict[str, Any], tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Production]:
    from smart_app import create_app

    reporting = BackendClient.create("reporting", "RS384", "system/Patient.rs system/Observation.rs")
    writer = BackendClient.create("writer", "ES384", "system/Task.rs")
    config = _config_file(tmp_path / "hw-fhir.toml", [
        {"client_id": "reporting", "jwks": public_jwks([reporting.key]),
         "scopes": ["system/Patient.rs", "system/Observation.rs"]},
        {"client_id": "writer", "jwks": public_jwks([writer.key]), "scopes": "system/Task.rs"},
    ])
    monkeypatch.setenv("HW_FHIR_CONFIG", str(config))
    app = demo_app(create_app({**app_config, "sandbox": False, "open_api": False}))
    server = serve(app)
    yield Production(server.url, reporting, writer)
    server.stop()
    app.extensions["hw_fhir"].close()


def _refused(response: requests.Response, error: str) -> str:
    assert response.status_code in (400, 401), response.text
    body = response.json()
    assert body["error"] == error, body
    return str(body.get("error_description") or "")


# ------------------------------------------------------------------ discovery


def test_production_advertises_its_backend_services_endpoint(production: Production) -> None:
    response = requests.get(f"{production.base}/fhir/.well-known/smart-configuration", timeout=10)
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == production.token_url
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert config["grant_types_supported"] == ["client_credentials"]
    assert config["capabilities"] == ["client-confidential-asymmetric", "permission-v1", "permission-v2"]
    assert {"system/Patient.rs", "system/Observation.rs", "system/Task.rs"} == set(config["scopes_supported"])
    assert "authorization_endpoint" not in config
    assert requests.get(f"{production.base}/sandbox/token", timeout=10).status_code == 404


# ---------------------------------------------------------------------- tokens


def test_a_backend_token_reads_fhir(production: Production) -> None:
    assert fhir(production.base, None, "GET", "Patient/pat-ava").status_code == 401
    response = production.request(production.reporting)
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "Bearer" and 0 < token["expires_in"] <= 300
    assert "refresh_token" not in token
    assert set(token["scope"].split()) == {"system/Patient.rs", "system/Observation.rs"}
    patient = fhir(production.base, token["access_token"], "GET", "Patient/pat-ava")
    assert patient.status_code == 200 and patient.json()["id"] == "pat-ava"
    found = fhir(production.base, token["access_token"], "GET", "Observation", params={"patient": "pat-ava"})
    assert found.status_code == 200 and found.json()["resourceType"] == "Bundle"


def test_es384_client_gets_only_its_scopes(production: Production) -> None:
    token = production.token(production.writer)
    assert fhir(production.base, token, "GET", "Task").status_code == 200
    assert fhir(production.base, token, "GET", "Patient/pat-ava").status_code == 403


def test_granted_scope_is_requested_intersected_with_allowed(production: Production) -> None:
    response = production.request(production.reporting, scope="system/Patient.rs system/Task.rs")
    assert response.status_code == 200 and response.json()["scope"] == "system/Patient.rs"
    token = response.json()["access_token"]
    assert fhir(production.base, token, "GET", "Observation").status_code == 403


def test_writing_outside_the_granted_scopes_is_refused(production: Production) -> None:
    token = production.token(production.reporting)
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "mood"},
                   "subject": {"reference": "Patient/pat-ava"}, "valueInteger": 3}
    assert fhir(production.base, token, "POST", "Observation", json=observation).status_code == 403
    patient = fhir(production.base, token, "GET", "Patient/pat-ava").json()
    assert fhir(production.base, token, "PUT", "Patient/pat-ava", json=patient).status_code == 403


def test_scope_the_client_is_not_registered_for_is_refused(production: Production) -> None:
    _refused(production.request(production.reporting, scope="system/Task.rs"), "invalid_scope")
    _refused(production.request(production.reporting, scope="patient/Patient.rs"), "invalid_scope")


# -------------------------------------------------------------------- attacks


def test_only_asymmetric_algorithms_are_accepted(production: Production) -> None:
    rs = production.reporting
    forged = OctKey.import_key(rs.key.as_dict(private=False)["n"].encode())
    hs256 = production.request(rs, rs.assertion(production.token_url, alg="HS256", key=forged))
    assert "RS384 or ES384" in _refused(hs256, "invalid_client")
    now = int(time.time())
    unsigned = unsigned_jwt({"iss": rs.client_id, "sub": rs.client_id, "aud": production.token_url,
                             "exp": now + 60, "jti": "none-1"})
    _refused(production.request(rs, unsigned), "invalid_client")
    rs256 = generate_key("RS256")
    _refused(production.request(rs, rs.assertion(production.token_url, key=rs256)), "invalid_client")


def test_assertion_lifetime_is_checked(production: Production) -> None:
    rs = production.reporting
    too_long = production.request(rs, rs.assertion(production.token_url, lifetime=3600))
    assert "5 minutes" in _refused(too_long, "invalid_client")
    _refused(production.request(rs, rs.assertion(production.token_url, lifetime=-120)), "invalid_client")


def test_replayed_jti_is_refused(production: Production) -> None:
    rs = production.reporting
    assertion = rs.assertion(production.token_url)
    assert production.request(rs, assertion).status_code == 200
    _refused(production.request(rs, assertion), "invalid_client")
    same_jti = rs.assertion(production.token_url, jti="fixed-jti")
    assert production.request(rs, same_jti).status_code == 200
    _refused(production.request(rs, rs.assertion(production.token_url, jti="fixed-jti")), "invalid_client")


def test_assertion_for_another_audience_or_from_another_key_is_refused(production: Production) -> None:
    rs = production.reporting
    _refused(production.request(rs, rs.assertion(f"{production.base}/sandbox/token")), "invalid_client")
    _refused(production.request(rs, rs.assertion(f"{production.base}/fhir")), "invalid_client")
    stranger = BackendClient.create("reporting", "RS384")
    _refused(production.request(rs, stranger.assertion(production.token_url)), "invalid_client")


def test_unknown_client_is_refused(production: Production) -> None:
    nobody = BackendClient.create("nobody", "RS384")
    _refused(production.request(nobody, nobody.assertion(production.token_url)), "invalid_client")


def test_only_client_credentials_with_a_client_assertion(production: Production) -> None:
    rs = production.reporting
    response = requests.post(production.token_url, data={
        "grant_type": "client_credentials", "client_id": rs.client_id, "scope": rs.scope}, timeout=10)
    _refused(response, "invalid_client")
    code = production.request(rs, grant_type="authorization_code", code="x",
                              redirect_uri=f"{production.base}/callback")
    _refused(code, "unsupported_grant_type")
    _refused(production.request(rs, grant_type="refresh_token", refresh_token="x"), "unsupported_grant_type")


# -------------------------------------------------------------- configuration


def test_backend_client_configuration_is_checked() -> None:
    jwks = public_jwks([generate_key("RS384")])
    client = backend_client_from_config({"client_id": "a", "jwks_url": "https://a.example/jwks.json",
                                         "scopes": ["system/Patient.rs"]})
    assert client.jwks_uri == "https://a.example/jwks.json" and client.grant_types == ("client_credentials",)
    assert client.auth_method == "private_key_jwt" and client.scope == "system/Patient.rs"
    for bad in ({"jwks": jwks, "scopes": "system/Patient.rs"},
                {"client_id": "a", "scopes": "system/Patient.rs"},
                {"client_id": "a", "jwks": jwks, "jwks_url": "https://a.example/j", "scopes": "system/*.rs"},
                {"client_id": "a", "jwks": jwks, "scopes": "patient/*.rs"},
                {"client_id": "a", "jwks": jwks, "scopes": []}):
        with pytest.raises(ConfigurationError):
            backend_client_from_config(bad)
