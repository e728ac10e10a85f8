"""One definition of adherence: the panel, the dashboard and session prep agree.

The window is "due or done in the last 28 days": homework done early counts as soon as it
is done (the panel used to count only homework due within the next day, so a patient who
worked early showed 0/0 while the dashboard said 100 %).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from hw_fhir import review
from hw_fhir.adherence import ADHERENCE_DAYS, AdherenceWindow, TaskFacts, panel_summary
from hw_fhir.demo import load_demo_data
from hw_fhir.outcomes import FLAG_DETAIL_EXTENSION, FLAG_RAISED_EXTENSION
from hw_fhir.library import load_catalog
from hw_fhir.store.base import iter_all

from clinician_support import PHQ9, assign_once, clinician_app, complete_phq9, open_launch

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=timezone.utc)


def _task(**fields: Any) -> TaskFacts:
    base = {"id": "t", "status": "requested", "homework": True}
    return TaskFacts(**{**base, **fields})


def test_the_window_counts_due_or_done_in_the_last_days() -> None:
    window = AdherenceWindow.ending(NOW)
    assert window.start == NOW - timedelta(days=ADHERENCE_DAYS)
    assert "last 28 days" in window.label
    due_later_done_now = _task(
        status="completed", due=NOW + timedelta(days=5), finished="2026-03-08T09:00:00Z"
    )
    due_later_open = _task(due=NOW + timedelta(days=5))
    due_long_ago_done_now = _task(
        status="completed", due=NOW - timedelta(days=40), finished="2026-03-07T09:00:00Z"
    )
    due_long_ago_missed = _task(status="failed", due=NOW - timedelta(days=40))
    due_last_week_missed = _task(status="failed", due=NOW - timedelta(days=7))
    cancelled = _task(status="cancelled", due=NOW - timedelta(days=1))
    assert window.includes(due_later_done_now)
    assert not window.includes(due_later_open)
    assert window.includes(due_long_ago_done_now)
    assert not window.includes(due_long_ago_missed)
    assert window.includes(due_last_week_missed)
    assert not window.includes(cancelled)


@pytest.fixture
def demo_app(app_config: dict[str, Any]) -> Any:
    from smart_app import create_app

    app = create_app({**app_config, "secure_cookies": False})
    services = app.extensions["hw_fhir"]
    load_catalog(services.store)
    load_demo_data(services, history=True)
    return app


def _figures(a: Any) -> tuple[int, int, int, str | None]:
    return (a.completed, a.assigned, a.current_streak, a.last_completed)


def _practitioners(store: Any) -> list[str]:
    return sorted(p["id"] for p in iter_all(store, "Practitioner"))


def test_panel_dashboard_and_session_prep_agree_on_the_demo_caseload(demo_app: Any) -> None:
    store = demo_app.extensions["hw_fhir"].store
    now = datetime.now(timezone.utc)
    compared = 0
    streaks = 0
    for practitioner in _practitioners(store):
        for entry in review.panel(store, practitioner, now=now):
            pid = entry.patient.split("/", 1)[1]
            dash = review.patient_dashboard(store, pid, now=now)
            prep = review.session_prep(store, pid, now=now)
            assert prep.recent is not None
            expected = _figures(entry.adherence)
            assert _figures(dash.adherence) == expected, pid
            assert _figures(prep.recent) == expected, pid
            compared += 1
            streaks += entry.adherence.current_streak > 0
    assert compared >= 4  # the demo practice has several patients with history
    assert streaks >= 1  # and the comparison covers real streaks, not only zeros


def _panel_cells(page: str, pid: str) -> tuple[str, str]:
    row = re.search(rf'<tr id="panel-{pid}".*?</tr>', page, re.S)
    assert row, f"{pid} not on the panel"
    done = re.search(r'done-count">\((\d+)/(\d+)\)', row.group(0))
    streak = re.search(r'class="num streak">(\d+)<', row.group(0))
    assert done and streak
    return f"{done.group(1)} of {done.group(2)}", streak.group(1)


def test_the_pages_show_the_same_figures(demo_app: Any) -> None:
    client = demo_app.test_client()
    session = open_launch(demo_app, client, practitioner="dr-rivera", patient="pat-ava")
    panel = session.get("/clinician/panel")
    assert panel.status_code == 200
    page = panel.get_data(as_text=True)
    assert "due or done in the last 28 days" in page
    for pid in ("pat-ava", "pat-ben"):
        done, streak = _panel_cells(page, pid)
        other = open_launch(demo_app, demo_app.test_client(), patient=pid)
        dash = other.get(f"/clinician/patients/{pid}").get_data(as_text=True)
        assert f'<span id="done-count">{done}</span>' in dash
        assert f'<span class="value" id="streak">{streak}</span>' in dash
        prep = other.get(f"/clinician/patients/{pid}/session-prep").get_data(as_text=True)
        assert f'<strong id="done-count">{done}</strong>' in prep
        assert f'<span id="streak">{streak}</span>' in prep


def test_homework_done_early_counts_on_the_panel_at_once(app_config: dict[str, Any]) -> None:
    app = clinician_app(app_config)
    store = app.extensions["hw_fhir"].store
    now = datetime.now(timezone.utc)
    first = assign_once(store, PHQ9, patient="pat-carmen", due_in_days=6, now=now)
    second = assign_once(store, PHQ9, patient="pat-carmen", due_in_days=9, now=now)
    before = {row.patient: row.adherence for row in panel_summary(store, "dr-rivera", now=now)}
    assert before["Patient/pat-carmen"].assigned == 0
    complete_phq9(store, first, [0] * 9, when=now)
    complete_phq9(store, second, [1] * 9, when=now)
    later = now + timedelta(minutes=5)
    rows = {row.patient: row.adherence for row in panel_summary(store, "dr-rivera", now=later)}
    carmen = rows["Patient/pat-carmen"]
    assert (carmen.completed, carmen.assigned, carmen.current_streak) == (2, 2, 2)
    assert carmen.last_completed is not None
    dash = review.patient_dashboard(store, "pat-carmen", now=later)
    assert _figures(dash.adherence) == _figures(carmen)


def test_the_demo_history_flags_start_when_their_responses_were_answered(demo_app: Any) -> None:
    """Replayed risk Flags start at their response's ``authored``; none ends before it starts."""
    store = demo_app.extensions["hw_fhir"].store
    flags = store.search("Flag", [("subject", "Patient/pat-ben"), ("_count", "100")]).resources
    assert len(flags) >= 2
    for flag in flags:
        source = next(e["valueReference"]["reference"] for e in flag["extension"]
                      if e["url"] == FLAG_DETAIL_EXTENSION)
        response = store.read("QuestionnaireResponse", source.split("/", 1)[1]).resource
        period = flag["period"]
        assert _moment(period["start"]) == _moment(response["authored"])
        # scored as it arrived in the story: the dashboard must not say "flagged later"
        raised = [e["valueDateTime"] for e in flag["extension"] if e["url"] == FLAG_RAISED_EXTENSION]
        assert [_moment(r) for r in raised] == [_moment(response["authored"])]
        if "end" in period:
            assert _moment(period["end"]) >= _moment(period["start"])
    assert any(flag["status"] == "inactive" and "end" in flag["period"] for flag in flags)


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def test_the_demo_started_again_another_day_has_that_days_sessions(demo_app: Any) -> None:
    """`hw-fhir demo` on an existing folder: the sandbox EHR's open sessions move to the day it
    starts (the first start's are left only when it is the same day)."""
    services = demo_app.extensions["hw_fhir"]
    first = services.store.read("Encounter", "enc-pat-ava").resource["period"]["start"]
    later = (datetime.now(timezone.utc) + timedelta(days=3)).replace(hour=10)
    load_demo_data(services, history=True, now=later)
    moved = services.store.read("Encounter", "enc-pat-ava").resource
    assert moved["period"]["start"] == later.strftime("%Y-%m-%dT%H:00:00Z") != first
    assert moved["status"] == "in-progress" and moved["subject"] == {
        "reference": "Patient/pat-ava", "display": "Ava"}
    load_demo_data(services, history=True, now=later + timedelta(hours=1))  # same day: kept
    assert services.store.read("Encounter", "enc-pat-ava").resource["meta"] == moved["meta"]


def test_the_demos_clinicians_see_times_in_their_own_zone(demo_app: Any) -> None:
    """`hw-fhir demo`: Dr. Rivera works in New York, so her pages give New York times (the
    confirmation gave the patient's New York time and the dashboard UTC for the same due)."""
    services = demo_app.extensions["hw_fhir"]
    rivera = services.store.read("Practitioner", "dr-rivera").resource
    assert {"url": "http://hl7.org/fhir/StructureDefinition/timezone",
            "valueCode": "America/New_York"} in rivera["extension"]
    version = rivera["meta"]["versionId"]
    load_demo_data(services, history=True)  # started again: not written again
    assert services.store.read("Practitioner", "dr-rivera").resource["meta"]["versionId"] == version
    session = open_launch(demo_app, demo_app.test_client(), practitioner="dr-rivera",
                          patient="pat-ava")
    page = session.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert "(America/New_York)" in page and re.search(r"\d\d:\d\d E[SD]T\b", page)
    assert "UTC)" not in page
