"""A real browser: headless Chromium opens the sandbox EHR, launches hw-fhir in its iframe and
sees the patient's name in the app, with the production cookie settings
(``Secure; SameSite=None; Partitioned``, CSP ``frame-ancestors``).

Chromium treats http://127.0.0.1 and http://localhost as secure contexts, so it
keeps ``Secure`` cookies from them without TLS. Skipped only when Chromium is
missing and ``CI`` is not set; on CI a missing Chromium fails the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from browser_support import OUTPUT, chromium
from conftest import serve
from smart_support import make_app

from smart_app.state import app_state

pytestmark = pytest.mark.browser

@pytest.fixture
def driver() -> Iterator[Any]:
    """Headless Chromium with a fresh profile, desktop-sized."""
    with chromium(1280, 900) as browser:
        yield browser


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[Any]:
    app = make_app(app_config)  # production cookie settings: secure_cookies is on by default
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["SESSION_COOKIE_SAMESITE"] == "None"
    server = serve(app)
    yield server
    server.stop()
    app.extensions["hw_fhir"].close()


def _launch_in_iframe(driver: Any, base: str, patient: str,
                     practitioner: str = "dr-rivera") -> tuple[str, str]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 20)
    driver.get(f"{base}/sandbox/")
    driver.find_element(By.CSS_SELECTOR, f'input[value="Practitioner/{practitioner}"]').click()
    driver.find_element(By.CSS_SELECTOR, f'input[name="patient"][value="{patient}"]').click()
    driver.find_element(By.ID, "launch-hw-fhir").click()
    wait.until(ec.frame_to_be_available_and_switch_to_it((By.ID, "smart-app")))
    # consent is asked once per clinician and app: a second launch opens straight away
    wait.until(lambda d: d.find_elements(By.ID, "approve") or d.find_elements(By.ID, "signed-in-user"))
    for approve in driver.find_elements(By.ID, "approve"):
        approve.click()
    user = wait.until(ec.visibility_of_element_located((By.ID, "signed-in-user"))).text
    name = driver.find_element(By.CSS_SELECTOR, ".patient-name").text
    driver.switch_to.default_content()
    return name, user


def test_ehr_launch_in_an_iframe_with_production_cookies(driver: Any, served: Any) -> None:
    name, user = _launch_in_iframe(driver, served.url, "pat-ben")
    assert name == "Ben Schmidt"
    assert user == "Dr. Elena Rivera"
    cookies = {c["name"]: c for c in driver.get_cookies()}
    session = cookies["__Host-hw_fhir_session"]
    assert session["secure"] is True and session["httpOnly"] is True
    assert session.get("sameSite") == "None"
    OUTPUT.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(OUTPUT / "browser-ehr-launch.png"))


def test_second_launch_in_another_tab_keeps_the_first(driver: Any, served: Any) -> None:
    first_name, _ = _launch_in_iframe(driver, served.url, "pat-ava")
    first_tab = driver.current_window_handle
    from selenium.webdriver.common.by import By

    first_app = driver.find_element(By.ID, "smart-app").get_attribute("src")
    driver.switch_to.new_window("tab")
    second_name, _ = _launch_in_iframe(driver, served.url, "pat-dev")
    driver.switch_to.window(first_tab)
    driver.switch_to.frame(driver.find_element(By.ID, "smart-app"))
    assert (first_name, second_name) == ("Ava Nguyen", "Dev Patel")
    assert driver.find_element(By.CSS_SELECTOR, ".patient-name").text == "Ava Nguyen"
    assert first_app and "launch=" in first_app


def _cross_site_ehr(app_url: str) -> Any:
    """A one-page "EHR" on another site (http://localhost:<port>) framing the app on 127.0.0.1."""
    from flask import Flask

    ehr = Flask("cross_site_ehr")

    @ehr.get("/chart")
    def chart() -> str:
        return (f'<!doctype html><title>Other EHR</title><h1 id="ehr">Other EHR</h1>'
                f'<iframe id="smart-app" src="{app_url}" style="width:1000px;height:700px"></iframe>')

    return serve(ehr)


def _detached(element: Any) -> bool:
    """Tell whether an element has left the page (Chromium may say so with a plain
    WebDriverException, "Node ... does not belong to the document", inside frames)."""
    from selenium.common.exceptions import WebDriverException

    try:
        element.is_enabled()
    except WebDriverException:
        return True
    return False


def _frame_launch(app_config: dict[str, Any], driver: Any, *, secure: bool) -> tuple[str, str]:
    """Launch hw-fhir (on 127.0.0.1) inside an iframe of a page on localhost; return (name, page)."""
    from urllib.parse import urlencode

    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    app = make_app(app_config, secure_cookies=secure, frame_ancestors="'self' http://localhost:*")
    server = serve(app)
    try:
        launch_id = app_state(app).sandbox.auth_store.create_launch({
            "fhirUser": "Practitioner/dr-okafor", "patient": "pat-carmen", "need_patient_banner": False})
        app_url = f"{server.url}/launch?" + urlencode({"iss": f"{server.url}/fhir", "launch": launch_id})
        ehr = _cross_site_ehr(app_url)
        try:
            wait = WebDriverWait(driver, 20)
            driver.get(f"http://localhost:{ehr.port}/chart")
            wait.until(ec.frame_to_be_available_and_switch_to_it((By.ID, "smart-app")))
            approve = wait.until(ec.element_to_be_clickable((By.ID, "approve")))
            approve.click()
            wait.until(lambda _driver: _detached(approve))
            # the frame navigated: chromedriver may have dropped its frame context and answer
            # for the EHR's page from here on, so enter the frame again before reading it
            driver.switch_to.default_content()
            wait.until(ec.frame_to_be_available_and_switch_to_it((By.ID, "smart-app")))
            WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(
                lambda d: d.find_element(By.TAG_NAME, "h1").get_attribute("id") != "ehr")
            text, page = driver.find_element(By.TAG_NAME, "body").text, driver.page_source
            driver.switch_to.default_content()
            OUTPUT.mkdir(exist_ok=True)
            driver.save_screenshot(str(OUTPUT / f"browser-cross-site-{'secure' if secure else 'lax'}.png"))
            return text, page
        finally:
            ehr.stop()
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()


def test_cross_site_iframe_launch_needs_samesite_none(app_config: dict[str, Any], driver: Any,
                                                     tmp_path: Path) -> None:
    """The EHR on another site frames hw-fhir: production cookies work, the local-http switch does not."""
    text, _ = _frame_launch(app_config, driver, secure=True)
    assert "Carmen Lopez" in text
    lax_config = {**app_config, "instance_path": str(tmp_path / "lax"),
                  "database_url": f"sqlite:///{tmp_path / 'lax.db'}"}
    text, page = _frame_launch(lax_config, driver, secure=False)
    # without SameSite=None the framed app's cookie is not sent back: the CSRF-protected approval
    # (and the launch's state check after it) cannot find the session
    assert "Carmen Lopez" not in text
    assert "This form has expired" in page
