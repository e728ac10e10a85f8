"""The egress policy: outbound calls chosen by a user never reach loopback/private addresses.

A canary listener on loopback counts every TCP connection it accepts; a Subscription created
over real HTTP that points at it (the blind-SSRF attack) must leave it untouched unless the
operator allow-listed loopback, and even then only allow-listed headers go out and
redirects are not followed.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
import requests

from hw_fhir.egress import EgressPolicy, egress_policy
from hw_fhir.errors import EgressRefused, RemoteError
from hw_fhir.smart.client import fetch_jwks
from hw_fhir.sync.subscriptions import run_subscriptions

from conftest import serve
from sync_support import Listener

TOPIC = "http://hw-fhir.org/fhir/SubscriptionTopic/task-status"
BASE = "https://hw.example.org"


class Canary:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts (and answers 200)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    c = Canary()
    yield c
    c.close()


def _subscription(endpoint: str, headers: list[str] | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint,
                               "payload": "application/fhir+json"}
    if headers:
        channel["header"] = headers
    return {"resourceType": "Subscription", "status": "requested", "reason": "sync",
            "criteria": TOPIC, "channel": channel}


def _served(app_config: dict[str, Any], **settings: Any):
    from smart_app import create_app

    app = create_app({**app_config, "base_url": BASE, **settings})
    return app, serve(app)


def _subscribe(url: str, sub: dict[str, Any]) -> str:
    r = requests.post(f"{url}/fhir/Subscription", json=sub, timeout=10,
                      headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_a_subscription_to_loopback_is_refused_and_the_canary_sees_no_connection(
        app_config, canary, host):
    app, server = _served(app_config)
    try:
        sub_id = _subscribe(server.url, _subscription(
            f"http://{host}:{canary.port}/internal/admin",
            ["X-Internal-Auth: forged", "Host: internal.example"]))
        run_subscriptions(app.extensions["hw_fhir"])
        shown = requests.get(f"{server.url}/fhir/Subscription/{sub_id}", timeout=10).json()
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()
    assert canary.connections == 0
    assert shown["status"] == "error"
    assert "allow-list" in shown["error"] or "may not be set" in shown["error"]


def test_allow_listed_loopback_gets_only_allowed_headers(app_config, canary):
    listener = Listener().start()
    app, server = _served(app_config, egress_allow="127.0.0.1")
    try:
        bad = _subscribe(server.url, _subscription(f"http://127.0.0.1:{canary.port}/x",
                                                   ["X-Internal-Auth: forged"]))
        host = _subscribe(server.url, _subscription(f"http://127.0.0.1:{canary.port}/x",
                                                    ["Host: internal.example"]))
        good = _subscribe(server.url, _subscription(listener.url, ["Authorization: Bearer abc"]))
        run_subscriptions(app.extensions["hw_fhir"])
        shown = {sid: requests.get(f"{server.url}/fhir/Subscription/{sid}", timeout=10).json()
                 for sid in (bad, host, good)}
    finally:
        server.stop()
        listener.stop()
        app.extensions["hw_fhir"].close()
    assert canary.connections == 0
    assert shown[bad]["status"] == shown[host]["status"] == "error"
    assert "X-Internal-Auth" in shown[bad]["error"] and "Host" in shown[host]["error"]
    assert shown[good]["status"] == "active"
    assert listener.received and listener.received[0].headers.get("Authorization") == "Bearer abc"


def test_redirects_from_an_allowed_endpoint_are_not_followed(app_config, canary):
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{canary.port}/internal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    app, server = _served(app_config, egress_allow="127.0.0.1")
    try:
        _subscribe(server.url, _subscription(f"http://127.0.0.1:{redirector.server_port}/hook"))
        run_subscriptions(app.extensions["hw_fhir"])
    finally:
        server.stop()
        redirector.shutdown()
        app.extensions["hw_fhir"].close()
    assert canary.connections == 0


def test_jwks_on_a_loopback_address_is_not_fetched_unless_trusted(canary):
    url = f"http://127.0.0.1:{canary.port}/jwks.json"
    with pytest.raises(RemoteError, match="allow-list"):
        fetch_jwks(url)
    assert canary.connections == 0
    with pytest.raises(RemoteError):  # trusted: fetched (the canary answers no JWKS)
        fetch_jwks(url, egress=EgressPolicy().trusting(url))
    assert canary.connections == 1


def _resolver(table: dict[str, list[str]]):
    return lambda host, port: table[host]


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.5", "169.254.169.254", "127.0.0.2",
                                     "::1", "fe80::1", "fc00::1", "0.0.0.0", "100.64.0.1",
                                     "224.0.0.1"])
def test_non_public_addresses_are_refused(address):
    policy = EgressPolicy(resolve=_resolver({"hook.example.org": ["93.184.216.34", address]}))
    with pytest.raises(EgressRefused, match=address):
        policy.check_url("https://hook.example.org/x")


def test_allow_list_names_networks_and_hosts_and_production_is_https_only():
    class S:
        egress_allow = "10.0.0.0/8, hooks.internal"
        egress_headers = "Authorization X-Api-Key"
        production = True

    policy = egress_policy(S())
    policy = EgressPolicy(https_only=policy.https_only, hosts=policy.hosts,
                          networks=policy.networks, headers=policy.headers,
                          resolve=_resolver({"a.example": ["10.9.9.9"], "b.example": ["11.0.0.1"],
                                             "hooks.internal": ["127.0.0.1"]}))
    policy.check_url("https://a.example/x")
    policy.check_url("https://b.example/x")
    policy.check_url("https://hooks.internal/x")
    with pytest.raises(EgressRefused, match="https"):
        policy.check_url("http://b.example/x")
    with pytest.raises(EgressRefused, match="credentials"):
        policy.check_url("https://user:pw@b.example/x")
    assert policy.check_headers([("x-api-key", "k")]) == [("x-api-key", "k")]
    for name in ("Host", "Cookie", "X-Internal-Auth", "Content-Length"):
        with pytest.raises(EgressRefused, match=name):
            policy.check_headers([(name, "v")])
