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


def _checked(page: str, name: str) -> list[str]:
    """The values of the radio buttons called ``name`` that a page preselects."""
    import re

    radios = re.findall(r'<input type="radio" name="%s" value="([^"]+)"([^>]*)>' % name, page)
    assert radios, f"no {name} radios on the page"
    return [value for value, rest in radios if re.search(r"\bchecked\b", rest)]


def _authorize_page(browser: Browser) -> str:
    """The sandbox's sign-in and consent page of hw-fhir's standalone launch."""
    from urllib.parse import urlencode

    first = browser.get("/launch?" + urlencode({"iss": f"{browser.base}/fhir"}))
    assert first.status_code == 302, first.text
    page = browser.get(first.headers["Location"])
    assert page.status_code == 200, page.text
    return page.text


def test_the_portal_preselects_nobody_for_a_newcomer(browser: Browser) -> None:
    """No demo patient is chosen for someone the portal cannot know: they pick who they are."""
    from smart_support import form_fields

    page = browser.get("/sandbox/portal").text
    assert _checked(page, "patient") == [] and 'name="patient" value="pat-carmen" required' in page
    action, hidden = form_fields(page)
    assert browser.post(action, data=hidden).status_code == 400  # no choice: not signed in
    assert 'id="portal-patient"' not in browser.get("/sandbox/portal").text
    assert _checked(_authorize_page(browser), "user") == []


def test_the_portal_preselects_the_patient_whose_secure_link_was_followed(browser: Browser,
                                                                           sandbox_app: Any) -> None:
    """A newcomer who followed Ben's secure link and then opens the portal is Ben there."""
    from patient_support import link_for

    library.load_catalog(sandbox_app.extensions["hw_fhir"].store)
    task = give_homework(sandbox_app, "phq-9", patient="pat-ben")
    opened = browser.follow(browser.get(link_for(sandbox_app, task)))
    assert opened.status_code == 200 and "/my/tasks/" in opened.url
    assert _checked(browser.get("/sandbox/portal").text, "patient") == ["pat-ben"]
    assert _checked(_authorize_page(browser), "user") == ["Patient/pat-ben"]


@pytest.mark.browser
def test_a_newcomer_from_a_secure_link_signs_in_to_the_portal_as_that_patient(app_config: dict[str, Any]) -> None:
    """The demo click-through: Ben's secure link, then the portal's "Sign in" and "Open
    hw-fhir" without choosing anybody: it is Ben's list that opens (it was Carmen's, the first
    demo patient). A browser that followed no link must choose before signing in."""
    from browser_support import chromium
    from conftest import serve
    from patient_support import link_for
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    app = make_app(app_config)
    library.load_catalog(app.extensions["hw_fhir"].store)
    bens = give_homework(app, "phq-9", patient="pat-ben")
    carmens = give_homework(app, "gad-7", patient="pat-carmen")
    server = serve(app)
    try:
        with chromium(1280, 900) as driver:
            wait = WebDriverWait(driver, 20)
            driver.get(server.url + link_for(app, bens))
            wait.until(lambda d: "/my/tasks/" in d.current_url)
            driver.get(f"{server.url}/sandbox/portal")
            driver.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
            assert wait.until(ec.visibility_of_element_located((By.ID, "portal-patient"))).text == "Ben Schmidt"
            driver.find_element(By.ID, "open-hw-fhir").click()
            wait.until(ec.element_to_be_clickable((By.ID, "approve"))).click()
            wait.until(lambda d: d.find_elements(By.ID, f"task-{bens['id']}"))
            assert not driver.find_elements(By.ID, f"task-{carmens['id']}")

        with chromium(1280, 900) as driver:  # followed no link: nobody is chosen for them
            driver.get(f"{server.url}/sandbox/portal")
            driver.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
            assert driver.execute_script(
                "return document.querySelector('input[name=patient]').validity.valueMissing")
            assert not driver.find_elements(By.ID, "portal-patient")
            assert driver.current_url == f"{server.url}/sandbox/portal"
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()
