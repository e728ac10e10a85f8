"""Helpers for the SMART tests: a cookie-keeping HTTP "browser", launches driven over HTTP,
OAuth requests against the sandbox, client assertions, and a stand-in external EHR.

Everything talks real HTTP to apps served on 127.0.0.1 (``conftest.serve``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.cookiejar
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from joserfc import jwt

from hw_fhir.demo import load_demo_data
from hw_fhir.smart.keys import generate_key, public_jwks

ROOT_FIXTURES = __import__("pathlib").Path(__file__).resolve().parent.parent / "fixtures" / "smart"

APP_CLIENT = "hw-fhir-app"


@contextmanager
def secure_cookies_over_http() -> Iterator[None]:
    """Let ``requests`` send ``Secure`` cookies to http://127.0.0.1, as browsers do for localhost.

    Browsers treat http://127.0.0.1 and http://localhost as secure contexts; Python's
    cookie jar does not, so without this the production cookie settings could not be
    exercised over plain-http test servers.
    """
    original = http.cookiejar.DefaultCookiePolicy.return_ok_secure
    http.cookiejar.DefaultCookiePolicy.return_ok_secure = lambda self, cookie, request: True  # type: ignore[method-assign]
    try:
        yield
    finally:
        http.cookiejar.DefaultCookiePolicy.return_ok_secure = original  # type: ignore[method-assign]


def form_fields(page: str, form_id: str | None = None) -> tuple[str, dict[str, str]]:
    """Return (action, hidden fields) of a form in an HTML page."""
    if form_id:
        match = re.search(r'<form[^>]*id="%s"[^>]*>(.*?)</form>' % re.escape(form_id), page, re.DOTALL)
        assert match, f"no form #{form_id} in the page"
        block = match.group(0)
    else:
        block = page
    action = re.search(r'<form[^>]*action="([^"]*)"', block)
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', block))
    return html.unescape(action.group(1)) if action else "", {k: html.unescape(v) for k, v in hidden.items()}


def absolute(base: str, location: str) -> str:
    """Resolve a Location header against a base URL."""
    return urljoin(base + "/", location)


def query(url: str) -> dict[str, str]:
    """Return the query parameters of a URL (first values)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def pkce_pair() -> tuple[str, str]:
    """Return a PKCE (verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class LaunchResult:
    """The end of a launch driven over HTTP: the app page and its URL."""

    app_url: str
    page: str
    launch_id: str


class Browser:
    """A requests session that follows the app's redirects step by step, keeping cookies."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.http.get(absolute(self.base, url), **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return self.http.post(absolute(self.base, url), **kwargs)

    def follow(self, response: requests.Response, *, limit: int = 10) -> requests.Response:
        """Follow redirects one by one (so cookies and each hop are visible)."""
        for _ in range(limit):
            if response.status_code not in (301, 302, 303, 307):
                return response
            response = self.get(absolute(response.url, response.headers["Location"]))
        raise AssertionError("too many redirects")

    # ----------------------------------------------------------------- flows

    def open_ehr_chart(self, practitioner: str = "dr-rivera", patient: str = "pat-ava",
                       encounter: str = "") -> str:
        """Use the sandbox EHR page to open a chart (in an encounter); return the iframe's launch URL."""
        page = self.get("/sandbox/").text
        action, hidden = form_fields(page, "ehr-launch-form")
        response = self.post(action, data={**hidden, "practitioner": f"Practitioner/{practitioner}",
                                           "patient": patient, "encounter": encounter})
        assert response.status_code == 302, response.text
        chart = self.get(response.headers["Location"])
        src = re.search(r'<iframe id="smart-app"[^>]*src="([^"]+)"', chart.text)
        assert src, chart.text
        return html.unescape(src.group(1))

    def approve(self, authorize_response: requests.Response, **choices: str) -> requests.Response:
        """Submit the sandbox's authorize page with Approve (plus user/patient choices).

        A user who allowed this app these scopes before is not asked again: the authorize
        response is then already the redirect to the app, and is returned as it is.
        """
        if authorize_response.status_code == 302:
            return authorize_response
        assert authorize_response.status_code == 200, authorize_response.text
        action, hidden = form_fields(authorize_response.text, "authorize-form")
        return self.post(action, data={**hidden, **choices, "decision": "approve"})

    def launch_app(self, launch_url: str, **choices: str) -> LaunchResult:
        """Run a launch from its launch URL through approval to the app page."""
        first = self.get(launch_url)
        assert first.status_code == 302, first.text
        authorize = self.get(first.headers["Location"])
        # a user who allowed this app these scopes before is not asked again
        callback = authorize if authorize.status_code == 302 else self.approve(authorize, **choices)
        assert callback.status_code == 302, callback.text
        landing = self.get(callback.headers["Location"])
        assert landing.status_code == 302, landing.text
        app_url = absolute(self.base, landing.headers["Location"])
        page = self.follow(self.get(app_url))
        assert page.status_code == 200, page.text
        return LaunchResult(app_url, page.text, query(app_url)["launch"])

    def ehr_launch(self, practitioner: str = "dr-rivera", patient: str = "pat-ava") -> LaunchResult:
        """Do a full EHR launch from the sandbox EHR page."""
        return self.launch_app(self.open_ehr_chart(practitioner, patient))

    def standalone_launch(self, patient: str = "pat-ava") -> LaunchResult:
        """Sign in to the sandbox portal as a patient and open hw-fhir (standalone launch)."""
        portal = self.get("/sandbox/portal").text
        action, hidden = form_fields(portal)
        self.post(action, data={**hidden, "patient": patient})
        portal = self.get("/sandbox/portal").text
        link = re.search(r'<a id="open-hw-fhir" href="([^"]+)"', portal)
        assert link, portal
        return self.launch_app(html.unescape(link.group(1)), user=f"Patient/{patient}")


    def portal_ehr_launch(self, patient: str = "pat-ava") -> LaunchResult:
        """Sign in to the sandbox portal as a patient and open hw-fhir inside it (EHR launch)."""
        portal = self.get("/sandbox/portal").text
        action, hidden = form_fields(portal)
        self.post(action, data={**hidden, "patient": patient})
        action, hidden = form_fields(self.get("/sandbox/portal").text, "portal-ehr-launch-form")
        frame = self.post(action, data=hidden)
        assert frame.status_code == 302, frame.text
        chart = self.get(frame.headers["Location"])
        src = re.search(r'<iframe id="smart-app"[^>]*src="([^"]+)"', chart.text)
        assert src, chart.text
        return self.launch_app(html.unescape(src.group(1)))


def demo_app(app: Any) -> Any:
    """Load the demo practice into an app's store; return the app."""
    load_demo_data(app.extensions["hw_fhir"])
    return app


# ------------------------------------------------------------- OAuth by hand


@dataclass
class CodeGrant:
    """An authorization code obtained from the sandbox, with what is needed to redeem it."""

    code: str
    verifier: str
    redirect_uri: str
    client_id: str
    state: str


def authorize(browser: Browser, *, client_id: str = APP_CLIENT, scope: str,
              redirect_uri: str | None = None, launch: str | None = None,
              verifier: str | None = None, challenge: str | None = None,
              method: str | None = "S256", aud: str | None = None, user: str = "Patient/pat-ava",
              patient: str | None = None, extra: dict[str, str] | None = None) -> CodeGrant:
    """Run the sandbox's authorize endpoint (approving as ``user``) and return the code."""
    redirect_uri = redirect_uri or f"{browser.base}/callback"
    if verifier is None and challenge is None:
        verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "scope": scope, "state": state, "aud": aud or f"{browser.base}/fhir", **(extra or {})}
    if challenge is not None:
        params["code_challenge"] = challenge
    if method is not None:
        params["code_challenge_method"] = method
    if launch:
        params["launch"] = launch
    page = browser.get("/sandbox/authorize", params=params)
    choices = {"user": user}
    if patient:
        choices["patient"] = patient
    response = browser.approve(page, **choices)
    assert response.status_code == 302, response.text
    got = query(response.headers["Location"])
    assert "code" in got, got
    assert got["state"] == state
    return CodeGrant(got["code"], verifier or "", redirect_uri, client_id, state)


def redeem(base: str, grant: CodeGrant, *, verifier: str | None = None, omit_verifier: bool = False,
           auth: Any = None, data: dict[str, str] | None = None) -> requests.Response:
    """POST the code to the sandbox's token endpoint."""
    form = {"grant_type": "authorization_code", "code": grant.code, "redirect_uri": grant.redirect_uri,
            **({"client_id": grant.client_id} if auth is None else {}), **(data or {})}
    if not omit_verifier:
        form["code_verifier"] = verifier if verifier is not None else grant.verifier
    return requests.post(f"{base}/sandbox/token", data=form, auth=auth, timeout=10)


def token_for(browser: Browser, scope: str, **kwargs: Any) -> dict[str, Any]:
    """Get a token response from the sandbox for ``scope`` (authorization code + PKCE)."""
    grant = authorize(browser, scope=scope, **kwargs)
    response = redeem(browser.base, grant)
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------- backend services


@dataclass
class BackendClient:
    """A Backend Services client: id, private key, and its config entry for the sandbox."""

    client_id: str
    key: Any
    scope: str = "system/*.rs"
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, client_id: str, alg: str = "RS384", scope: str = "system/*.rs") -> "BackendClient":
        key = generate_key(alg)
        config = {"client_id": client_id, "token_endpoint_auth_method": "private_key_jwt",
                  "jwks": public_jwks([key]), "scope": scope}
        return cls(client_id, key, scope, config)

    def assertion(self, token_url: str, *, alg: str | None = None, lifetime: int = 240,
                  jti: str | None = None, key: Any = None, claims: dict[str, Any] | None = None) -> str:
        now = int(time.time())
        payload = {"iss": self.client_id, "sub": self.client_id, "aud": token_url, "iat": now,
                   "exp": now + lifetime, "jti": jti or secrets.token_urlsafe(16), **(claims or {})}
        key = key or self.key
        header = {"alg": alg or key.alg, "kid": key.kid or self.key.kid, "typ": "JWT"}
        return jwt.encode(header, payload, key, algorithms=[header["alg"]])

    def token_request(self, base: str, assertion: str | None = None,
                      scope: str | None = None) -> requests.Response:
        token_url = f"{base}/sandbox/token"
        return requests.post(token_url, data={
            "grant_type": "client_credentials", "scope": scope or self.scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion or self.assertion(token_url)}, timeout=10)


def unsigned_jwt(payload: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """Return an ``alg: none`` JWT (for attacks)."""
    def b64(data: dict[str, Any]) -> str:
        import json

        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64(header or {'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."


def fhir(base: str, token: str | None, method: str, path: str, **kwargs: Any) -> requests.Response:
    """Call the app's /fhir with a bearer token."""
    headers = {"Accept": "application/fhir+json", **kwargs.pop("headers", {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if "json" in kwargs:
        headers.setdefault("Content-Type", "application/fhir+json")
    return requests.request(method, f"{base}/fhir/{path.lstrip('/')}", headers=headers, timeout=10, **kwargs)


# ------------------------------------------------------------------ fixtures


def make_app(app_config: dict[str, Any], **overrides: Any) -> Any:
    """Create a test app with the sandbox on, /fhir protected, and the demo practice loaded."""
    from smart_app import create_app

    config = {**app_config, "open_api": False, "sandbox": True, **overrides}
    return demo_app(create_app(config))


@pytest.fixture(autouse=True)
def browser_like_cookies() -> Iterator[None]:
    """Autouse where imported: the app's Secure cookies travel over plain-HTTP test servers."""
    with secure_cookies_over_http():
        yield


@pytest.fixture
def sandbox_app(app_config: dict[str, Any]) -> Iterator[Any]:
    """The app with the sandbox EHR, /fhir protected, demo data loaded."""
    application = make_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


@pytest.fixture
def sandbox_server(sandbox_app: Any) -> Iterator[Any]:
    """The sandbox app served over HTTP on 127.0.0.1."""
    from conftest import serve

    server = serve(sandbox_app)
    yield server
    server.stop()


@pytest.fixture
def browser(sandbox_server: Any) -> Browser:
    """A cookie-keeping HTTP client of the served sandbox app."""
    return Browser(sandbox_server.url)


# ----------------------------------------------------- a stand-in external EHR


class FakeEhr:
    """A small, independent "EHR" (its own Flask app) whose token endpoint can misbehave.

    ``mode`` picks the id_token it sends: ``valid``, ``tampered`` (payload changed after
    signing), ``expired``, ``wrong_aud``, ``wrong_issuer``, ``foreign_key`` (signed by a key
    it does not publish), ``missing`` (openid granted, no id_token).
    """

    def __init__(self, *, client_id: str = "hw-fhir", mode: str = "valid", patient_id: str = "ehr-123",
                 practitioner_id: str = "doc-9", discovery: str = "smart-configuration") -> None:
        from flask import Flask, jsonify, redirect, request

        self.client_id = client_id
        self.mode = mode
        self.hits: list[str] = []
        self.key = generate_key("RS256")
        self.other_key = generate_key("RS256")
        self.access_token = secrets.token_urlsafe(16)
        self.patient_id = patient_id
        self.practitioner_id = practitioner_id
        self.nonces: dict[str, str] = {}
        self.scopes: dict[str, str] = {}
        self.discovery = discovery
        self.patient = {"resourceType": "Patient", "id": patient_id, "active": True,
                        "identifier": [{"system": "urn:oid:1.2.3.4", "value": "MRN-777"}],
                        "name": [{"family": "Okoye", "given": ["Ifeoma"], "text": "Ifeoma Okoye"}],
                        "gender": "female", "birthDate": "1988-02-03"}
        self.practitioner = {"resourceType": "Practitioner", "id": practitioner_id,
                             "name": [{"family": "Haddad", "given": ["Rami"], "prefix": ["Dr."]}]}
        app = Flask("fake_ehr")
        self.app = app
        self.server: Any = None

        @app.before_request
        def _record() -> None:
            self.hits.append(request.path)

        @app.get("/fhir/.well-known/smart-configuration")
        def config() -> Any:
            if self.discovery == "capability":
                return jsonify({"error": "not here"}), 404
            return jsonify({"issuer": self.iss, "authorization_endpoint": f"{self.url}/authorize",
                            "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                            "code_challenge_methods_supported": ["S256"],
                            "capabilities": ["launch-ehr", "launch-standalone"]})

        @app.get("/fhir/metadata")
        def metadata() -> Any:
            oauth = {"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                     "extension": [{"url": "authorize", "valueUri": f"{self.url}/authorize"},
                                   {"url": "token", "valueUri": f"{self.url}/token"}]}
            return jsonify({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                            "fhirVersion": "4.0.1", "format": ["json"],
                            "rest": [{"mode": "server", "security": {"extension": [oauth]}}]})

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify(public_jwks([self.key]))

        @app.get("/authorize")
        def authorize() -> Any:
            args = request.args
            assert args["code_challenge_method"] == "S256" and args["aud"] == self.iss
            code = secrets.token_urlsafe(8)
            self.nonces[code] = args.get("nonce", "")
            self.scopes[code] = args.get("scope", "")
            return redirect(f"{args['redirect_uri']}?code={code}&state={args['state']}")

        @app.post("/token")
        def token() -> Any:
            form = request.form
            assert form.get("code_verifier"), "PKCE verifier missing"
            nonce = self.nonces.get(form.get("code", ""), "")
            scope = self.scopes.get(form.get("code", ""), "")
            body = {"access_token": self.access_token, "token_type": "Bearer", "expires_in": 3600,
                    "scope": scope, "patient": self.patient_id, "need_patient_banner": True}
            if self.mode != "missing" and "openid" in scope.split():
                body["id_token"] = self.id_token(nonce)
            return jsonify(body)

        @app.get("/fhir/<rtype>/<rid>")
        def read(rtype: str, rid: str) -> Any:
            if request.headers.get("Authorization") != f"Bearer {self.access_token}":
                return jsonify({"resourceType": "OperationOutcome"}), 401
            found = {("Patient", self.patient_id): self.patient,
                     ("Practitioner", self.practitioner_id): self.practitioner}.get((rtype, rid))
            return (jsonify(found), 200) if found else (jsonify({"resourceType": "OperationOutcome"}), 404)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def iss(self) -> str:
        return f"{self.url}/fhir"

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.iss, "aud": self.client_id, "sub": f"Practitioner/{self.practitioner_id}",
                  "fhirUser": f"{self.iss}/Practitioner/{self.practitioner_id}", "iat": now,
                  "exp": now + 600, "nonce": nonce}
        key = self.key
        if self.mode == "expired":
            claims.update(iat=now - 7200, exp=now - 3600)
        elif self.mode == "wrong_aud":
            claims["aud"] = "someone-else"
        elif self.mode == "wrong_issuer":
            claims["iss"] = "https://impostor.example/fhir"
        elif self.mode == "foreign_key":
            key = self.other_key
        token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, key, algorithms=["RS256"])
        if self.mode == "tampered":
            header, payload, signature = token.split(".")
            data = __import__("json").loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            data["fhirUser"] = f"{self.iss}/Practitioner/admin"
            forged = base64.urlsafe_b64encode(__import__("json").dumps(data).encode()).rstrip(b"=").decode()
            token = f"{header}.{forged}.{signature}"
        return token

    def start(self) -> "FakeEhr":
        from conftest import serve

        self.server = serve(self.app)
        return self

    def stop(self) -> None:
        self.server.stop()
