"""A patient on a phone: headless Chromium at 390×844 opens a secure link, confirms the date
of birth, completes a daily thought record with two entries and a PHQ-9, and sees the
confirmation (with crisis resources, since item 9 is answered). Every page is checked
with axe-core (vendored ``tests/vendor/axe.min.js``): no serious or critical violations.
Screenshots go to ``test-output/``.

Skipped only when Chromium is missing and ``CI`` is not set; on CI a missing Chromium fails.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from browser_support import OUTPUT, axe_violations, chromium
from conftest import serve
from patient_support import give_homework, link_for, patient_app, stored

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 390, 844


@pytest.fixture
def phone() -> Iterator[Any]:
    """Headless Chromium with a fresh profile and a 390×844 phone viewport."""
    with chromium(WIDTH, HEIGHT, mobile=True) as browser:
        yield browser


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[Any]:
    """The app (production cookie settings) over HTTP, with the demo practice and catalog."""
    app = patient_app(app_config, secure_cookies=True)
    server = serve(app)
    yield server
    server.stop()
    app.extensions["hw_fhir"].close()


def _shot(driver: Any, name: str) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / f"patient-{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": WIDTH,
            "height": max(HEIGHT, int(height)),
            "deviceScaleFactor": 1,
            "mobile": True,
        },
    )
    try:
        assert driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 2, "mobile": True},
        )
    return path


def _axe(driver: Any, page: str) -> None:
    """Run axe-core on the current page; fail on any serious or critical violation."""
    bad = axe_violations(driver)
    assert not bad, f"accessibility violations on {page}: {bad}"


def _wait(driver: Any, timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout)


def _fill_entry(
    driver: Any, index: int, situation: str, thought: str, emotion: str, intensity: int
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    prefix = f"f-entry-{index}--"
    driver.find_element(By.ID, prefix + "situation").send_keys(situation)
    driver.find_element(By.ID, prefix + "automatic-thought").send_keys(thought)
    Select(driver.find_element(By.ID, prefix + "emotion")).select_by_visible_text(emotion)
    number = driver.find_element(By.ID, prefix + "emotion-intensity")
    number.clear()
    number.send_keys(str(intensity))


def test_phone_thought_record_with_two_entries_and_phq9(phone: Any, served: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    app = served.app
    record = give_homework(
        app,
        "thought-record",
        days=0,
        when=time(23, 59),
        wording="skills practice",
        instructions="Fill in one entry whenever your mood dips.",
        rationale="Writing thoughts down makes them easier to question.",
        example="Situation: meeting ran late. Thought: 'I always mess up.'",
    )
    phq9 = give_homework(app, "phq-9", days=1, wording="skills practice")
    link = link_for(app, record, birth_date_check=True)

    # the link asks for the date of birth first
    phone.get(served.url + link)
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "dob-form")))
    _axe(phone, "birth date")
    _shot(phone, "1-birth-date")
    phone.find_element(By.ID, "dob-day").send_keys("12")
    phone.find_element(By.ID, "dob-month").send_keys("4")
    phone.find_element(By.ID, "dob-year").send_keys("1991")
    phone.find_element(By.CSS_SELECTOR, "#dob-form button[type=submit]").click()

    # the thought record: sliders enhanced, first entry, autosaved draft
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "hw-form")))
    assert phone.find_elements(By.CSS_SELECTOR, "[data-hw-slider] input[type=range]")
    _axe(phone, "thought record")
    _shot(phone, "2-thought-record-empty")
    _fill_entry(
        phone,
        0,
        "Team meeting ran over and my manager frowned at my slides.",
        "They think I'm not good enough for this job.",
        "Anxious or worried",
        70,
    )
    _wait(phone).until(
        lambda d: "Draft saved" in d.find_element(By.CSS_SELECTOR, "[data-hw-status]").text
    )
    drafts = [r for r in stored(app, "QuestionnaireResponse") if r["status"] == "in-progress"]
    assert drafts and "Team meeting" in str(drafts[0]["item"])

    # a second entry through "add another" (no page load)
    url_before = phone.current_url
    phone.find_element(By.CSS_SELECTOR, "[data-hw-add]").click()
    _wait(phone).until(ec.presence_of_element_located((By.ID, "f-entry-1--situation")))
    assert phone.current_url == url_before
    _fill_entry(
        phone,
        1,
        "Evening: a friend didn't answer my message.",
        "Nobody wants to spend time with me.",
        "Lonely",
        55,
    )
    belief = phone.find_element(By.CSS_SELECTOR, "#item-f-entry-1--belief-before input[type=range]")
    belief.click()  # the slider sets its number field
    assert phone.find_element(By.ID, "f-entry-1--belief-before").get_attribute("value") != ""
    _shot(phone, "3-thought-record-filled")
    phone.find_element(By.ID, "submit-button").click()

    _wait(phone).until(ec.visibility_of_element_located((By.ID, "confirmation")))
    assert "Thank you" in phone.find_element(By.ID, "done-title").text
    assert not phone.find_elements(By.ID, "crisis")
    _axe(phone, "confirmation")
    _shot(phone, "4-thought-record-done")
    [response] = [
        r for r in stored(app, "QuestionnaireResponse") if r["identifier"]["value"] == record["id"]
    ]
    entries = [i for i in response["item"] if i["linkId"] == "entry"]
    assert response["status"] == "completed" and len(entries) == 2
    assert "Lonely" in str(entries[1])

    # the to-do list: the thought record is done, the PHQ-9 is next
    phone.get(served.url + "/my/")
    _wait(phone).until(ec.visibility_of_element_located((By.ID, f"task-{phq9['id']}")))
    assert phone.find_elements(By.ID, f"done-{record['id']}")
    assert not phone.find_elements(By.ID, f"task-{record['id']}")
    _axe(phone, "to-do list")
    _shot(phone, "5-todo")
    phone.find_element(By.CSS_SELECTOR, f"#task-{phq9['id']} a.button").click()

    # PHQ-9: submitting with answers missing shows per-item errors, then fix and send
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "hw-form")))
    _axe(phone, "PHQ-9")
    for n in range(1, 9):
        phone.find_element(By.CSS_SELECTOR, f"label[for='f-phq9-{n}-1']").click()
    phone.find_element(By.ID, "submit-button").click()
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "error-summary")))
    assert phone.switch_to.active_element.get_attribute("id") == "error-summary"
    assert phone.find_elements(By.ID, "f-phq9-9-error")
    _axe(phone, "PHQ-9 with errors")
    _shot(phone, "6-phq9-errors")
    phone.find_element(By.CSS_SELECTOR, "label[for='f-phq9-9-1']").click()
    phone.find_element(By.CSS_SELECTOR, "label[for='f-phq9-10-0']").click()
    phone.find_element(By.ID, "submit-button").click()

    _wait(phone).until(ec.visibility_of_element_located((By.ID, "confirmation")))
    crisis = phone.find_element(By.ID, "crisis")
    assert "988" in crisis.text
    assert crisis.location["y"] < phone.find_element(By.ID, "confirmation").location["y"]
    _axe(phone, "PHQ-9 confirmation with crisis resources")
    _shot(phone, "7-phq9-done-crisis")

    for path, name in (("/my/progress", "8-progress"), ("/my/preferences", "9-preferences")):
        phone.get(served.url + path)
        _wait(phone).until(ec.visibility_of_element_located((By.TAG_NAME, "h1")))
        _axe(phone, path)
        _shot(phone, name)


def test_phone_enable_when_live_and_a_player_for_the_audio(phone: Any, served: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    app = served.app
    task = give_homework(app, "body-scan", days=1)
    phone.get(served.url + link_for(app, task))
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "hw-form")))
    minutes = phone.find_element(By.ID, "item-f-minutes")
    why_not = phone.find_element(By.ID, "item-f-why-not")
    assert not minutes.is_displayed() and not why_not.is_displayed()
    phone.find_element(By.CSS_SELECTOR, "label[for='f-done-0']").click()  # Yes
    _wait(phone).until(lambda d: minutes.is_displayed())
    assert not why_not.is_displayed()
    phone.find_element(By.ID, "f-minutes").send_keys("12")
    phone.find_element(By.CSS_SELECTOR, "label[for='f-done-1']").click()  # No
    _wait(phone).until(lambda d: why_not.is_displayed())
    assert not minutes.is_displayed()
    assert phone.find_element(By.ID, "f-minutes").get_attribute("disabled")  # never sent
    audio = phone.find_element(By.CSS_SELECTOR, "audio")
    assert audio.get_attribute("src").endswith("/static/media/audio/body-scan.mp3")
    duration = phone.execute_async_script(
        "const done = arguments[arguments.length - 1]; const a = document.querySelector('audio');"
        "a.preload = 'auto'; a.addEventListener('loadedmetadata', () => done(a.duration));"
        "a.addEventListener('error', () => done(-1)); a.load(); setTimeout(() => done(-2), 10000);"
    )
    assert duration and duration > 0, "the placeholder audio does not play"
    _axe(phone, "body scan")
    _shot(phone, "10-body-scan")
    phone.find_element(By.ID, "f-why-not").send_keys("I fell asleep early.")
    phone.find_element(By.ID, "submit-button").click()
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "confirmation")))
    [response] = [r for r in stored(app, "QuestionnaireResponse") if r["status"] == "completed"]
    assert "minutes" not in str(response["item"])  # the hidden answer was dropped


def test_phone_video_placeholder_plays(phone: Any, served: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    app = served.app
    task = give_homework(app, "video-behavioral-activation", days=1)
    phone.get(served.url + link_for(app, task))
    _wait(phone).until(ec.visibility_of_element_located((By.CSS_SELECTOR, "video")))
    duration = phone.execute_async_script(
        "const done = arguments[arguments.length - 1]; const v = document.querySelector('video');"
        "if (v.readyState >= 1) { done(v.duration); return; }"
        "v.addEventListener('loadedmetadata', () => done(v.duration));"
        "v.addEventListener('error', () => done(-1)); v.load(); setTimeout(() => done(-2), 10000);"
    )
    assert duration and duration > 0, "the placeholder video does not play"
    _axe(phone, "video")
