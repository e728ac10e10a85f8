"""A secure link whose activity is done opens only a thank-you page (no list, no progress, no
PHI), after the date-of-birth check when the link asks for it; the link lifetime is a setting."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.datastructures import MultiDict

from hw_fhir.assignment import cancel_assignment
from hw_fhir.config import Settings
from hw_fhir.errors import ConfigurationError
from patient_support import csrf, give_homework, link_for, patient_app, sign_in


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = patient_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


def _submit_phq9(client: Any, task: dict[str, Any], page: str) -> None:
    data = MultiDict([("csrf_token", csrf(page)), ("_action", "submit")])
    for n in range(1, 11):
        data.add(f"q:phq9-{n}", "0" if n == 9 else "1")
    done = client.post(f"/my/tasks/{task['id']}", data=data)
    assert done.status_code in (302, 303), done.get_data(as_text=True)


def _assert_thank_you_only(response: Any) -> None:
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Thank you — nothing left to do here" in page
    for private in ("Ava", "Nguyen", "PHQ", "Progress", "To do", 'href="/my/"', "/my/progress",
                    "/my/tasks", "pat-ava"):
        assert private not in page, private


def test_a_done_activitys_link_shows_only_thank_you_and_signs_nobody_in(app: Any) -> None:
    task = give_homework(app, "phq-9")
    link = link_for(app, task)
    patient = app.test_client()
    page = sign_in(patient, app, task)
    _submit_phq9(patient, task, page)

    forwarded = app.test_client()  # the email forwarded to someone else
    _assert_thank_you_only(forwarded.get(link))
    assert forwarded.get("/my/").status_code == 401
    assert forwarded.get("/my/progress").status_code == 401
    assert forwarded.get(f"/my/tasks/{task['id']}").status_code == 401


def test_the_birth_date_check_still_comes_first(app: Any) -> None:
    task = give_homework(app, "phq-9")
    link = link_for(app, task, birth_date_check=True)
    patient = app.test_client()
    page = sign_in(patient, app, task)
    _submit_phq9(patient, task, page)

    other = app.test_client()
    asked = other.get(link)
    assert asked.status_code == 200 and "dob_day" in asked.get_data(as_text=True)
    token = csrf(asked.get_data(as_text=True))
    wrong = other.post(link, data={"csrf_token": token, "dob_day": "1", "dob_month": "1",
                                   "dob_year": "1990"})
    assert wrong.status_code == 401 and "nothing left to do" not in wrong.get_data(as_text=True)
    right = other.post(link, data={"csrf_token": token, "dob_day": "12", "dob_month": "4",
                                   "dob_year": "1991"})
    _assert_thank_you_only(right)
    assert other.get("/my/").status_code == 401


def test_a_cancelled_activitys_link_shows_only_thank_you(app: Any) -> None:
    task = give_homework(app, "mood-log")
    link = link_for(app, task)
    cancel_assignment(app.extensions["hw_fhir"].store, f"Task/{task['id']}")
    client = app.test_client()
    _assert_thank_you_only(client.get(link))
    assert client.get("/my/").status_code == 401


def test_an_open_activitys_link_still_opens_it(app: Any) -> None:
    task = give_homework(app, "mood-log")
    opened = app.test_client().get(link_for(app, task))
    assert opened.status_code == 302 and f"/my/tasks/{task['id']}" in opened.headers["Location"]


def test_the_link_lifetime_is_a_checked_setting(app_config: dict[str, Any]) -> None:
    assert Settings(link_lifetime_hours=24).check().link_lifetime_hours == 24
    for bad in (0, -1, 721):
        with pytest.raises(ConfigurationError, match="HW_FHIR_LINK_LIFETIME_HOURS"):
            Settings(link_lifetime_hours=bad).check()


def test_links_live_as_long_as_the_setting_says(app_config: dict[str, Any]) -> None:
    import time

    from hw_fhir.links import patient_links

    app = patient_app(app_config, link_lifetime_hours=2)
    try:
        task = give_homework(app, "mood-log")
        issued = patient_links(app.extensions["hw_fhir"]).make_link(task["id"], "Patient/pat-ava")
        assert 2 * 3600 - 60 <= issued.expires_at - time.time() <= 2 * 3600
    finally:
        app.extensions["hw_fhir"].close()
