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


def _assignment_cells(page: str, task_id: str) -> list[str]:
    row = page[page.index(f'id="assignment-Task-{task_id}"'):]
    return re.findall(r'<td class="small(?: nowrap)?">(.*?)</td>', row[: row.index("</tr>")], re.S)


def test_active_homework_shows_due_times_with_the_zone_and_due_days_as_days(app: Any) -> None:
    store = app.extensions["hw_fhir"].store
    now = datetime.now(timezone.utc)
    timed = assign_once(store, now=now, due_in_days=3)
    dated = assign_once(store, now=now, due_in_days=5)
    # a Task written by another system, due on a day (a FHIR date, no time)
    day = (now + timedelta(days=5)).date()
    task = store.read("Task", dated["id"]).resource
    store.update({**task, "restriction": {**task["restriction"], "period": {
        **task["restriction"]["period"], "end": day.isoformat()}}})
    page = open_launch(app, app.test_client()).get("/clinician/patients/pat-ava").get_data(
        as_text=True)
    due = _assignment_cells(page, timed["id"])[1]
    assert due == local_when(timed["restriction"]["period"]["end"], "Europe/Berlin")
    assert due.endswith(("CET", "CEST"))
    assert _assignment_cells(page, dated["id"])[1] == f"{day:%a} {day.day} {day:%b %Y}"  # no 00:00


def test_the_compare_headers_use_the_clinicians_zone_like_the_other_pages(app: Any) -> None:
    store = app.extensions["hw_fhir"].store
    first = datetime(2026, 3, 3, 23, 30, tzinfo=timezone.utc)  # already the 4th in Berlin
    second = first + timedelta(days=14)
    ids = []
    for when in (first, second):
        task = assign_once(store, now=when - timedelta(days=1), due_in_days=2)
        ids.append(complete_phq9(store, task, [1, 1, 1, 1, 1, 1, 1, 1, 0], when=when)["id"])
    session = open_launch(app, app.test_client())
    page = session.get("/clinician/patients/pat-ava/compare", a=ids[0], b=ids[1]).get_data(
        as_text=True)
    head = page[page.index("<thead>"):page.index("</thead>")]
    assert "Wed 4 Mar 2026, 00:30 CET" in head and "Wed 18 Mar 2026, 00:30 CET" in head
    response = session.get(f"/clinician/patients/pat-ava/responses/{ids[0]}").get_data(
        as_text=True)
    assert "Completed Wed 4 Mar 2026, 00:30 CET" in response  # the same as the response page
