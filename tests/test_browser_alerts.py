"""An undelivered risk alert, in a real browser: red on the dashboard, the panel and the sandbox EHR.

The demo practice's SMTP server is not there (port 9) and no safety contact is configured,
so the alert cannot be delivered; screenshots go to ``test-output/``. Acknowledging the risk
Flag takes it off screen.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import OUTPUT, chromium
from conftest import serve
from hw_fhir import outcomes
from hw_fhir.library import load_catalog
from hw_fhir.reminders import run_reminders
from safety_support import catalog_phq9
from smart_support import make_app

pytestmark = pytest.mark.browser


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    app = make_app(app_config, smtp_port=9)  # demo practice; nothing listens on port 9
    load_catalog(app.extensions["hw_fhir"].store)
    server = serve(app)
    yield app, server
    server.stop()
    app.extensions["hw_fhir"].close()


def _wait(driver: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout)


def _raise_undelivered_alert(app: Any) -> dict[str, Any]:
    services = app.extensions["hw_fhir"]
    response = dict(catalog_phq9([1, 1, 1, 1, 0, 0, 0, 0, 3]), id=f"qr-{uuid.uuid4().hex[:8]}")
    stored = services.store.update(response).resource
    recorded = outcomes.record_scores(services.store, stored, settings=services.settings)
    assert recorded.flags and recorded.alerts
    run_reminders(services, worker="w")  # nothing listens on the SMTP port: not delivered
    [alert] = outcomes.undelivered_alerts(services.store)
    assert "SMTP server unreachable" in alert.reason
    return recorded.flags[0]


def _frame(driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.switch_to.default_content()
    _wait(driver).until(ec.frame_to_be_available_and_switch_to_it((By.ID, "smart-app")))


def _shot_of_frame(driver: Any, name: str) -> str:
    """Open the iframe's page in its own tab, screenshot it whole; return its text."""
    url = driver.execute_script("return location.href")
    home = driver.window_handles[0]
    driver.switch_to.new_window("tab")
    try:
        driver.set_window_size(960, 900)
        driver.get(url)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(960, min(int(height) + 140, 4000))
        OUTPUT.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(OUTPUT / f"alert-{name}.png"))
        box = driver.find_element("id", "undelivered-alerts")
        color = box.value_of_css_property("border-top-color")
        assert color in ("rgba(179, 38, 30, 1)", "rgb(179, 38, 30)"), color
        return str(driver.find_element("tag name", "body").text)
    finally:
        driver.close()
        driver.switch_to.window(home)
        driver.set_window_size(1280, 1000)
        _frame(driver)


def test_undelivered_alert_is_red_on_every_screen_until_acknowledged(served) -> None:
    from selenium.webdriver.common.by import By

    app, server = served
    flag = _raise_undelivered_alert(app)
    with chromium(1280, 1000) as driver:
        driver.get(f"{server.url}/sandbox/")
        ehr = driver.find_element(By.ID, "undelivered-alerts").text
        assert "Risk alert not delivered" in ehr and "SMTP server unreachable" in ehr
        OUTPUT.mkdir(exist_ok=True)
        driver.save_screenshot(str(OUTPUT / "alert-sandbox-ehr.png"))
        driver.find_element(By.CSS_SELECTOR, 'input[value="Practitioner/dr-rivera"]').click()
        driver.find_element(By.CSS_SELECTOR, 'input[name="patient"][value="pat-ava"]').click()
        driver.find_element(By.ID, "launch-hw-fhir").click()
        _frame(driver)
        _wait(driver).until(lambda d: d.find_elements(By.ID, "approve"))
        driver.find_element(By.ID, "approve").click()
        _wait(driver).until(lambda d: d.find_elements(By.ID, "assign-button"))
        dashboard = _shot_of_frame(driver, "dashboard")
        assert "Risk alert not delivered" in dashboard and "for Dr. Elena Rivera" in dashboard
        driver.find_element(By.LINK_TEXT, "My patients").click()
        _wait(driver).until(lambda d: "/panel" in d.execute_script("return location.href"))
        panel = _shot_of_frame(driver, "panel")
        assert "Risk alert not delivered" in panel
        # acknowledging the Flag takes the alert off every screen
        driver.find_element(By.LINK_TEXT, "Ava Nguyen").click()
        _wait(driver).until(lambda d: d.find_elements(By.ID, f"ack-{flag['id']}"))
        driver.find_element(By.ID, f"note-{flag['id']}").send_keys("Called, safe")
        driver.find_element(By.ID, f"ack-{flag['id']}").click()
        _wait(driver).until(lambda d: not d.find_elements(By.ID, "undelivered-alerts"))
    assert outcomes.undelivered_alerts(app.extensions["hw_fhir"].store) == []
