"""hw-fhir as a SMART app, over real HTTP: EHR and standalone launches, tabs, mirrors,
refresh, client authentication, and the launch attacks that must fail."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from conftest import serve
from smart_support import (
    Browser,
    FakeEhr,
    browser_like_cookies,  # noqa: F401  (autouse fixture)
    browser,  # noqa: F401
    make_app,
    query,
    sandbox_app,  # noqa: F401
    sandbox_server,  # noqa: F401
)

from hw_fhir.smart.authserver import ClientRegistration
from hw_fhir.smart.authstore import hash_secret
from hw_fhir.smart.mirror import URL_IDENTIFIER_SYSTEM
from hw_fhir.smart.registry import EhrRegistration
from hw_fhir.smart.tables import smart_launch, smart_token
from smart_app.sandbox import APP_CLIENT_SCOPE
from smart_app.state import app_state

_DEMO_NAMES = ("Ava Nguyen", "Ben Schmidt", "Carmen Lopez", "Dev Patel", "Ifeoma Okoye")


def _patient_name(page: str) -> str:
    """Return the one patient name the app page shows (later issues restyle the page around it)."""
    shown = {n for n in _DEMO_NAMES if n in page}
    match = re.search(r'class="patient-name">([^<]+)<', page)
    if match:
        return match.group(1)
    assert len(shown) == 1, (shown, page)
    return shown.pop()


def _session_id(browser: Browser) -> str:
    return browser.http.cookies["__Host-hw_fhir_session"]


def _launch(app: Any, browser: Browser, launch_id: str) -> Any:
    found = app_state(app).launcher.get(launch_id, _session_id(browser))
    assert found is not None
    return found


# ------------------------------------------------------------------ launches


def test_full_ehr_launch_shows_the_patient_and_the_clinician(browser: Browser, sandbox_app: Any) -> None:
    result = browser.ehr_launch("dr-okafor", "pat-dev")
    assert _patient_name(result.page) == "Dev Patel"
    assert 'id="signed-in-user">Dr. Samuel Okafor<' in result.page
    assert "EHR launch" in result.page
    assert 'class="patient-banner"' not in result.page  # the sandbox EHR said need_patient_banner=false
    launch = _launch(sandbox_app, browser, result.launch_id)
    ctx = launch.context
    assert (ctx.patient, ctx.local_patient, ctx.local_practitioner) == ("pat-dev", "pat-dev", "dr-okafor")
    assert ctx.fhir_user == f"{browser.base}/fhir/Practitioner/dr-okafor"
    assert ctx.need_patient_banner is False and not ctx.standalone
    assert ctx.smart_style_url == f"{browser.base}/sandbox/smart-style.json"
    assert {"launch", "openid", "fhirUser", "user/Patient.rs"} <= set(ctx.scope.split())
    assert ctx.id_token_claims["aud"] in ("hw-fhir-app", ["hw-fhir-app"])


def test_standalone_patient_launch_from_the_portal(browser: Browser, sandbox_app: Any) -> None:
    result = browser.standalone_launch("pat-ben")
    # a patient's own launch lands on the patient pages, signed in as that patient
    landing = browser.get(result.app_url)
    assert landing.status_code == 302
    assert landing.headers["Location"] == f"/my/launch?launch={result.launch_id}"
    assert browser.get("/my/").status_code == 200 and "/my/signout" in result.page
    ctx = _launch(sandbox_app, browser, result.launch_id).context
    assert ctx.standalone and ctx.patient == "pat-ben" and ctx.user_type == "Patient"
    assert "launch/patient" in ctx.scope.split() and "launch" not in ctx.scope.split()


def test_same_store_mirror_links_the_ehr_record_without_copying_it(browser: Browser, sandbox_app: Any) -> None:
    store = sandbox_app.extensions["hw_fhir"].store
    before = store.count("Patient")
    browser.ehr_launch("dr-rivera", "pat-ava")
    browser.ehr_launch("dr-rivera", "pat-ava")
    assert store.count("Patient") == before
    identifiers = store.read("Patient", "pat-ava").resource["identifier"]
    links = [i for i in identifiers if i["system"] == URL_IDENTIFIER_SYSTEM]
    assert links == [{"use": "secondary", "system": URL_IDENTIFIER_SYSTEM,
                      "value": f"{browser.base}/fhir/Patient/pat-ava"}]
    practitioner = store.read("Practitioner", "dr-rivera").resource
    assert {"use": "secondary", "system": URL_IDENTIFIER_SYSTEM,
            "value": f"{browser.base}/fhir/Practitioner/dr-rivera"} in practitioner["identifier"]


def test_launches_in_two_tabs_do_not_overwrite_each_other(browser: Browser) -> None:
    first_url = browser.open_ehr_chart("dr-rivera", "pat-ava")
    second_url = browser.open_ehr_chart("dr-okafor", "pat-carmen")
    # both launches start before either finishes, like two tabs
    first = browser.get(first_url)
    second = browser.get(second_url)
    second_done = browser.approve(browser.get(second.headers["Location"]))
    first_done = browser.approve(browser.get(first.headers["Location"]))
    app_first = browser.get(browser.get(first_done.headers["Location"]).headers["Location"])
    app_second = browser.get(browser.get(second_done.headers["Location"]).headers["Location"])
    assert _patient_name(app_first.text) == "Ava Nguyen"
    assert _patient_name(app_second.text) == "Carmen Lopez"
    # and the first tab still shows its own patient afterwards
    assert _patient_name(browser.get(app_first.url).text) == "Ava Nguyen"


def test_a_launch_is_only_visible_to_the_browser_session_that_made_it(browser: Browser) -> None:
    result = browser.ehr_launch()
    stranger = Browser(browser.base)
    page = stranger.get(result.app_url)
    assert page.status_code == 401
    assert "Ava" not in page.text


def test_tokens_are_kept_server_side_and_sealed(browser: Browser, sandbox_app: Any) -> None:
    result = browser.ehr_launch()
    tokens = _launch(sandbox_app, browser, result.launch_id).tokens
    assert tokens.access_token and tokens.refresh_token
    assert [c.name for c in browser.http.cookies] == ["__Host-hw_fhir_session"]
    cookie = browser.http.cookies["__Host-hw_fhir_session"]
    assert tokens.access_token not in cookie and tokens.refresh_token not in cookie
    engine = sandbox_app.extensions["hw_fhir"].store.engine
    with engine.connect() as conn:
        rows = [r.data for r in conn.execute(sa.select(smart_launch.c.data))]
    assert rows and not any(tokens.access_token in r or tokens.refresh_token in r for r in rows)


# ---------------------------------------------------------------- refresh


def test_token_is_refreshed_before_it_expires(browser: Browser, sandbox_app: Any) -> None:
    result = browser.ehr_launch()
    launcher = app_state(sandbox_app).launcher
    launch = _launch(sandbox_app, browser, result.launch_id)
    old = launch.tokens
    launch = launcher.launches.update_tokens(launch, replace(old, expires_at=int(time.time()) + 5))
    patient = launcher.ehr_client(launch).read("Patient", "pat-ava")
    assert patient["id"] == "pat-ava"
    stored = _launch(sandbox_app, browser, result.launch_id).tokens
    assert stored.access_token != old.access_token and stored.refresh_token != old.refresh_token
    assert stored.expires_at > time.time() + 600


def test_token_is_refreshed_once_on_a_401(browser: Browser, sandbox_app: Any) -> None:
    result = browser.ehr_launch()
    launcher = app_state(sandbox_app).launcher
    auth_store = app_state(sandbox_app).smart_auth
    launch = _launch(sandbox_app, browser, result.launch_id)
    # the EHR now answers 401 to the old access token (it expired early), the refresh token still works
    with sandbox_app.extensions["hw_fhir"].store.begin() as conn:
        conn.execute(sa.update(smart_token).where(
            smart_token.c.access_hash == hash_secret(launch.tokens.access_token)).values(expires_at=0))
    client = launcher.ehr_client(launch)
    assert client.read("Practitioner", "dr-rivera")["id"] == "dr-rivera"
    fresh = _launch(sandbox_app, browser, result.launch_id).tokens
    assert fresh.access_token != launch.tokens.access_token
    # when the refresh token is dead too, the 401 comes back after one refresh attempt
    auth_store.revoke(fresh.access_token)
    auth_store.retire_refresh(fresh.refresh_token)
    response = launcher.ehr_client(_launch(sandbox_app, browser, result.launch_id)).request(
        "GET", "Patient/pat-ava")
    assert response.status_code == 401


# ------------------------------------------------------- client authentication


@pytest.fixture
def confidential(app_config: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    app = make_app(app_config)
    server = serve(app)
    yield app, server
    server.stop()
    app.extensions["hw_fhir"].close()


def test_ehr_launch_with_client_secret_basic(confidential: tuple[Any, Any]) -> None:
    app, server = confidential
    app_state(app).sandbox.clients["hw-fhir-secret"] = ClientRegistration(
        client_id="hw-fhir-secret", auth_method="client_secret_basic", client_secret="s3cret-value",
        redirect_uris=(f"{server.url}/callback",), scope=APP_CLIENT_SCOPE)
    app_state(app).launcher.registry.register(EhrRegistration(
        iss=f"{server.url}/fhir", client_id="hw-fhir-secret", client_auth="client_secret_basic",
        client_secret="s3cret-value"))
    browser = Browser(server.url)
    assert _patient_name(browser.ehr_launch("dr-rivera", "pat-ben").page) == "Ben Schmidt"


def test_ehr_launch_with_private_key_jwt_using_the_apps_jwks(confidential: tuple[Any, Any]) -> None:
    app, server = confidential
    app_state(app).sandbox.clients["hw-fhir-jwt"] = ClientRegistration(
        client_id="hw-fhir-jwt", auth_method="private_key_jwt", redirect_uris=(f"{server.url}/callback",),
        scope=APP_CLIENT_SCOPE, jwks_uri=f"{server.url}/.well-known/jwks.json")
    app_state(app).launcher.registry.register(EhrRegistration(
        iss=f"{server.url}/fhir", client_id="hw-fhir-jwt", client_auth="private_key_jwt"))
    browser = Browser(server.url)
    assert _patient_name(browser.ehr_launch("dr-okafor", "pat-dev").page) == "Dev Patel"
    jwks = browser.get("/.well-known/jwks.json").json()
    assert jwks["keys"][0]["alg"] == "RS384" and "d" not in jwks["keys"][0]


def test_confidential_client_with_a_wrong_secret_cannot_finish(confidential: tuple[Any, Any]) -> None:
    app, server = confidential
    app_state(app).sandbox.clients["hw-fhir-secret"] = ClientRegistration(
        client_id="hw-fhir-secret", auth_method="client_secret_basic", client_secret="the-right-one",
        redirect_uris=(f"{server.url}/callback",), scope=APP_CLIENT_SCOPE)
    app_state(app).launcher.registry.register(EhrRegistration(
        iss=f"{server.url}/fhir", client_id="hw-fhir-secret", client_auth="client_secret_basic",
        client_secret="a-wrong-one"))
    browser = Browser(server.url)
    first = browser.get(browser.open_ehr_chart())
    callback = browser.approve(browser.get(first.headers["Location"]))
    page = browser.get(callback.headers["Location"])
    assert page.status_code == 401
    assert "invalid_client" in page.text


# ------------------------------------------------------------------ attacks


def test_unregistered_iss_gets_a_clear_page_and_no_outbound_request(browser: Browser) -> None:
    ehr = FakeEhr().start()
    try:
        page = browser.get(f"/launch?iss={ehr.iss}&launch=abc")
        assert page.status_code == 400
        assert "not registered" in page.text
        assert ehr.hits == []
        assert "Location" not in page.headers
    finally:
        ehr.stop()


def test_launch_without_iss_is_explained(browser: Browser) -> None:
    page = browser.get("/launch")
    assert page.status_code == 400 and "iss" in page.text


def test_state_mismatch_is_refused(browser: Browser) -> None:
    start = browser.get(browser.open_ehr_chart())
    callback = browser.approve(browser.get(start.headers["Location"]))
    location = callback.headers["Location"]
    got = query(location)
    # a callback whose state was never issued
    forged = browser.get(f"/callback?code={got['code']}&state=not-the-state")
    assert forged.status_code == 400 and "state mismatch" in forged.text
    # the right state, but in another browser session (e.g. a link planted by an attacker)
    other = Browser(browser.base)
    stolen = other.get(location)
    assert stolen.status_code == 400 and "another browser session" in stolen.text
    # neither attempt used up the real launch
    landing = browser.get(location)
    assert landing.status_code == 302 and landing.headers["Location"].startswith("/app?launch=")
    # and a replayed callback cannot complete it twice
    assert browser.get(location).status_code == 400


@pytest.fixture
def fake_ehr_app(app_config: dict[str, Any]) -> Iterator[tuple[Browser, FakeEhr, Any]]:
    ehr = FakeEhr().start()
    app = make_app(app_config, extra={"smart": {"ehr": [{"iss": ehr.iss, "client_id": "hw-fhir",
                                                          "client_auth": "public", "name": "Fake EHR"}]}})
    server = serve(app)
    yield Browser(server.url), ehr, app
    server.stop()
    ehr.stop()
    app.extensions["hw_fhir"].close()


def _external_launch(browser: Browser, ehr: FakeEhr) -> Any:
    start = browser.get(f"/launch?iss={ehr.iss}&launch=xyz")
    assert start.status_code == 302 and start.headers["Location"].startswith(ehr.url)
    back = browser.http.get(start.headers["Location"], allow_redirects=False)
    return browser.get(back.headers["Location"])


def test_launch_from_an_external_ehr_mirrors_its_patient(fake_ehr_app: tuple[Browser, FakeEhr, Any]) -> None:
    browser, ehr, app = fake_ehr_app
    done = _external_launch(browser, ehr)
    assert done.status_code == 302, done.text
    page = browser.get(done.headers["Location"])
    assert _patient_name(page.text) == "Ifeoma Okoye"
    assert 'id="signed-in-user">Dr. Rami Haddad<' in page.text
    store = app.extensions["hw_fhir"].store
    link = f"{URL_IDENTIFIER_SYSTEM}|{ehr.iss}/Patient/ehr-123"
    found = store.search("Patient", [("identifier", link)]).resources
    assert len(found) == 1
    assert found[0]["id"] != "ehr-123"
    assert {"system": "urn:oid:1.2.3.4", "value": "MRN-777"} in found[0]["identifier"]
    # a second launch reuses the same local Patient, with the EHR's changes applied
    ehr.patient["name"] = [{"family": "Okoye-Ade", "given": ["Ifeoma"], "text": "Ifeoma Okoye-Ade"}]
    again = _external_launch(browser, ehr)
    assert _patient_name(browser.get(again.headers["Location"]).text) == "Ifeoma Okoye-Ade"
    assert [r["id"] for r in store.search("Patient", [("identifier", link)]).resources] == [found[0]["id"]]


@pytest.mark.parametrize("mode", ["tampered", "expired", "wrong_aud", "wrong_issuer", "foreign_key", "missing"])
def test_bad_id_tokens_are_refused(fake_ehr_app: tuple[Browser, FakeEhr, Any], mode: str) -> None:
    browser, ehr, app = fake_ehr_app
    ehr.mode = mode
    done = _external_launch(browser, ehr)
    assert done.status_code == 401, done.text
    assert "id_token" in done.text
    store = app.extensions["hw_fhir"].store
    assert store.search("Patient", [("identifier", f"{URL_IDENTIFIER_SYSTEM}|{ehr.iss}/Patient/ehr-123")]).matches == []
    assert not any(p.startswith("/fhir/Patient") for p in ehr.hits)  # nothing was read with that token


def test_discovery_falls_back_to_the_capability_statement(app_config: dict[str, Any]) -> None:
    ehr = FakeEhr(discovery="capability").start()
    app = make_app(app_config, extra={"smart": {"ehr": [{
        "iss": ehr.iss, "client_id": "hw-fhir", "scope": "launch user/Patient.rs"}]}})
    server = serve(app)
    try:
        browser = Browser(server.url)
        done = _external_launch(browser, ehr)
        assert done.status_code == 302, done.text
        assert _patient_name(browser.get(done.headers["Location"]).text) == "Ifeoma Okoye"
        assert "/fhir/.well-known/smart-configuration" in ehr.hits and "/fhir/metadata" in ehr.hits
    finally:
        server.stop()
        ehr.stop()
        app.extensions["hw_fhir"].close()


def test_a_denied_launch_says_so_and_opens_nothing(browser: Browser) -> None:
    from smart_support import form_fields

    start = browser.get(browser.open_ehr_chart())
    page = browser.get(start.headers["Location"])
    action, hidden = form_fields(page.text, "authorize-form")
    denied = browser.post(action, data={**hidden, "decision": "deny"})
    result = browser.get(denied.headers["Location"])
    assert result.status_code == 401
    assert "access_denied" in result.text and "Ava" not in result.text
    assert browser.get("/app").status_code == 401
