"""The Reminders page: the channel in use shown as chosen (as the reminder sweep would choose it),
nothing picked refused (store unchanged), and a time-zone picker starting from the likely zone
with common zones first."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from hw_fhir.channel_in_use import channel_in_use
from hw_fhir.config import Settings
from hw_fhir.errors import ConfigurationError
from patient_support import csrf, give_homework, patient_app, sign_in, snapshot


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = patient_app(app_config, practice_timezone="Europe/Berlin")
    yield application
    application.extensions["hw_fhir"].close()


def _services(app: Any) -> Any:
    return app.extensions["hw_fhir"]


def _edit_patient(app: Any, pid: str, **changes: Any) -> None:
    store = _services(app).store
    patient = store.read("Patient", pid).resource
    store.update({**patient, **changes})


def _checked(page: str) -> list[str]:
    return re.findall(r'name="channel" value="([^"]+)" checked', page)


def _selected_zones(page: str) -> list[str]:
    select = page[page.index('<select id="timezone"'):page.index("</select>", page.index('<select id="timezone"'))]
    return re.findall(r'<option value="([^"]+)" selected', select)


def test_the_channel_in_use_is_shown_as_chosen(app: Any) -> None:
    task = give_homework(app, "mood-log")
    client = app.test_client()
    sign_in(client, app, task)
    patient = _services(app).store.read("Patient", "pat-ava").resource
    assert channel_in_use(_services(app), patient) == "email"  # what the sweep would use
    page = client.get("/my/preferences").get_data(as_text=True)
    assert _checked(page) == ["email"]
    assert "Your reminders now come by: <strong>Email</strong>" in page


def test_a_stored_choice_stays_chosen_and_none_means_none(app: Any) -> None:
    task = give_homework(app, "mood-log")
    client = app.test_client()
    sign_in(client, app, task)
    page = client.get("/my/preferences").get_data(as_text=True)
    saved = client.post("/my/preferences", data={"csrf_token": csrf(page), "channel": "none",
                                                 "timezone": "America/New_York"})
    assert saved.status_code == 302
    page = client.get("/my/preferences").get_data(as_text=True)
    assert _checked(page) == ["none"] and "<strong>No reminders</strong>" in page


def test_a_patient_no_channel_reaches_has_nothing_preselected(app: Any) -> None:
    _edit_patient(app, "pat-ava", telecom=[])
    task = give_homework(app, "mood-log")
    client = app.test_client()
    sign_in(client, app, task)
    page = client.get("/my/preferences").get_data(as_text=True)
    assert _checked(page) == [] and 'id="channel-in-use"' not in page


def test_saving_with_no_channel_picked_is_refused(app: Any) -> None:
    _edit_patient(app, "pat-ava", telecom=[])  # nothing preselected
    task = give_homework(app, "mood-log")
    client = app.test_client()
    sign_in(client, app, task)
    page = client.get("/my/preferences").get_data(as_text=True)
    before = snapshot(app)
    refused = client.post("/my/preferences", data={"csrf_token": csrf(page),
                                                   "timezone": "America/New_York"})
    assert refused.status_code == 422
    assert "Choose how we should remind you" in refused.get_data(as_text=True)
    assert snapshot(app) == before


def test_the_time_zone_picker_starts_from_the_stored_zone(app: Any) -> None:
    task = give_homework(app, "mood-log")
    client = app.test_client()
    sign_in(client, app, task)
    page = client.get("/my/preferences").get_data(as_text=True)
    assert _selected_zones(page) == ["America/New_York"]
    assert "data-guess-zone" not in page and 'id="timezone-guess"' not in page
    common = page.index('<optgroup label="Common time zones">')
    full = page.index('<optgroup label="All time zones">')
    assert common < page.index('value="America/New_York"') < full
    assert page.count("<option ") > 300  # the full list is still there, after the common ones
    assert re.search(r'<script src="[^"]*/patient/timezone\.js"', page)
    assert "<script>" not in page  # no inline script (CSP)


def test_without_a_stored_zone_the_practice_zone_is_the_fallback(app: Any) -> None:
    patient = _services(app).store.read("Patient", "pat-ava").resource
    _edit_patient(app, "pat-ava", extension=[e for e in patient.get("extension", [])
                                             if not e["url"].endswith("/timezone")])
    task = give_homework(app, "mood-log")
    client = app.test_client()
    sign_in(client, app, task)
    page = client.get("/my/preferences").get_data(as_text=True)
    assert _selected_zones(page) == ["Europe/Berlin"]
    assert "data-guess-zone" in page and 'id="timezone-guess"' in page


def test_the_practice_zone_is_a_checked_setting() -> None:
    assert Settings(practice_timezone="America/Chicago").check().practice_timezone
    with pytest.raises(ConfigurationError, match="HW_FHIR_PRACTICE_TIMEZONE"):
        Settings(practice_timezone="Mars/Olympus").check()
