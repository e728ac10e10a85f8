"""SMART client-js (npm ``fhirclient`` 2.6.3) in Node as a server-side app against the sandbox.

``tests/node/smart_app.js`` uses the library's Node adapter unmodified; this test starts
it with ``node``, plays the user in the sandbox's authorize page over real HTTP, and reads
what the app did: code exchange, read, search, write, and a refresh that — as client-js
does for public clients — sends no client authentication at all.

Needs node and ``tests/node/node_modules`` (the test runs ``npm ci`` there when npm is here; so does ``.ci/run``); skipped
without them outside CI, failed on CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest
import requests
from conftest import serve
from smart_support import Browser, make_app, query
from smart_support import browser_like_cookies  # noqa: F401  (autouse fixture)

NODE_DIR = Path(__file__).resolve().parent / "node"
CLIENT_ID = "clientjs-node"
SCOPE = "launch openid fhirUser offline_access patient/*.cruds user/*.cruds"


def _install_client_js() -> None:
    """Run ``npm ci`` (pinned by package-lock.json) once when npm is here and the package is not."""
    npm = shutil.which("npm")
    if npm is None or (NODE_DIR / "node_modules" / "fhirclient").exists():
        return
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--omit=optional"],
                   cwd=NODE_DIR, capture_output=True, timeout=300, check=False)


def _require_node() -> str:
    _install_client_js()
    node = shutil.which("node")
    missing = "node" if node is None else (
        "tests/node/node_modules (run: cd tests/node && npm ci --omit=optional)"
        if not (NODE_DIR / "node_modules" / "fhirclient").exists() else "")
    if not missing:
        return str(node)
    if os.environ.get("CI"):
        pytest.fail(f"client-js in Node is required on CI but {missing} is missing")
    pytest.skip(f"client-js in Node not available: {missing} is missing")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def node_app() -> Iterator[str]:
    """Start tests/node/smart_app.js on a free port; return its URL."""
    node = _require_node()
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "CLIENT_ID": CLIENT_ID, "SCOPE": SCOPE}
    process = subprocess.Popen([node, str(NODE_DIR / "smart_app.js")], cwd=NODE_DIR, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/ping", timeout=1)
                break
            except requests.ConnectionError:
                if process.poll() is not None:
                    raise AssertionError(process.stdout.read().decode() if process.stdout else "node exited")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def sandbox(app_config: dict[str, Any], node_app: str) -> Iterator[str]:
    app = make_app(app_config, extra={"smart": {"sandbox_clients": [{
        "client_id": CLIENT_ID, "token_endpoint_auth_method": "none",
        "redirect_uris": [f"{node_app}/callback"], "scope": SCOPE}]}})
    server = serve(app)
    yield server.url
    server.stop()
    app.extensions["hw_fhir"].close()


def test_clientjs_in_node_ehr_launch_write_and_refresh(sandbox: str, node_app: str) -> None:
    user = Browser(sandbox)
    launch_id = query(user.open_ehr_chart("dr-rivera", "pat-ava"))["launch"]
    start = requests.get(f"{node_app}/launch?" + urlencode({"iss": f"{sandbox}/fhir", "launch": launch_id}),
                         allow_redirects=False, timeout=20)
    assert start.status_code == 302, start.text
    authorize_url = start.headers["Location"]
    assert authorize_url.startswith(f"{sandbox}/sandbox/authorize?")
    assert query(authorize_url)["code_challenge_method"] == "S256"
    approved = user.approve(user.get(authorize_url))
    assert approved.status_code == 302 and approved.headers["Location"].startswith(f"{node_app}/callback")
    done = requests.get(approved.headers["Location"], timeout=30)
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["patientId"] == "pat-ava" and result["fhirUser"] == "Practitioner/dr-rivera"
    assert result["searchType"] == "Bundle" and result["createdId"]
    assert result["refreshed"] is True and result["readAfterRefresh"] == result["createdId"]
