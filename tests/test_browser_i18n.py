"""A Spanish-speaking patient on a phone: headless Chromium at 390×844 (browser language Spanish)
walks every patient page in Spanish — date of birth, PHQ-9 (published Spanish text), its errors,
the confirmation with crisis resources, the to-do list, an activity not yet translated (English
content marked ``lang="en"`` inside the Spanish page, with a note), progress, preferences (and
what pwa.js says when notifications are refused), the switch and signed-out pages. Each page: ``<html lang="es">``, axe-core clean (no serious or
critical violations), a screenshot in ``test-output/``.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from browser_support import axe_violations, chromium, csp_violations, full_page_screenshot
from conftest import serve
from patient_support import give_homework, link_for, patient_app, stored

from hw_fhir.i18n import with_language

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 390, 844


@pytest.fixture
def phone() -> Iterator[Any]:
    with chromium(WIDTH, HEIGHT, mobile=True, accept_language="es") as browser:
        yield browser


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[Any]:
    app = patient_app(app_config, secure_cookies=True)
    store = app.extensions["hw_fhir"].store
    store.update(with_language(store.read("Patient", "pat-carmen").resource, "es"))
    server = serve(app)
    yield server
    server.stop()
    app.extensions["hw_fhir"].close()


def _wait(driver: Any, timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout)


def _check(driver: Any, name: str, *, english_inside: bool = False) -> None:
    """The page is Spanish, accessible, fallback content marked English; take its picture."""
    from selenium.webdriver.common.by import By

    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "es", name
    marked = driver.find_elements(By.CSS_SELECTOR, "body [lang='en']")
    assert bool(marked) == english_inside, f"{name}: lang=en content {len(marked)}"
    bad = axe_violations(driver)
    assert not bad, f"accessibility violations on {name}: {bad}"
    assert not csp_violations(driver), name
    full_page_screenshot(driver, f"patient-es-{name}", WIDTH, HEIGHT)


def test_every_patient_page_in_spanish_on_a_phone(phone: Any, served: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    app = served.app
    phq9 = give_homework(app, "phq-9", patient="pat-carmen", days=0)
    app.extensions["hw_fhir"].store.update({
        "resourceType": "Questionnaire", "id": "english-only", "status": "active",
        "url": "http://example.org/fhir/Questionnaire/english-only", "version": "1.0.0",
        "title": "Evening walk", "item": [
            {"linkId": "walked", "type": "boolean", "text": "Did you go for a walk?"},
            {"linkId": "minutes", "type": "integer", "text": "How many minutes?"}]})
    untranslated = give_homework(app, "http://example.org/fhir/Questionnaire/english-only|1.0.0",
                                 patient="pat-carmen", days=2)

    phone.get(served.url + link_for(app, phq9, birth_date_check=True))
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "dob-form")))
    assert "Confirme que es usted" in phone.page_source
    _check(phone, "1-fecha-de-nacimiento")
    phone.find_element(By.ID, "dob-day").send_keys("22")
    phone.find_element(By.ID, "dob-month").send_keys("1")
    phone.find_element(By.ID, "dob-year").send_keys("2000")
    phone.find_element(By.CSS_SELECTOR, "#dob-form button[type=submit]").click()

    _wait(phone).until(ec.visibility_of_element_located((By.ID, "hw-form")))
    title = phone.find_element(By.TAG_NAME, "h1").text
    assert title == "Cuestionario sobre la salud del paciente-9 (PHQ-9)"
    assert "Pensamientos de que estaría mejor muerto(a)" in phone.page_source
    _check(phone, "2-phq9")
    for n in range(1, 9):
        phone.find_element(By.CSS_SELECTOR, f"label[for='f-phq9-{n}-1']").click()
    status = phone.find_element(By.CSS_SELECTOR, "[data-hw-status]")
    _wait(phone).until(lambda d: status.text.startswith("Borrador guardado a las "))  # autosave
    phone.find_element(By.ID, "submit-button").click()
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "error-summary")))
    summary = phone.find_element(By.ID, "error-summary").text
    assert "Revise esta respuesta" in summary and "Responda esta pregunta" in summary
    _check(phone, "3-phq9-errores")
    phone.find_element(By.CSS_SELECTOR, "label[for='f-phq9-9-1']").click()
    phone.find_element(By.CSS_SELECTOR, "label[for='f-phq9-10-0']").click()
    phone.find_element(By.ID, "submit-button").click()

    _wait(phone).until(ec.visibility_of_element_located((By.ID, "confirmation")))
    crisis = phone.find_element(By.ID, "crisis")
    assert "988 Línea de Prevención del Suicidio y Crisis" in crisis.text
    assert "Llamar al 988" in crisis.text
    _check(phone, "4-enviado-crisis")
    scored = [o for o in stored(app, "Observation") if o["code"]["coding"][0]["code"] == "44261-6"]
    assert [o["valueQuantity"]["value"] for o in scored] == [9]

    phone.get(served.url + "/my/")
    _wait(phone).until(ec.visibility_of_element_located((By.TAG_NAME, "h1")))
    assert "Por hacer" in phone.find_element(By.CSS_SELECTOR, "nav.tabs").text
    _check(phone, "5-lista", english_inside=True)  # that activity is not translated yet

    phone.get(served.url + f"/my/tasks/{untranslated['id']}")
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "translation-note")))
    assert "no está disponible en español" in phone.find_element(By.ID, "translation-note").text
    assert phone.find_element(By.TAG_NAME, "h1").get_attribute("lang") == "en"
    _check(phone, "6-sin-traducir", english_inside=True)

    for path, name in (("/my/progress", "7-progreso"), ("/my/preferences", "8-preferencias")):
        phone.get(served.url + path)
        _wait(phone).until(ec.visibility_of_element_located((By.TAG_NAME, "h1")))
        # the "English" choice on the preferences page is marked lang="en"
        _check(phone, name, english_inside=path == "/my/preferences")

    # push opt-in: headless Chromium refuses notifications, and says so in Spanish (pwa.js)
    phone.find_element(By.ID, "push-on").click()
    _wait(phone).until(lambda d: d.find_element(By.ID, "push-message").text)
    assert phone.find_element(By.ID, "push-message").text == (
        "Las notificaciones de este sitio están bloqueadas en la configuración de su navegador.")

    other = give_homework(app, "phq-9", patient="pat-ava")
    phone.get(served.url + link_for(app, other))
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "switch-title")))
    _check(phone, "9-otra-persona")
    phone.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "hw-form")))
    assert phone.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"  # Ava: English
    phone.find_element(By.CSS_SELECTOR, "footer form button").click()
    _wait(phone).until(ec.visibility_of_element_located((By.ID, "message-title")))
    assert phone.find_element(By.ID, "message-title").text == "Ha cerrado la sesión"
    _check(phone, "10-sesion-cerrada")


@pytest.mark.parametrize("width", [390, 360, 320])
def test_no_patient_page_scrolls_sideways_on_a_small_phone(served: Any, width: int) -> None:
    """Phones of 390, 360 and 320 CSS px, in Spanish (the longer labels): no patient page is
    wider than the screen (a phone would zoom the whole page out); from 360 px every tab is in
    view (at 320 the tab row itself may scroll)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    app = served.app
    task = give_homework(app, "phq-9", patient="pat-carmen", days=0)
    with chromium(width, 740, mobile=True, accept_language="es") as small:
        small.get(served.url + link_for(app, task))
        _wait(small).until(ec.visibility_of_element_located((By.ID, "hw-form")))
        for path in ("/my/", "/my/progress", "/my/preferences", "/my/messages",
                     f"/my/tasks/{task['id']}"):
            small.get(served.url + path)
            _wait(small).until(ec.visibility_of_element_located((By.CSS_SELECTOR, "nav.tabs")))
            wide = small.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            culprits = small.execute_script("""
                const w = document.documentElement.clientWidth;
                return [...document.querySelectorAll('body *')]
                  .filter(e => e.getBoundingClientRect().right > w + 0.5)
                  .slice(0, 6).map(e => e.tagName + '.' + e.className + '#' + e.id + ' '
                                     + Math.round(e.getBoundingClientRect().right));""")
            assert wide[0] <= wide[1], f"{path} at {width}px: page {wide[0]}px wide: {culprits}"
            if path == "/my/":
                full_page_screenshot(small, f"patient-es-tabs-{width}", width, 740)
            if width < 360:
                continue
            tabs = small.find_elements(By.CSS_SELECTOR, "nav.tabs a")
            right = max(small.execute_script("return arguments[0].getBoundingClientRect().right", t)
                        for t in tabs)
            assert right <= wide[1], f"{path} at {width}px: a tab ends at {right}px"
