"""The strict Content-Security-Policy in real Chromium: every page (sandbox EHR, clinician,
patient) still works with no CSP violation in the console, an injected inline script does not
run, and stored markup with script, event handlers and off-site tricks renders inert."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from flask import render_template_string

from browser_support import chromium, csp_violations
from conftest import serve
from hw_fhir.library import load_catalog
from patient_support import give_homework, link_for
from smart_support import make_app

pytestmark = pytest.mark.browser

PROBE = """<!doctype html><html><head><title>probe</title>
<script src="/static/clinician/clinician.js"></script>
<script>document.title = "pwned-inline";</script></head>
<body><div class="clinician"></div>
<img src="/static/none.png" onerror="document.title = 'pwned-handler'">
<a id="js-link" href="javascript:document.title='pwned-url'">x</a></body></html>"""

#: A page whose one inline script carries the request's nonce; the injected one does not.
NONCED = """<!doctype html><html><head><title>start</title>
<script nonce="{{ csp_nonce() }}">document.title = "nonce-ok";</script>
<script>document.title = "pwned-no-nonce";</script></head><body>
<script nonce="guessed">document.title = "pwned-guessed-nonce";</script></body></html>"""

EXT = "http://hl7.org/fhir/StructureDefinition/"
SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
STORED_XSS = {
    "resourceType": "Questionnaire",
    "url": "http://example.org/Questionnaire/xss-probe",
    "version": "1",
    "status": "active",
    "title": "Probe",
    "item": [
        {"linkId": "intro", "type": "display", "text": "Read this",
         "_text": {"extension": [{"url": EXT + "rendering-xhtml", "valueString":
             '<div xmlns="http://www.w3.org/1999/xhtml"><p>Hello</p>'
             '<script>document.title="pwned-stored"</script>'
             '<img src="x" onerror="document.title=\'pwned-img\'"/>'
             '<a id="a1" href="javascript:document.title=\'pwned-a\'">one</a>'
             '<a id="a2" href="/\\evil.example/">two</a>'
             '<a id="a3" href="java&#10;script:alert(1)">three</a>'
             '<a id="a4" href="/static/media/README.md">ok</a></div>'}]}},
        {"linkId": "clip", "type": "display", "text": "Clip",
         "extension": [{"url": SDC + "sdc-questionnaire-itemMedia", "valueAttachment": {
             "contentType": "image/png", "url": "/\\evil.example/x.png"}}]},
        {"linkId": "done", "type": "boolean", "text": "Done?"},
    ],
}


@pytest.fixture
def driver() -> Iterator[Any]:
    with chromium(1280, 1000) as browser:
        yield browser


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[tuple[Any, str]]:
    app = make_app(app_config)  # sandbox, demo practice, production cookie settings
    load_catalog(app.extensions["hw_fhir"].store)
    app.add_url_rule("/csp-probe", "csp_probe", lambda: PROBE)  # page with injected inline script
    app.add_url_rule("/csp-nonce", "csp_nonce", lambda: render_template_string(NONCED))
    server = serve(app)
    yield app, server.url
    server.stop()
    app.extensions["hw_fhir"].close()


def _wait(driver: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout)


def _visit(driver: Any, url: str) -> None:
    driver.get(url)
    _wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert not csp_violations(driver), url


def _app_links(driver: Any, base: str) -> list[str]:
    hrefs = driver.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")
    host = urlsplit(base).netloc
    keep = []
    for href in hrefs:
        parts = urlsplit(href)
        if parts.netloc == host and not parts.path.startswith(("/sandbox", "/static")) \
                and "signout" not in parts.path and href.split("#")[0] not in keep:
            keep.append(href.split("#")[0])
    return keep


def test_inline_script_injected_into_a_page_does_not_run(driver: Any, served: tuple[Any, str]) -> None:
    _, base = served
    driver.get(base + "/csp-probe")
    _wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")
    driver.find_element("id", "js-link").click()
    assert driver.title == "probe"
    # the page's own script file did run
    assert driver.execute_script("return document.documentElement.classList.contains('js')")
    refused = csp_violations(driver)
    assert any("inline" in m or "script-src" in m for m in refused), refused


def test_a_nonced_inline_script_runs_and_only_that_one(driver: Any, served: tuple[Any, str]) -> None:
    _, base = served
    driver.get(base + "/csp-nonce")
    _wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert driver.title == "nonce-ok"
    assert len(csp_violations(driver)) >= 1  # the guessed nonce was refused
    import requests

    first, second = (requests.get(base + "/csp-nonce", timeout=10).headers["Content-Security-Policy"]
                     for _ in range(2))
    assert "'nonce-" in first and first != second  # a fresh nonce per request
    assert "'nonce-" not in requests.get(base + "/csp-probe", timeout=10).headers[
        "Content-Security-Policy"]


def test_every_page_works_under_the_csp(driver: Any, served: tuple[Any, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    app, base = served
    task = give_homework(app, "phq-9")
    # sandbox EHR and the clinician pages in its iframe
    _visit(driver, f"{base}/sandbox/")
    driver.find_element(By.CSS_SELECTOR, 'input[value="Practitioner/dr-rivera"]').click()
    driver.find_element(By.CSS_SELECTOR, 'input[name="patient"][value="pat-ava"]').click()
    driver.find_element(By.ID, "launch-hw-fhir").click()
    _wait(driver).until(ec.frame_to_be_available_and_switch_to_it((By.ID, "smart-app")))
    _wait(driver).until(ec.element_to_be_clickable((By.ID, "approve"))).click()
    _wait(driver).until(lambda d: d.find_elements(By.ID, "assign-button"))
    assert driver.execute_script("return document.body.classList.contains('has-clinician')")
    pages = _app_links(driver, base)
    driver.switch_to.default_content()
    assert not csp_violations(driver)
    assert len(pages) >= 3, pages
    seen = set(pages)
    for url in list(pages):
        _visit(driver, url)
        for more in _app_links(driver, base):
            if more not in seen and len(seen) < 25:
                seen.add(more)
                _visit(driver, more)
    # the session-prep page's print button is wired from the script file
    # the patient's pages: a link, the form (form.js), progress
    _visit(driver, base + link_for(app, task))
    assert "/my/tasks/" in driver.current_url
    assert driver.execute_script("return document.documentElement.classList.contains('js')")
    for url in _app_links(driver, base):
        _visit(driver, url)
    _visit(driver, urljoin(base, "/sandbox/portal"))


def test_stored_markup_renders_inert(driver: Any, served: tuple[Any, str]) -> None:
    app, base = served
    store = app.extensions["hw_fhir"].store
    store.create(STORED_XSS)
    task = give_homework(app, f"{STORED_XSS['url']}|1")
    driver.get(base + link_for(app, task))
    _wait(driver).until(lambda d: d.find_elements("link text", "ok"))
    anchors = {a.text: a.get_attribute("href") for a in driver.find_elements("tag name", "a")
               if a.text in ("one", "two", "three", "ok")}
    assert anchors["ok"] == base + "/static/media/README.md"
    assert {k: v for k, v in anchors.items() if k != "ok" and v} == {}
    assert "evil.example" not in driver.page_source
    assert not driver.find_elements("css selector", "img[src*='evil'], img[onerror]")
    for text in ("one", "two", "three"):
        driver.find_element("link text", text).click()
    assert "pwned" not in driver.title and "/my/tasks/" in driver.current_url
