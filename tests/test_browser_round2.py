"""Round 2 in a real browser: consent once with names, the panel agreeing with the dashboard
and session prep after homework done early, and the editor that saves before publishing.

Screenshots go to ``test-output/round2-*.png``; every page visited is checked with axe-core
(no serious or critical violation). Skipped only when Chromium is missing and ``CI`` is not set.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest
from browser_support import OUTPUT, assert_accessible, press, wait_for
from clinician_support import PHQ9, assign_once, complete_phq9
from test_browser_clinician import Frame, driver, served  # noqa: F401

pytestmark = pytest.mark.browser


def _shot(driver: Any, name: str) -> None:
    OUTPUT.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(OUTPUT / f"round2-{name}.png"))


def _open_chart(driver: Any, base: str, patient: str) -> None:
    from selenium.webdriver.common.by import By

    driver.switch_to.default_content()
    driver.get(f"{base}/sandbox/")
    driver.find_element(By.CSS_SELECTOR, 'input[value="Practitioner/dr-rivera"]').click()
    driver.find_element(By.CSS_SELECTOR, f'input[name="patient"][value="{patient}"]').click()
    driver.find_element(By.ID, "launch-hw-fhir").click()


def test_consent_once_panel_agrees_and_publish_saves_first(
    driver: Any, served: tuple[Any, Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    app, server = served
    store = app.extensions["hw_fhir"].store
    now = datetime.now(timezone.utc)
    # Carmen does two activities early: due next week, done now
    for weights, due in (([0] * 9, 6), ([1] * 9, 8)):
        task = assign_once(store, PHQ9, patient="pat-carmen", due_in_days=due, now=now)
        complete_phq9(store, task, weights, when=now)

    # 1. consent: in the iframe, names not ids, no sandbox header; axe on it
    _open_chart(driver, server.url, "pat-carmen")
    frame = Frame(driver)
    frame.enter()
    consent = wait_for(driver).until(lambda d: d.find_elements(By.ID, "authorize-form"))[0]
    text = driver.find_element(By.TAG_NAME, "body").text
    assert "Allow" in text and "open in your EHR" in text
    assert "Dr. Elena Rivera" in text and "Carmen Lopez" in text
    assert "Practitioner/dr-rivera" not in text and not driver.find_elements(By.CLASS_NAME, "ehr-bar")
    assert_accessible(driver, "consent")
    driver.switch_to.default_content()
    _shot(driver, "1-consent-in-iframe")
    frame.enter()
    press(driver, consent.find_element(By.ID, "approve"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "assign-button"))
    dash = frame.shot("round2-2-dashboard")
    assert "due or done in the last 28 days" in dash
    done = driver.find_element(By.ID, "done-count").text
    assert done == "2 of 2"

    # 2. the panel and session prep agree with the dashboard
    press(driver, driver.find_element(By.ID, "prep-button"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "prompts"))
    assert driver.find_element(By.ID, "done-count").text == done
    frame.shot("round2-3-session-prep")
    press(driver, driver.find_element(By.LINK_TEXT, "My patients"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "panel"))
    row = driver.find_element(By.ID, "panel-pat-carmen").text
    assert "(2/2)" in row and "100%" in row
    frame.shot("round2-4-panel")

    # 3. the editor: a slider and a condition, then Save and publish without saving first
    press(driver, driver.find_element(By.LINK_TEXT, "My activities"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "copy"))
    press(driver, driver.find_element(By.ID, "clone-mood-log"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "editor-form"))
    assert "Daily mood log (copy)" in driver.find_element(By.ID, "f-title").get_attribute("value")
    settings = driver.find_element(By.ID, "settings-hard")
    press(driver, settings.find_element(By.TAG_NAME, "summary"))
    Select(driver.find_element(By.ID, "when-q-hard")).select_by_value("mood")
    Select(driver.find_element(By.ID, "when-op-hard")).select_by_value("<=")
    driver.find_element(By.ID, "when-a-hard").send_keys("4")
    text_box = driver.find_element(By.ID, "text-hard")
    text_box.clear()
    text_box.send_keys("What made today hard?")
    assert driver.find_element(By.ID, "unsaved-note").is_displayed()
    frame.shot("round2-5-editor")  # (reopened page: the unsaved edits are not in the shot)
    press(driver, driver.find_element(By.ID, "publish-button"))
    wait_for(driver).until(lambda d: "notice=published" in d.execute_script("return location.href"))
    published = [
        q for q in store.search("Questionnaire", [("title", "Daily mood log (copy)")]).resources
    ]
    assert published and published[0]["status"] == "active"
    hard = next(i for i in published[0]["item"] if i["linkId"] == "hard")
    assert hard["text"] == "What made today hard?"
    assert hard["enableWhen"] == [{"question": "mood", "operator": "<=", "answerInteger": 4}]
    frame.shot("round2-6-published")

    # 4. the next launch by the same clinician opens straight away
    _open_chart(driver, server.url, "pat-ava")
    frame.enter()
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "assign-button"))
    assert not driver.find_elements(By.ID, "authorize-form")
    assert re.search(r"Ava Nguyen", driver.find_element(By.TAG_NAME, "body").text)
    driver.switch_to.default_content()
    _shot(driver, "7-second-launch-no-consent")


def test_schedule_fields_follow_the_frequency_and_the_note_stays_visible(
    driver: Any, served: tuple[Any, Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    app, server = served
    store = app.extensions["hw_fhir"].store
    now = datetime.now(timezone.utc)
    task = assign_once(store, PHQ9, patient="pat-ava", due_in_days=1, now=now)
    complete_phq9(store, task, [1, 1, 1, 1, 1, 1, 1, 1, 2], when=now)  # item 9 > 0: a flag

    _open_chart(driver, server.url, "pat-ava")
    frame = Frame(driver)
    frame.enter()
    press(driver, wait_for(driver).until(lambda d: d.find_elements(By.ID, "approve"))[0])
    flags = wait_for(driver).until(lambda d: d.find_elements(By.ID, "risk-flags"))[0]
    note = flags.find_element(By.CSS_SELECTOR, "input[name=note]")
    note.send_keys("Called her, safe, plan reviewed")
    press(driver, flags.find_element(By.CSS_SELECTOR, "button[id^='ack-']"))
    history = wait_for(driver).until(lambda d: d.find_elements(By.ID, "acknowledged-flags"))[0]
    assert "Called her, safe, plan reviewed" in history.text
    assert "Dr. Elena Rivera" in history.text
    frame.shot("round2-8-acknowledged")

    # the thought record: once by default; days only for weekly; the word explained
    press(driver, driver.find_element(By.ID, "assign-button"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "assign-thought-record"))
    press(driver, driver.find_element(By.ID, "assign-thought-record"))
    frequency = Select(wait_for(driver).until(lambda d: d.find_elements(By.ID, "f-frequency"))[0])
    assert frequency.first_selected_option.get_attribute("value") == "once"
    days = driver.find_element(By.ID, "f-days")
    assert not days.is_displayed() and not driver.find_element(By.ID, "f-end").is_displayed()
    assert "The word the patient sees" in driver.find_element(By.TAG_NAME, "body").text
    frame.shot("round2-9-tailor-once")
    frequency.select_by_value("weekly")
    assert days.is_displayed()
    frequency.select_by_value("daily")  # one choice: "7 times" is ready
    assert not days.is_displayed() and driver.find_element(By.ID, "f-end").is_displayed()
    assert driver.find_element(By.ID, "f-count").get_attribute("value") == "7"
    press(driver, driver.find_element(By.ID, "assign-submit"))
    wait_for(driver).until(lambda d: d.find_elements(By.ID, "confirmation-title"))
    confirmation = frame.shot("round2-10-confirmation")
    assert "7 times" in confirmation
