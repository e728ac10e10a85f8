"""A patient-portal EHR launch (fhirUser is the launch Patient) lands on the patient's own
pages, like the standalone patient launch; a clinician's EHR launch still does not.

Over real HTTP against the sandbox EHR; the Chromium test drives the portal's iframe.
"""

from __future__ import annotations

from typing import Any

import pytest

from hw_fhir import library
from patient_support import give_homework
from smart_support import (
    Browser,
    browser_like_cookies,  # noqa: F401  (autouse fixture)
    browser,  # noqa: F401
    make_app,
    sandbox_app,  # noqa: F401
    sandbox_server,  # noqa: F401
)


def test_portal_ehr_launch_opens_the_patients_own_pages(browser: Browser, sandbox_app: Any) -> None:
    library.load_catalog(sandbox_app.extensions["hw_fhir"].store)
    mine = give_homework(sandbox_app, "phq-9", patient="pat-ben")
    theirs = give_homework(sandbox_app, "gad-7", patient="pat-ava")
    result = browser.portal_ehr_launch("pat-ben")
    assert f'id="task-{mine["id"]}"' in result.page
    assert f'id="task-{theirs["id"]}"' not in result.page
    assert "Granted" not in result.page
    assert browser.get(f"/my/tasks/{mine['id']}").status_code == 200
    assert browser.get(f"/my/tasks/{theirs['id']}").status_code == 403


def test_clinician_ehr_launch_still_opens_the_clinician_side(browser: Browser, sandbox_app: Any) -> None:
    result = browser.ehr_launch("dr-rivera", "pat-ava")
    assert "/my/" not in result.app_url
    assert browser.get(f"/my/launch?launch={result.launch_id}").status_code == 401
    assert browser.get("/my/").status_code == 401


def test_portal_launch_needs_a_signed_in_patient(browser: Browser) -> None:
    from smart_support import form_fields

    page = browser.get("/sandbox/portal").text
    action, hidden = form_fields(page)
    browser.post(action, data={**hidden, "patient": "pat-ava"})
    _, hidden = form_fields(browser.get("/sandbox/portal").text, "portal-ehr-launch-form")
    stranger = Browser(browser.base)
    stranger.get("/sandbox/portal")
    refused = stranger.post("/sandbox/portal/launch", data=hidden)
    assert refused.status_code in (400, 403)


@pytest.mark.browser
def test_portal_ehr_launch_in_chromium(app_config: dict[str, Any]) -> None:
    from browser_support import chromium
    from conftest import serve
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    app = make_app(app_config)
    library.load_catalog(app.extensions["hw_fhir"].store)
    task = give_homework(app, "phq-9", patient="pat-carmen")
    server = serve(app)
    try:
        with chromium(1280, 900) as driver:
            wait = WebDriverWait(driver, 20)
            driver.get(f"{server.url}/sandbox/portal")
            driver.find_element(By.CSS_SELECTOR, 'input[name="patient"][value="pat-carmen"]').click()
            driver.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
            wait.until(ec.element_to_be_clickable((By.ID, "portal-launch-hw-fhir"))).click()
            wait.until(ec.frame_to_be_available_and_switch_to_it((By.ID, "smart-app")))
            wait.until(ec.element_to_be_clickable((By.ID, "approve"))).click()
            card = wait.until(ec.visibility_of_element_located((By.ID, f"task-{task['id']}")))
            assert card.text
            assert "/my/" in driver.execute_script("return location.pathname")
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()
