"""The sandbox EHR asks for consent once per app and user, in a clinician's words, with names.

Over real HTTP (the app served on 127.0.0.1): the first EHR launch shows the consent page
(inside the EHR's iframe, so without the sandbox's own header), the next launch by the same
clinician goes straight to the app; another clinician is asked; Don't allow is not
remembered. The favicon is served.
"""

from __future__ import annotations

from typing import Any

from smart_support import (
    Browser,
    browser_like_cookies,  # noqa: F401  (autouse fixture)
    absolute,
    browser,  # noqa: F401
    form_fields,
    sandbox_app,  # noqa: F401
    sandbox_server,  # noqa: F401  (fixture)
)

from hw_fhir.smart.authstore import AuthStore


def _authorize_page(browser: Browser, practitioner: str, patient: str) -> Any:
    launch_url = browser.open_ehr_chart(practitioner, patient)
    first = browser.get(launch_url)
    assert first.status_code == 302, first.text
    return browser.get(first.headers["Location"])


def test_consent_is_asked_once_per_clinician_with_names(browser: Browser) -> None:
    page = _authorize_page(browser, "dr-rivera", "pat-ava")
    assert page.status_code == 200
    text = page.text
    assert "to open in your EHR?" in text and "open your record" not in text
    assert 'id="authorize-user">Dr. Elena Rivera<' in text
    assert 'id="authorize-patient">Ava Nguyen<' in text
    assert "Practitioner/dr-rivera" not in text and "Patient/pat-ava" not in text
    assert 'class="ehr-bar"' not in text and 'class="sandbox-note"' not in text  # no header in the iframe
    assert "Homework assignments of this patient" in text or "you can see" in text
    callback = browser.approve(page)
    assert callback.status_code == 302 and "code=" in callback.headers["Location"]
    browser.follow(browser.get(callback.headers["Location"]))
    # the same clinician opens another chart: no consent page, straight back with a code
    again = _authorize_page(browser, "dr-rivera", "pat-ben")
    assert again.status_code == 302 and "code=" in again.headers["Location"]
    landing = browser.follow(browser.get(absolute(browser.base, again.headers["Location"])))
    assert landing.status_code == 200 and "Ben Schmidt" in landing.text
    # another clinician is asked for themselves
    other = _authorize_page(browser, "dr-okafor", "pat-dev")
    assert other.status_code == 200 and "Dr. Samuel Okafor" in other.text


def test_dont_allow_is_not_remembered(browser: Browser) -> None:
    page = _authorize_page(browser, "dr-rivera", "pat-ava")
    action, hidden = form_fields(page.text, "authorize-form")
    denied = browser.post(action, data={**hidden, "decision": "deny"})
    assert denied.status_code == 302 and "error=access_denied" in denied.headers["Location"]
    assert _authorize_page(browser, "dr-rivera", "pat-ava").status_code == 200


def test_the_sandbox_pages_keep_their_header_outside_the_iframe(browser: Browser) -> None:
    page = browser.get("/sandbox/").text
    assert 'class="ehr-bar"' in page


def test_a_remembered_consent_is_not_a_launch_id(sandbox_app: Any) -> None:
    auth = AuthStore(sandbox_app.extensions["hw_fhir"].store)
    auth.remember_consent("Practitioner/dr-rivera", "hw-fhir-app", "launch openid")
    assert auth.has_consent("Practitioner/dr-rivera", "hw-fhir-app", "openid launch")
    assert not auth.has_consent("Practitioner/dr-rivera", "hw-fhir-app", "launch openid fhirUser")
    assert not auth.has_consent("Practitioner/dr-okafor", "hw-fhir-app", "launch openid")
    assert not auth.has_consent("Practitioner/dr-rivera", "other-app", "launch openid")
    consent_id = auth._consent_id("Practitioner/dr-rivera", "hw-fhir-app", "launch openid")
    assert auth.get_launch(consent_id) is None


def test_the_favicon_is_served(browser: Browser) -> None:
    icon = browser.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in icon.content
    assert 'rel="icon"' in browser.get("/sandbox/").text
