"""Completion and risk times on clinician pages are in one zone, the clinician's (their
Practitioner's ``timezone``, else HW_FHIR_PRACTICE_TIMEZONE), and say which."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from clinician_support import assign_once, clinician_app, complete_phq9, open_launch
from smart_app.clinician.filters import local_when_zone as local_when

TZ = "http://hl7.org/fhir/StructureDefinition/timezone"


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = clinician_app(app_config, practice_timezone="Europe/Berlin")
    yield application
    application.extensions["hw_fhir"].close()


def _completed_cells(page: str) -> list[str]:
    section = page[page.index('id="responses"'):]
    return re.findall(r'<td class="small nowrap">([^<]+)</td>', section)


def _done(app: Any) -> datetime:
    store = app.extensions["hw_fhir"].store
    when = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    task = assign_once(store, now=when - timedelta(days=1), due_in_days=2)
    complete_phq9(store, task, [1, 1, 1, 1, 1, 1, 1, 1, 0], when=when)
    return when


def test_the_dashboard_uses_the_practice_zone_and_says_so(app: Any) -> None:
    when = _done(app)
    page = open_launch(app, app.test_client()).get("/clinician/patients/pat-ava").get_data(
        as_text=True)
    expected = local_when(when.isoformat(), "Europe/Berlin")
    assert expected.endswith(("CET", "CEST"))
    assert _completed_cells(page)[0] == expected
    # "Recent homework" and "Completed activities" both name the clinician's zone
    assert page.count("(Europe/Berlin)") >= 2
    assert "America/New_York" not in page.split('id="recent"')[1].split("</section>")[0]


def test_a_practitioner_zone_wins_over_the_practice_zone(app: Any) -> None:
    store = app.extensions["hw_fhir"].store
    doctor = store.read("Practitioner", "dr-rivera").resource
    store.update({**doctor, "extension": [{"url": TZ, "valueCode": "Asia/Tokyo"}]})
    when = _done(app)
    page = open_launch(app, app.test_client()).get("/clinician/patients/pat-ava").get_data(
        as_text=True)
    assert _completed_cells(page)[0] == local_when(when.isoformat(), "Asia/Tokyo")
    assert _completed_cells(page)[0].endswith("JST")
    assert "(Asia/Tokyo)" in page


def test_local_when_zone_labels_the_zone() -> None:
    moment = "2026-03-03T19:00:00Z"
    assert local_when(moment, "America/New_York") == "Tue 3 Mar 2026, 14:00 EST"
    assert local_when(moment, "UTC") == "Tue 3 Mar 2026, 19:00 UTC"
