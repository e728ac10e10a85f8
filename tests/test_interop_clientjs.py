"""SMART client-js (npm ``fhirclient`` 2.6.3, vendored) in headless Chromium against the sandbox.

A browser-only app (``tests/clientjs``) served from its own static server — another
origin than hw-fhir — does an EHR launch and a standalone launch, reads, searches,
writes and refreshes, with no workaround option: discovery, the token endpoint
(public client, PKCE, refresh without client authentication) and /fhir all over CORS.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest
from browser_support import chromium
from conftest import serve
from smart_support import Browser, make_app, query
from smart_support import browser_like_cookies  # noqa: F401  (autouse fixture)

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "vendor" / "fhirclient-2.6.3" / "fhir-client.min.js"
CLIENT_ID = "clientjs-browser"
SCOPE = "launch openid fhirUser offline_access patient/*.cruds user/*.cruds"
STANDALONE_SCOPE = "launch/patient openid fhirUser offline_access patient/*.cruds"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None


@pytest.fixture
def static_app(tmp_path: Path) -> Iterator[str]:
    """Serve tests/clientjs + the client-js bundle on its own port (its own origin)."""
    root = tmp_path / "clientjs"
    shutil.copytree(HERE / "clientjs", root)
    shutil.copy(BUNDLE, root / "fhir-client.min.js")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def sandbox(app_config: dict[str, Any], static_app: str) -> Iterator[str]:
    """The sandbox app knowing the client-js app as a public client."""
    app = make_app(app_config, extra={"smart": {"sandbox_clients": [{
        "client_id": CLIENT_ID, "token_endpoint_auth_method": "none",
        "redirect_uris": [f"{static_app}/index.html"], "scope": SCOPE + " launch/patient"}]}})
    server = serve(app)
    yield server.url
    server.stop()
    app.extensions["hw_fhir"].close()


def _run(driver: Any, launch_url: str, approve: Any) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(launch_url)
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "authorize-form"))
    approve(driver)
    driver.find_element(By.ID, "approve").click()
    WebDriverWait(driver, 30).until(
        lambda d: d.find_elements(By.ID, "result") and d.find_element(By.ID, "result").text != "working")
    result: dict[str, Any] = json.loads(driver.find_element(By.ID, "result").text)
    return result


def _check(result: dict[str, Any], patient: str) -> None:
    assert "error" not in result, result
    assert result["patientId"] == patient
    assert result["searchType"] == "Bundle"
    assert result["createdId"] and result["readAfterRefresh"] == result["createdId"]
    assert result["refreshed"] is True


def test_clientjs_ehr_launch_read_search_write_refresh(sandbox: str, static_app: str) -> None:
    launch_id = query(Browser(sandbox).open_ehr_chart("dr-okafor", "pat-carmen"))["launch"]
    url = f"{static_app}/launch.html?" + urlencode({"iss": f"{sandbox}/fhir", "launch": launch_id,
                                                     "client_id": CLIENT_ID, "scope": SCOPE})
    with chromium(1000, 800) as driver:
        result = _run(driver, url, lambda d: None)
    _check(result, "pat-carmen")
    assert result["patientName"] == "Lopez"
    assert result["fhirUser"] == "Practitioner/dr-okafor"


def test_clientjs_standalone_patient_launch(sandbox: str, static_app: str) -> None:
    from selenium.webdriver.common.by import By

    url = f"{static_app}/launch.html?" + urlencode({"iss": f"{sandbox}/fhir", "client_id": CLIENT_ID,
                                                     "scope": STANDALONE_SCOPE})

    def sign_in_as_ava(driver: Any) -> None:
        driver.find_element(By.CSS_SELECTOR, 'input[name="user"][value="Patient/pat-ava"]').click()

    with chromium(1000, 800) as driver:
        result = _run(driver, url, sign_in_as_ava)
    _check(result, "pat-ava")
    assert result["fhirUser"] == "Patient/pat-ava"
