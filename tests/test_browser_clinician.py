"""End to end in a real browser: the sandbox EHR launches hw-fhir in its iframe, the clinician
assigns a PHQ-9 every two weeks, the patient completes it on the patient pages, and the
clinician's dashboard shows the score, its band and the chart.

Every clinician page visited is also opened full-height at the iframe's width (960 px) and
saved as a screenshot under ``test-output/`` for review, and checked with axe-core
(no serious or critical accessibility violation). Production cookie settings
(``Secure; SameSite=None; Partitioned``): Chromium treats http://127.0.0.1 as a secure
context. Skipped only when Chromium is missing and ``CI`` is not set.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import OUTPUT, assert_accessible, chromium, press, wait_for
from conftest import serve
from hw_fhir.library import load_catalog
from smart_support import make_app

pytestmark = pytest.mark.browser

FRAME_WIDTH = 960
#: The answers the patient gives to PHQ-9 items 1–9 (option index = its weight).
ANSWERS = [2, 2, 1, 1, 1, 1, 1, 0, 0]


@pytest.fixture
def driver() -> Iterator[Any]:
    """Headless Chromium with a fresh profile, desktop-sized."""
    with chromium(1280, 1000) as browser:
        yield browser


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    app = make_app(app_config)  # sandbox, demo practice, production cookie settings
    load_catalog(app.extensions["hw_fhir"].store)
    server = serve(app)
    yield app, server
    server.stop()
    app.extensions["hw_fhir"].close()


class Frame:
    """The app inside the EHR's iframe, and full-page shots of its pages at the iframe's width."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.ehr_tab = driver.current_window_handle

    def enter(self) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        self.driver.switch_to.default_content()
        wait_for(self.driver).until(ec.frame_to_be_available_and_switch_to_it((By.ID, "smart-app")))

    def click(self, element_id: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        press(
            self.driver, wait_for(self.driver).until(ec.element_to_be_clickable((By.ID, element_id)))
        )

    def shot(self, name: str) -> str:
        """Open the iframe's page on its own at 960 px, screenshot it whole, check it with axe."""
        url = self.driver.execute_script("return location.href")
        self.driver.switch_to.new_window("tab")
        try:
            self.driver.set_window_size(FRAME_WIDTH, 900)
            self.driver.get(url)
            assert_accessible(self.driver, name)
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(FRAME_WIDTH, min(int(height) + 140, 6000))
            OUTPUT.mkdir(exist_ok=True)
            assert self.driver.save_screenshot(str(OUTPUT / f"clinician-{name}.png"))
            text = self.driver.find_element("tag name", "body").text
        finally:
            self.driver.close()
            self.driver.switch_to.window(self.ehr_tab)
            self.driver.set_window_size(1280, 1000)
            self.enter()
        return str(text)


def _launch(driver: Any, base: str) -> Frame:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/sandbox/")
    driver.find_element(By.CSS_SELECTOR, 'input[value="Practitioner/dr-rivera"]').click()
    driver.find_element(By.CSS_SELECTOR, 'input[name="patient"][value="pat-ava"]').click()
    driver.find_element(By.ID, "launch-hw-fhir").click()
    frame = Frame(driver)
    frame.enter()
    frame.click("approve")
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "assign-button"))
    return frame


def _patient_completes_phq9(driver: Any, base: str, task_id: str) -> None:
    """The patient signs in through the sandbox portal and submits the PHQ-9."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    ehr_tab = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.set_window_size(430, 900)
    driver.get(f"{base}/sandbox/portal")
    driver.find_element(By.CSS_SELECTOR, 'input[name="patient"][value="pat-ava"]').click()
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver).until(ec.element_to_be_clickable((By.ID, "open-hw-fhir"))).click()
    user = wait_for(driver).until(
        ec.presence_of_element_located(
            (By.CSS_SELECTOR, 'input[name="user"][value="Patient/pat-ava"]')
        )
    )
    if not user.is_selected():
        user.click()
    driver.find_element(By.ID, "approve").click()
    # a patient's portal launch lands on their own homework list
    wait_for(driver).until(lambda d: "/my/" in d.current_url)
    wait_for(driver).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, f"#task-{task_id} a.button"))
    ).click()
    for n, weight in enumerate(ANSWERS, start=1):
        wait_for(driver).until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, f"label[for='f-phq9-{n}-{weight}']"))
        ).click()
    driver.find_element(By.CSS_SELECTOR, "label[for='f-phq9-10-0']").click()
    driver.find_element(By.ID, "submit-button").click()
    wait_for(driver).until(lambda d: "/done" in d.current_url or "/my/" in d.current_url)
    OUTPUT.mkdir(exist_ok=True)
    driver.save_screenshot(str(OUTPUT / "clinician-e2e-patient-done.png"))
    driver.close()
    driver.switch_to.window(ehr_tab)
    driver.set_window_size(1280, 1000)


def test_assign_phq9_every_two_weeks_then_see_the_score(
    driver: Any, served: tuple[Any, Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    app, server = served
    store = app.extensions["hw_fhir"].store
    frame = _launch(driver, server.url)
    driver.switch_to.default_content()
    OUTPUT.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(OUTPUT / "clinician-0-ehr-with-app.png"))
    frame.enter()
    assert "No active homework" in frame.shot("1-dashboard-empty")

    # click 1: Assign homework; click 2: Assign next to PHQ-9; click 3: Assign
    frame.click("assign-button")
    library = frame.shot("2-library")
    assert "Patient Health Questionnaire-9 (PHQ-9)" in library
    frame.click("assign-phq-9")
    Select(driver.find_element(By.ID, "f-frequency")).select_by_value("every-n-days")
    interval = driver.find_element(By.ID, "f-interval")
    interval.clear()
    interval.send_keys("14")
    frame.shot("3-tailor")
    frame.click("assign-submit")
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "confirmation-title"))
    confirmation = frame.shot("4-confirmation")
    assert "Every 14 days at 19:00, 6 times" in confirmation
    plan_id = re.search(
        r"/assigned/CarePlan/([^?]+)", driver.execute_script("return location.href")
    ).group(1)
    tasks = store.search("Task", [("based-on", f"CarePlan/{plan_id}")]).resources
    assert len(tasks) == 1

    frame.click("back-to-dashboard")
    assert "Every 14 days" in frame.shot("5-dashboard-assigned")

    _patient_completes_phq9(driver, server.url, tasks[0]["id"])
    total = sum(ANSWERS)

    frame.enter()
    driver.execute_script("location.reload()")
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "measures"))
    score = wait_for(driver).until(lambda d: d.find_elements(By.ID, "score-phq-9"))
    assert score[0].text == str(total)
    measure = driver.find_element(By.ID, "measure-phq-9")
    assert "Mild" in measure.text
    svg = measure.find_element(By.CSS_SELECTOR, "svg#chart-phq-9")
    assert svg.get_attribute("role") == "img"
    assert len(svg.find_elements(By.CSS_SELECTOR, "circle.point")) == 1
    assert driver.find_element(By.ID, "completion-rate").text == "100%"
    dashboard = frame.shot("6-dashboard-scored")
    assert f"{total} Mild" in dashboard or "Mild" in dashboard

    review_link = driver.find_elements(By.CSS_SELECTOR, "#responses a[id^='review-']")
    assert review_link
    press(driver, review_link[0])
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "answers"))
    review = frame.shot("7-response")
    assert "Several days" in review and "More than half the days" in review

    press(driver, driver.find_element(By.LINK_TEXT, "Session prep"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "prompts"))
    assert "What was learned" in frame.shot("8-session-prep")

    press(driver, driver.find_element(By.LINK_TEXT, "My activities"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "copy"))
    frame.shot("9-my-activities")
    press(driver, driver.find_element(By.ID, "clone-mood-log"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "editor-form"))
    frame.shot("10-editor")

    press(driver, driver.find_element(By.LINK_TEXT, "My patients"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "panel"))
    assert "Ava Nguyen" in frame.shot("11-panel")


def _plans_of(store: Any, activity: str) -> list[dict[str, Any]]:
    found = store.search("CarePlan", [("patient", "Patient/pat-ava"), ("status", "active")])
    return [
        p
        for p in found.resources
        if f"/Questionnaire/{activity}|" in p["activity"][0]["detail"]["instantiatesCanonical"][0]
    ]


def test_assigning_an_active_activity_again_asks_first(
    driver: Any, served: tuple[Any, Any]
) -> None:
    from selenium.webdriver.common.by import By

    app, server = served
    store = app.extensions["hw_fhir"].store
    frame = _launch(driver, server.url)
    frame.click("assign-button")
    frame.click("assign-phq-9")
    frame.click("assign-submit")
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "confirmation-title"))
    frame.click("back-to-dashboard")
    frame.click("assign-button")
    frame.click("assign-phq-9")
    notice = frame.shot("12-assign-again")
    assert "already has" in notice and "second, separate schedule" in notice
    # assigning without the tick is refused, with the reason, and writes nothing
    frame.click("assign-submit")
    summary = wait_for(driver).until(lambda d: d.find_elements(By.ID, "error-summary"))
    assert "is already assigned to this patient" in summary[0].text
    OUTPUT.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(OUTPUT / "clinician-13-assign-again-refused.png"))
    assert len(_plans_of(store, "phq-9")) == 1
    # the tick (outside the form, bound to it by form=) makes it a deliberate second schedule
    frame.click("f-second_schedule")
    frame.click("assign-submit")
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "confirmation-title"))
    assert len(_plans_of(store, "phq-9")) == 2
