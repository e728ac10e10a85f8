"""Completion and risk times on clinician pages are in one zone, the clinician's (their
Practitioner's ``timezone``, else HW_FHIR_PRACTICE_TIMEZONE), and say which; days of a
patient's activity (last done, the day of a score, due days) are the patient's own calendar
days on every clinician page, the panel included."""

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
    # "Completed activities" names the clinician's zone; "Recent homework" gives due days, and
    # those are the patient's (test_due_days_on_the_dashboard_are_the_patients)
    assert "(Europe/Berlin)" in page[page.index('id="responses"'):]
    recent = page.split('id="recent"')[1].split("</section>")[0]
    assert "(patient's day)" in recent and "Europe/Berlin" not in recent


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


def test_due_days_on_the_dashboard_are_the_patients(app: Any) -> None:
    """Recent homework gave due days in the clinician's zone, beside the calendar and session
    prep giving them in the patient's: due at 22:30 in New York (Ava) was the next day in
    Berlin (the practice)."""
    from zoneinfo import ZoneInfo

    store = app.extensions["hw_fhir"].store
    new_york, berlin = ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")
    due = (datetime.now(new_york) + timedelta(days=2)).replace(hour=22, minute=30, second=0,
                                                               microsecond=0)
    assert due.astimezone(berlin).date() != due.date()
    task = assign_once(store, due_in_days=2)
    stored = store.read("Task", task["id"]).resource
    store.update({**stored, "restriction": {**stored["restriction"], "period": {
        **stored["restriction"]["period"],
        "end": due.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")}}})
    page = open_launch(app, app.test_client()).get("/clinician/patients/pat-ava").get_data(
        as_text=True)
    recent = page.split('id="recent"')[1].split("</section>")[0]
    assert re.findall(r'<td class="small nowrap">([^<]+)</td>', recent) == [
        f"{due:%a} {due.day} {due:%b %Y}"]


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


def _day(moment: datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b %Y}"


def test_the_panel_dashboard_and_session_prep_give_the_patients_day(app: Any) -> None:
    """Days of a patient's activity are the patient's on every clinician page: Dr. Okafor in
    Chicago sees Emi (Tokyo) finish a PHQ-9 at 08:30 her time, the evening before in Chicago.
    The panel gave the clinician's day ("last done" and "Worse: ... since first score on"), the
    dashboard and session prep the patient's: the same completion on two different days."""
    from zoneinfo import ZoneInfo

    store = app.extensions["hw_fhir"].store
    doctor = store.read("Practitioner", "dr-okafor").resource
    store.update({**doctor, "extension": [{"url": TZ, "valueCode": "America/Chicago"}]})
    tokyo, chicago = ZoneInfo("Asia/Tokyo"), ZoneInfo("America/Chicago")
    latest = (datetime.now(tokyo) - timedelta(days=1)).replace(hour=8, minute=30, second=0,
                                                                microsecond=0)
    first = latest - timedelta(days=14)
    for when, weights in ((first, [1, 1, 1, 0, 0, 0, 0, 0, 0]), (latest, [2] * 8 + [0])):
        moment = when.astimezone(timezone.utc)
        task = assign_once(store, patient="pat-emi", practitioner="dr-okafor",
                           now=moment - timedelta(days=1), due_in_days=2)
        complete_phq9(store, task, weights, when=moment)
    # the clinician's days are the day before: the test would pass with either zone otherwise
    assert _day(first.astimezone(chicago)) != _day(first) and \
        _day(latest.astimezone(chicago)) != _day(latest)

    session = open_launch(app, app.test_client(), practitioner="dr-okafor", patient="pat-emi")
    panel = session.get("/clinician/panel").get_data(as_text=True)
    row = re.search(r'<tr id="panel-pat-emi".*?</tr>', panel, re.S)
    assert row, "Emi is on Dr. Okafor's panel"
    assert f'<span class="last-done">{_day(latest)}</span>' in row.group(0)
    dash = session.get("/clinician/patients/pat-emi").get_data(as_text=True)
    assert f'<span id="last-done">{_day(latest)}</span>' in dash
    prep = session.get("/clinician/patients/pat-emi/session-prep").get_data(as_text=True)
    assert f'<span id="last-done">{_day(latest)}</span>' in prep

    worse = re.search(r'id="worsening-phq-9"><span class="badge bad">Worse</span> ([^<]+)</p>',
                      dash)
    assert worse and f"since first score on {_day(first)} (3 → 16)" in worse.group(1)
    assert f"Worse: {worse.group(1)}</span>" in row.group(0)  # word for word, the same day
    # the rule is said once, where the days of many patients (and zones) meet
    assert "(patient's day)" in panel[panel.index("<thead>"):panel.index("</thead>")]
