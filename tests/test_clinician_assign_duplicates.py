"""Assigning an activity the patient already has: the assign page says so, a second schedule
needs a deliberate tick, and the same form sent twice assigns once."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)
from clinician_support import PHQ9, Session, assign_once, complete_phq9, form_values, snapshot
from hw_fhir.store.base import iter_all

PATH = "/clinician/patients/pat-ava/assign/phq-9"
PHQ9_URL = PHQ9.split("|")[0]


def _form(ava: Session, qid: str = "phq-9") -> dict[str, Any]:
    page = ava.get(f"/clinician/patients/pat-ava/assign/{qid}")
    assert page.status_code == 200
    return form_values(page.text, "assign-form")


def _assign(ava: Session, **changes: Any) -> str:
    """Assign PHQ-9 through the page (defaults: every 14 days); return the plan or Task ref."""
    response = ava.post(PATH, {**_form(ava), **changes})
    assert response.status_code == 303, response.text
    kind, rid = response.headers["Location"].split("/assigned/")[1].split("?")[0].split("/")
    return f"{kind}/{rid}"


def _row(page: str, ref: str) -> str:
    """The table row of an assignment in a page (as the dashboard's table renders it)."""
    found = re.search(r'<tr id="assignment-%s">.*?</tr>' % ref.replace("/", "-"), page, re.S)
    assert found, f"no row of {ref}"
    return found.group(0)


def _active_phq9_plans(store: Any) -> list[dict[str, Any]]:
    return [
        p
        for p in iter_all(store, "CarePlan", [("patient", "Patient/pat-ava"), ("status", "active")])
        if p["activity"][0]["detail"]["instantiatesCanonical"][0].startswith(PHQ9_URL)
    ]


def test_the_page_says_what_is_assigned_already_as_the_dashboard_does(ava: Session) -> None:
    plan = _assign(ava)
    page = ava.get(PATH).text
    notice = page[page.index('id="already-assigned"') : page.index('id="assign-form"')]
    row = _row(notice, plan)
    # the same row, in the same words, as the dashboard's "Active homework"
    assert row == _row(ava.get("/clinician/patients/pat-ava").text, plan)
    assert "Every 14 days at 19:00, 6 times" in row and "PHQ-9" in row
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert re.fullmatch(r"\w{3} \d+ \w{3} \d{4}, \d\d:\d\d \S+", cells[2])  # next due
    change = f'href="/clinician/patients/pat-ava/assignments/{plan}?launch={ava.launch_id}"'
    assert change in row and ">Change<" in row
    assert "second, separate schedule" in notice
    assert 'name="second_schedule"' in notice and 'form="assign-form"' in notice
    assert "Assign a second schedule anyway" in notice
    # another activity says nothing
    assert 'id="already-assigned"' not in ava.get("/clinician/patients/pat-ava/assign/gad-7").text


def test_assigning_again_without_the_tick_is_refused_and_nothing_is_written(
    ava: Session, store: Any
) -> None:
    _assign(ava)
    before = snapshot(store)
    form = {**_form(ava), "instructions": "Fill it in on Sunday evening, please."}
    response = ava.post(PATH, form)
    assert response.status_code == 422
    assert snapshot(store) == before
    text = response.text
    assert 'id="error-summary"' in text and "Nothing was saved" in text
    assert "is already assigned to this patient" in text and 'id="e-second_schedule"' in text
    assert 'href="#f-second_schedule"' in text and 'id="f-second_schedule"' in text
    assert "Fill it in on Sunday evening, please." in text  # the form keeps what was typed
    assert "Traceback" not in text


def test_ticking_assign_a_second_schedule_anyway_assigns_it(ava: Session, store: Any) -> None:
    first = _assign(ava)
    refused = ava.post(PATH, {**_form(ava), "interval": "7"})
    assert refused.status_code == 422
    kept = form_values(refused.text, "assign-form")
    assert kept["interval"] == "7"
    second = ava.post(PATH, {**kept, "second_schedule": "yes"})
    assert second.status_code == 303, second.text
    plans = _active_phq9_plans(store)
    assert len(plans) == 2 and first in {f"CarePlan/{p['id']}" for p in plans}
    periods = [p["activity"][0]["detail"]["scheduledTiming"]["repeat"]["period"] for p in plans]
    assert sorted(periods) == [7, 14]
    page = ava.get(PATH).text  # both are listed now
    assert page.count('<tr id="assignment-CarePlan-') == 2


def test_no_notice_once_the_assignment_is_completed_or_stopped(ava: Session, store: Any) -> None:
    task = assign_once(store)  # a one-off PHQ-9
    assert 'id="already-assigned"' in ava.get(PATH).text
    complete_phq9(store, task, [0] * 9)
    assert 'id="already-assigned"' not in ava.get(PATH).text
    plan = _assign(ava)
    _, rid = plan.split("/")
    base = f"/clinician/patients/pat-ava/assignments/CarePlan/{rid}"
    ava.post(f"{base}/pause")
    assert _row(ava.get(PATH).text, plan)  # paused is still assigned: it comes back on resume
    assert ava.post(f"{base}/cancel").status_code == 303
    assert 'id="already-assigned"' not in ava.get(PATH).text
    assert ava.post(PATH, _form(ava)).status_code == 303  # no tick needed


def test_the_same_form_sent_twice_assigns_once(ava: Session, store: Any) -> None:
    form = _form(ava)
    first = ava.post(PATH, form)
    after_first = snapshot(store)
    again = ava.post(PATH, form)  # a double click, or the browser sending it again
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]
    assert snapshot(store) == after_first
    assert len(_active_phq9_plans(store)) == 1


def test_a_second_schedule_sent_twice_is_one_more(ava: Session, store: Any) -> None:
    _assign(ava)
    form = {**_form(ava), "second_schedule": "yes"}
    first = ava.post(PATH, form)
    again = ava.post(PATH, form)
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]
    assert len(_active_phq9_plans(store)) == 2


def test_a_one_off_sent_twice_is_one_task(ava: Session, store: Any) -> None:
    day = (datetime.now(ZoneInfo("America/New_York")) + timedelta(days=3)).date().isoformat()
    form = {**_form(ava, "thought-record"), "frequency": "once", "start": day}
    path = "/clinician/patients/pat-ava/assign/thought-record"
    first = ava.post(path, form)
    before = snapshot(store)
    again = ava.post(path, form)
    assert first.status_code == again.status_code == 303
    assert "/assigned/Task/" in first.headers["Location"]
    assert again.headers["Location"] == first.headers["Location"]
    assert snapshot(store) == before
