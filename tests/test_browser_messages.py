"""In headless Chromium: a patient and their clinician exchange a secure message end to end
(patient by secure link on a phone-sized window, clinician in the launch's dashboard), the
Messages page passes axe-core, and the preferences page preselects the browser's time zone
through ``patient/timezone.js`` when the patient has none stored. Screenshots in test-output/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import AXE, OUTPUT, axe_violations, chromium
from clinician_support import open_launch
from conftest import serve
from patient_support import give_homework, link_for, patient_app

pytestmark = pytest.mark.browser


class _CookieJar:
    """Receives the launch's session cookie so the browser can carry it."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def set_cookie(self, name: str, value: str, **_: Any) -> None:
        self.cookies[name] = value


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    app = patient_app(app_config)
    server = serve(app)
    yield app, server
    server.stop()
    app.extensions["hw_fhir"].close()


def _wait(driver: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout)


def _axe(driver: Any, page: str) -> None:
    if not AXE.exists():
        return
    bad = axe_violations(driver)
    assert not bad, f"accessibility violations on {page}: {bad}"


def _shot(driver: Any, name: str) -> None:
    OUTPUT.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(OUTPUT / f"messages-{name}.png"))


def test_patient_and_clinician_exchange_a_message(served: tuple[Any, Any]) -> None:
    from selenium.webdriver.common.by import By

    app, server = served
    task = give_homework(app, "mood-log")
    with chromium(390, 844, mobile=True) as phone:
        phone.get(server.url + link_for(app, task))
        _wait(phone).until(lambda d: f"/my/tasks/{task['id']}" in d.current_url)
        phone.find_element(By.ID, "ask-about-task").click()
        _wait(phone).until(lambda d: d.find_elements(By.ID, "message-text"))
        body = phone.find_element(By.TAG_NAME, "body").text
        assert "not monitored around the clock" in body and "988" in body
        _axe(phone, "patient messages")
        phone.find_element(By.ID, "message-text").send_keys("Can I do the log in the morning?")
        phone.find_element(By.CSS_SELECTOR, "form[action='/my/messages'] button").click()
        _wait(phone).until(lambda d: d.find_elements(By.ID, "message-sent"))
        _shot(phone, "1-patient-sent")

        jar = _CookieJar()
        session = open_launch(app, jar)
        with chromium(1280, 1000) as desk:
            desk.get(server.url + "/static/patient/patient.css")
            desk.add_cookie({"name": "hw_fhir_session", "value": jar.cookies["hw_fhir_session"],
                             "path": "/"})
            desk.get(f"{server.url}/clinician/patients/pat-ava?launch={session.launch_id}")
            thread = _wait(desk).until(lambda d: d.find_elements(By.ID, "message-thread"))[0]
            assert "Can I do the log in the morning?" in thread.text
            assert "about Daily mood log" in thread.text
            _axe(desk, "clinician dashboard with messages")
            box = desk.find_element(By.ID, "clinician-message")
            desk.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
            box.send_keys("Yes, mornings are fine.")
            desk.find_element(By.CSS_SELECTOR, "#message-form button[type=submit]").click()
            _wait(desk).until(lambda d: "notice=message-sent" in d.current_url)
            assert "Yes, mornings are fine." in desk.find_element(By.ID, "message-thread").text
            _shot(desk, "2-clinician-replied")

        phone.get(server.url + "/my/")
        phone.find_element(By.ID, "messages-link").click()
        _wait(phone).until(lambda d: "Yes, mornings are fine." in d.find_element(By.ID, "thread").text)
        assert "Dr. Elena Rivera" in phone.find_element(By.ID, "thread").text
        _shot(phone, "3-patient-reads-reply")


def test_the_browser_zone_is_preselected_when_none_is_stored(served: tuple[Any, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    app, server = served
    store = app.extensions["hw_fhir"].store
    patient = store.read("Patient", "pat-ava").resource
    store.update({**patient, "extension": [e for e in patient.get("extension", [])
                                           if not e["url"].endswith("/timezone")]})
    task = give_homework(app, "mood-log")
    with chromium(390, 844, mobile=True) as phone:
        phone.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
        phone.get(server.url + link_for(app, task))
        _wait(phone).until(lambda d: "/my/tasks/" in d.current_url)
        phone.get(server.url + "/my/preferences")
        picker = Select(_wait(phone).until(lambda d: d.find_element(By.ID, "timezone")))
        _wait(phone).until(lambda d: picker.first_selected_option.get_attribute("value") == "Asia/Tokyo")
        _axe(phone, "preferences")
        _shot(phone, "4-preferences-zone-guess")


def test_a_done_activitys_link_shows_only_the_thank_you_page(served: tuple[Any, Any]) -> None:
    from selenium.webdriver.common.by import By

    from hw_fhir.assignment import cancel_assignment

    app, server = served
    task = give_homework(app, "mood-log")
    link = link_for(app, task)
    cancel_assignment(app.extensions["hw_fhir"].store, f"Task/{task['id']}")
    with chromium(390, 844, mobile=True) as phone:
        phone.get(server.url + link)
        heading = _wait(phone).until(lambda d: d.find_element(By.ID, "link-done-title"))
        assert heading.text == "Thank you — nothing left to do here"
        assert not phone.find_elements(By.CSS_SELECTOR, "nav.tabs")
        _axe(phone, "link done")
        _shot(phone, "5-link-done")
        phone.get(server.url + "/my/")
        assert "Please open your link again" in phone.find_element(By.TAG_NAME, "body").text
