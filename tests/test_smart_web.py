"""Browser security of the app: session cookie attributes, framing headers, CSRF, server-side
sessions, and a full launch on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import serve
from smart_support import (
    Browser,
    browser_like_cookies,  # noqa: F401  (autouse fixture)
    make_app,
)


def _set_cookie(response: Any) -> str:
    cookies = [v for k, v in response.headers.items() if k.lower() == "set-cookie"]
    assert len(cookies) == 1, cookies
    return cookies[0]


def test_production_cookie_works_in_an_iframe(app_config: dict[str, Any]) -> None:
    app = make_app(app_config)
    response = app.test_client().get("/sandbox/")
    cookie = _set_cookie(response)
    assert cookie.startswith("__Host-hw_fhir_session=")  # Secure, host-only, Path=/
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "partitioned"} <= attributes.keys()
    assert attributes["path"] == "Path=/" and "domain" not in attributes
    assert attributes["samesite"] == "SameSite=None"
    app.extensions["hw_fhir"].close()


def test_local_http_switch_makes_the_cookie_lax_and_not_secure(app_config: dict[str, Any]) -> None:
    app = make_app(app_config, secure_cookies=False)
    cookie = _set_cookie(app.test_client().get("/sandbox/"))
    assert "SameSite=Lax" in cookie and "Secure" not in cookie and "Partitioned" not in cookie
    app.extensions["hw_fhir"].close()


def test_pages_may_be_framed_only_by_the_configured_ancestors(app_config: dict[str, Any]) -> None:
    app = make_app(app_config, frame_ancestors="'self' https://ehr.example.org")
    client = app.test_client()
    for path in ("/sandbox/", "/launch", "/app", "/fhir/metadata"):
        response = client.get(path)
        assert "X-Frame-Options" not in response.headers, path
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'self' https://ehr.example.org" in policy
        assert "script-src 'self'" in policy and "object-src 'none'" in policy
    app.extensions["hw_fhir"].close()


def test_session_cookie_carries_only_a_random_id(app_config: dict[str, Any]) -> None:
    app = make_app(app_config)
    client = app.test_client()
    client.get("/sandbox/")
    value = client.get_cookie("__Host-hw_fhir_session").value
    assert len(value) >= 40 and "." not in value  # not a signed data blob, just an id
    sessions = app.session_interface.store  # type: ignore[attr-defined]
    assert "_csrf" in sessions.load(value)
    assert sessions.load(value + "x") is None
    app.extensions["hw_fhir"].close()


def test_forms_without_the_csrf_token_are_refused(app_config: dict[str, Any]) -> None:
    app = make_app(app_config)
    server = serve(app)
    try:
        browser = Browser(server.url)
        browser.get("/sandbox/")  # has a session and a token now
        form = {"practitioner": "Practitioner/dr-rivera", "patient": "pat-ava"}
        refused = browser.post("/sandbox/ehr", data=form)
        assert refused.status_code == 403 and "Location" not in refused.headers
        wrong = browser.post("/sandbox/ehr", data={**form, "csrf_token": "guess"})
        assert wrong.status_code == 403
        # another site posting with the victim's cookie but its own token fails the same way
        attacker = Browser(server.url)
        attacker.get("/sandbox/")
        attacker_token = attacker.get("/sandbox/").text.split('name="csrf_token" value="')[1].split('"')[0]
        assert browser.post("/sandbox/ehr", data={**form, "csrf_token": attacker_token}).status_code == 403
        # the token endpoint authenticates clients, not cookies: no CSRF token needed there
        token = browser.post("/sandbox/token", data={"grant_type": "refresh_token"})
        assert token.status_code in (400, 401) and token.json()["error"] == "invalid_client"
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()


def test_sandbox_is_off_unless_configured(client: Any) -> None:
    assert client.get("/sandbox/").status_code == 404
    # without the sandbox only hw-fhir's own Backend Services endpoint is advertised
    config = client.get("/fhir/.well-known/smart-configuration").get_json()
    assert config["grant_types_supported"] == ["client_credentials"]
    assert "authorization_endpoint" not in config


@pytest.mark.postgres
def test_ehr_launch_and_tokens_on_postgresql(app_config: dict[str, Any], pg_url: str) -> None:
    app = make_app({**app_config, "database_url": pg_url})
    server = serve(app)
    try:
        browser = Browser(server.url)
        result = browser.ehr_launch("dr-rivera", "pat-carmen")
        assert '<span class="patient-name">Carmen Lopez</span>' in result.page
        standalone = browser.standalone_launch("pat-dev")
        assert browser.get(standalone.app_url).headers["Location"].startswith("/my/launch?launch=")
        assert '<span class="patient-name">Carmen Lopez</span>' in browser.get(result.app_url).text
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()


def test_the_front_page_leads_to_the_sandbox_or_explains_the_launch(app_config: dict[str, Any],
                                                                   client: Any) -> None:
    app = make_app(app_config)
    response = app.test_client().get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/sandbox/")
    app.extensions["hw_fhir"].close()
    page = client.get("/")  # no sandbox
    assert page.status_code == 200 and b"/launch" in page.data
