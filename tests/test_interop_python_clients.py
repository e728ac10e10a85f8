"""Outside Python clients against hw-fhir, as a health system would run them.

* A Backend Services sync job built on PyJWT (not hw-fhir's JOSE library): discovers the
  token endpoint from ``.well-known/smart-configuration`` of the demo server (sandbox
  on), signs an RS384 client assertion, gets a token there, runs a Bulk ``$export``
  and downloads the NDJSON — with nothing but what discovery said.
* The Python ``fhirclient`` (client-py): a standalone patient launch from the
  CapabilityStatement's OAuth URIs, a refresh (``reauthorize``), then RFC 7662
  introspection and RFC 7009 revocation at the URIs the same extension advertises.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Iterator

import jwt as pyjwt
import orjson
import pytest
import requests
from conftest import serve
from cryptography.hazmat.primitives.asymmetric import rsa
from smart_support import Browser, make_app, query
from smart_support import browser_like_cookies  # noqa: F401  (autouse fixture)
from sync_support import run_worker_cycle

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


# ---------------------------------------------------- Backend Services + $export


@pytest.fixture
def sync_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def demo(app_config: dict[str, Any], sync_key: Any) -> Iterator[tuple[str, Any]]:
    """The demo setup (sandbox on) with one ``[[smart.backend_clients]]`` sync job."""
    jwk = pyjwt.algorithms.RSAAlgorithm.to_jwk(sync_key.public_key(), as_dict=True)
    jwk.update({"kid": "sync-1", "alg": "RS384", "use": "sig"})
    app = make_app(app_config, extra={"smart": {"backend_clients": [{
        "client_id": "hospital-sync", "jwks": {"keys": [jwk]},
        "scopes": ["system/Patient.rs", "system/Practitioner.rs", "system/Observation.rs"]}]}})
    server = serve(app)
    yield server.url, app
    server.stop()
    app.extensions["hw_fhir"].close()


def test_pyjwt_backend_services_and_bulk_export(demo: tuple[str, Any], sync_key: Any) -> None:
    base, app = demo
    config = requests.get(f"{base}/fhir/.well-known/smart-configuration", timeout=10).json()
    assert "client-confidential-asymmetric" in config["capabilities"]
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert "RS384" in config["token_endpoint_auth_signing_alg_values_supported"]
    token_endpoint = config["token_endpoint"]
    now = int(time.time())
    assertion = pyjwt.encode({"iss": "hospital-sync", "sub": "hospital-sync", "aud": token_endpoint,
                              "iat": now, "exp": now + 240, "jti": str(uuid.uuid4())},
                             sync_key, algorithm="RS384", headers={"kid": "sync-1", "typ": "JWT"})
    response = requests.post(token_endpoint, timeout=10, data={
        "grant_type": "client_credentials", "scope": "system/Patient.rs system/Practitioner.rs",
        "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "Bearer" and set(token["scope"].split()) == {"system/Patient.rs",
                                                                             "system/Practitioner.rs"}
    headers = {"Authorization": f"Bearer {token['access_token']}", "Accept": "application/fhir+json"}
    kick = requests.get(f"{base}/fhir/$export", params={"_type": "Patient,Practitioner"}, timeout=10,
                        headers={**headers, "Prefer": "respond-async"})
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["Content-Location"]
    run_worker_cycle(app.extensions["hw_fhir"])
    for _ in range(50):
        status = requests.get(status_url, headers=headers, timeout=10)
        if status.status_code != 202:
            break
        time.sleep(0.1)
    assert status.status_code == 200, status.text
    manifest = status.json()
    counts: dict[str, int] = {}
    for item in manifest["output"]:
        lines = requests.get(item["url"], headers=headers, timeout=10).content.decode().splitlines()
        assert len(lines) == item["count"]
        assert all(orjson.loads(line)["resourceType"] == item["type"] for line in lines)
        counts[item["type"]] = counts.get(item["type"], 0) + len(lines)
    assert counts.get("Patient", 0) > 0 and counts.get("Practitioner", 0) > 0
    assert set(counts) == {"Patient", "Practitioner"}


# ------------------------------------------------------------- fhirclient


@pytest.fixture
def sandbox(app_config: dict[str, Any]) -> Iterator[str]:
    app = make_app(app_config, extra={"smart": {"sandbox_clients": [{
        "client_id": "client-py", "token_endpoint_auth_method": "none",
        "redirect_uris": ["http://127.0.0.1:9/client-py-callback"],
        "scope": "launch/patient openid fhirUser offline_access patient/*.rs"}]}})
    server = serve(app)
    yield server.url
    server.stop()
    app.extensions["hw_fhir"].close()


def test_fhirclient_standalone_launch_refresh_introspect_revoke(sandbox: str) -> None:
    from fhirclient import client as fhirclient

    redirect = "http://127.0.0.1:9/client-py-callback"
    smart = fhirclient.FHIRClient(settings={
        "app_id": "client-py", "api_base": f"{sandbox}/fhir", "redirect_uri": redirect,
        "scope": "launch/patient openid fhirUser offline_access patient/*.rs"})
    user = Browser(sandbox)
    authorize_url = smart.authorize_url
    assert "launch" not in query(authorize_url)
    callback = user.approve(user.get(authorize_url), user="Patient/pat-ben")
    assert callback.headers["Location"].startswith(redirect)
    smart.handle_callback(callback.headers["Location"])
    assert smart.ready and smart.patient_id == "pat-ben"
    first = smart.server.auth.access_token
    assert smart.reauthorize()  # refresh_token grant
    refreshed = smart.server.auth.access_token
    assert refreshed and refreshed != first
    assert smart.patient.id == "pat-ben"

    statement = smart.server.capabilityStatement.as_json()
    uris = {e["url"]: e["valueUri"] for e in statement["rest"][0]["security"]["extension"][0]["extension"]
            if e["url"] != "register"}
    assert {"authorize", "token", "introspect", "revoke"} <= set(uris)
    active = requests.post(uris["introspect"], data={"token": refreshed, "client_id": "client-py"},
                           timeout=10).json()
    assert active["active"] is True and active["patient"] == "pat-ben" and active["client_id"] == "client-py"
    assert requests.post(uris["revoke"], data={"token": smart.server.auth.refresh_token,
                                               "token_type_hint": "refresh_token", "client_id": "client-py"},
                         timeout=10).status_code == 200
    gone = requests.post(uris["introspect"], data={"token": refreshed, "client_id": "client-py"},
                         timeout=10).json()
    assert gone == {"active": False}
    denied = requests.get(f"{sandbox}/fhir/Patient/pat-ben", timeout=10,
                          headers={"Authorization": f"Bearer {refreshed}"})
    assert denied.status_code == 401
