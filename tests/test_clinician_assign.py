"""The assign flow: browse, preview, tailor with defaults, confirm; pathways; change, pause, stop.

Every bad form comes back with a clear message next to its field, and nothing is stored.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clinician_support import Session, assign_once, form_values, snapshot
from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)
from hw_fhir.assignment import task_due
from hw_fhir.store.base import iter_all

NEW_YORK = ZoneInfo("America/New_York")  # pat-ava's time zone




def _local_today() -> date:
    return datetime.now(NEW_YORK).date()


def _form(page: str, form_id: str) -> dict[str, Any]:
    """Return the fields of a form as the browser would submit them untouched."""
    return form_values(page, form_id)


def _tailor(ava: Session, qid: str = "phq-9") -> dict[str, Any]:
    page = ava.get(f"/clinician/patients/pat-ava/assign/{qid}")
    assert page.status_code == 200
    return _form(page.text, "assign-form")


# -- browse and preview -----------------------------------------------------------------------


def test_library_lists_every_active_activity_and_pathways(ava: Session) -> None:
    page = ava.get("/clinician/patients/pat-ava/assign").text
    assert re.search(r'id="result-count">33 of 33<', page)
    assert 'id="assign-phq-9"' in page and 'id="pathway-insomnia-4-weeks"' in page


@pytest.mark.parametrize(
    "params, present, absent",
    [
        ({"q": "sleep"}, ["sleep-diary", "stimulus-control"], ["phq-9", "thought-record"]),
        ({"problem": "insomnia"}, ["sleep-diary"], ["dear-man"]),
        ({"modality": "dbt"}, ["dear-man", "distress-tolerance-log"], ["phq-9"]),
        ({"media": "audio"}, ["body-scan", "audio-understanding-panic"], ["thought-record"]),
        ({"problem": "depression", "kind": "measure"}, ["phq-9", "phq-2"], ["gad-7", "mood-log"]),
        ({"q": "PHQ"}, ["phq-9", "phq-2"], ["gad-7"]),
    ],
)
def test_library_filters(
    ava: Session, params: dict[str, str], present: list[str], absent: list[str]
) -> None:
    page = ava.get("/clinician/patients/pat-ava/assign", **params).text
    for qid in present:
        assert f'id="activity-{qid}"' in page, qid
    for qid in absent:
        assert f'id="activity-{qid}"' not in page, qid


def test_library_search_with_no_match_says_so(ava: Session) -> None:
    page = ava.get("/clinician/patients/pat-ava/assign", q="zzzz-nothing").text
    assert 'id="no-results"' in page


def test_preview_shows_the_patient_view_with_inputs_disabled(ava: Session) -> None:
    page = ava.get("/clinician/library/phq-9/preview", patient="pat-ava")
    assert page.status_code == 200
    assert 'class="phone"' in page.text and "Little interest or pleasure" in page.text
    frame = ava.get("/clinician/library/phq-9/preview/frame")
    assert frame.status_code == 200
    assert "<fieldset disabled" in frame.text
    assert "patient/patient.css" in frame.text
    assert "Little interest or pleasure in doing things" in frame.text
    assert 'name="q:phq9-1"' in frame.text  # the patient pages' own widgets
    assert "no right or wrong answers" in frame.text  # the default instructions


# -- tailor and assign ------------------------------------------------------------------------


def test_tailor_form_has_sensible_defaults(ava: Session) -> None:
    measure = _tailor(ava, "phq-9")
    assert measure["frequency"] == "every-n-days" and measure["interval"] == "14"
    assert measure["count"] == "6" and measure["end"] == "count"
    assert measure["start"] == (_local_today() + timedelta(days=1)).isoformat()
    assert measure["time"] == "19:00" and measure["channel"] == "email"
    assert "no right or wrong answers" in measure["instructions"]
    log = _tailor(ava, "mood-log")
    assert log["frequency"] == "daily" and log["count"] == "14"
    assert log["instructions"].startswith("A quick daily check on mood")
    reading = _tailor(ava, "reading-cbt-model")
    assert reading["frequency"] == "once"


def test_three_clicks_assign_a_phq9_every_two_weeks(store: Any, ava: Session) -> None:
    form = _tailor(ava)
    response = ava.post("/clinician/patients/pat-ava/assign/phq-9", form)
    assert response.status_code == 303, response.text
    location = response.headers["Location"]
    assert "/clinician/patients/pat-ava/assigned/CarePlan/" in location
    plan_id = location.split("/CarePlan/")[1].split("?")[0]
    plan = store.read("CarePlan", plan_id).resource
    detail = plan["activity"][0]["detail"]
    assert detail["instantiatesCanonical"] == ["http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0"]
    assert detail["scheduledTiming"]["repeat"]["period"] == 14
    assert plan["author"]["reference"] == "Practitioner/dr-rivera"
    tasks = iter_all(store, "Task", [("based-on", f"CarePlan/{plan_id}")])
    assert len(tasks) == 1  # the first occurrence within the two-week horizon
    due = task_due(tasks[0]).astimezone(NEW_YORK)
    assert due.date() == _local_today() + timedelta(days=1) and due.hour == 19
    confirmation = ava.client.get(location)
    assert confirmation.status_code == 200
    text = confirmation.text
    assert "Every 14 days at 19:00, 6 times" in text
    dues = re.findall(r"<li>([^<]+)</li>", text[text.index('id="due-list"') :])
    assert len(dues) == 6 and dues[0].endswith("19:00")
    assert "no right or wrong answers" in text and "by email" in text
    plan = text[text.index('id="reminder-plan"') :]
    assert "Before it is due" in plan and "(a secure link)" in plan
    assert "PHQ" not in plan[: plan.index("</section>")]  # no clinical content in the message
    assert 'id="patient-view"' in text and f"ref=CarePlan/{plan_id}" in text


def test_assign_once_with_tailoring_and_low_confidence_warning(store: Any, ava: Session) -> None:
    form = {
        **_tailor(ava, "thought-record"),
        "frequency": "once",
        "start": (_local_today() + timedelta(days=5)).isoformat(),
        "time": "18:30",
        "instructions": "One entry after the Tuesday team meeting, 10 minutes, at your desk.",
        "rationale": "To catch the 'I'm useless' thought in the moment.",
        "example": "Meeting ran late → 'they think I'm slow'.",
        "wording": "skills practice",
        "channel": "email",
        "confidence": "5",
    }
    response = ava.post("/clinician/patients/pat-ava/assign/thought-record", form)
    assert response.status_code == 303
    assert "/assigned/Task/" in response.headers["Location"]
    task_id = response.headers["Location"].split("/Task/")[1].split("?")[0]
    task = store.read("Task", task_id).resource
    assert task["description"].startswith("One entry after the Tuesday team meeting")
    assert {n["text"] for n in task["note"]} == {form["rationale"], form["example"]}
    assert task_due(task).astimezone(NEW_YORK).strftime("%H:%M") == "18:30"
    page = ava.client.get(response.headers["Location"]).text
    assert 'id="confidence-warning"' in page and "5/10" in page
    assert "“skills practice”" in page and "by email" in page


def _bad(ava: Session, store: Any, form: dict[str, Any], qid: str = "phq-9") -> Any:
    before = snapshot(store)
    response = ava.post(f"/clinician/patients/pat-ava/assign/{qid}", form)
    assert response.status_code in (400, 422), response.status_code
    assert 'id="error-summary"' in response.text and "Nothing was saved" in response.text
    assert snapshot(store) == before
    return response


def test_schedule_ending_before_it_starts(ava: Session, store: Any) -> None:
    start = _local_today() + timedelta(days=5)
    response = _bad(
        ava,
        store,
        {
            **_tailor(ava),
            "end": "until",
            "until": (start - timedelta(days=2)).isoformat(),
            "start": start.isoformat(),
        },
    )
    assert "ends" in response.text and "before it starts" in response.text
    assert 'id="e-until"' in response.text
    assert 'href="#f-until">Last day</a>' in response.text
    # the form keeps what was typed
    assert f'value="{(start - timedelta(days=2)).isoformat()}"' in response.text


def test_first_due_date_in_the_past(ava: Session, store: Any) -> None:
    past = _local_today() - timedelta(days=3)
    response = _bad(ava, store, {**_tailor(ava), "start": past.isoformat()})
    assert 'id="e-start"' in response.text and "is in the past" in response.text


def test_once_due_today_at_a_time_already_passed(ava: Session, store: Any) -> None:
    now_local = datetime.now(NEW_YORK)
    if now_local.hour == 0 and now_local.minute < 2:
        pytest.skip("no earlier time today")
    earlier = (now_local - timedelta(minutes=1)).strftime("%H:%M")
    response = _bad(
        ava,
        store,
        {
            **_tailor(ava, "reading-cbt-model"),
            "frequency": "once",
            "start": now_local.date().isoformat(),
            "time": earlier,
        },
    )
    assert "already passed" in response.text


def test_empty_instructions(ava: Session, store: Any) -> None:
    response = _bad(ava, store, {**_tailor(ava), "instructions": "   "})
    assert (
        'id="e-instructions"' in response.text and "Say what the patient will do" in response.text
    )


@pytest.mark.parametrize(
    "changes, field, words",
    [
        ({"frequency": "weekly", "days": []}, "days", "at least one day"),
        ({"confidence": "12"}, "confidence", "0 to 10"),
        ({"confidence": "very"}, "confidence", "whole number"),
        ({"start": "next tuesday"}, "start", "is not a date"),
        ({"time": "25:99"}, "time", "is not a time"),
        ({"end": "count", "count": ""}, "count", "how many times"),
        ({"end": "count", "count": "0"}, "count", "at least 1"),
        ({"frequency": "every-n-days", "interval": "1"}, "interval", "2 or more"),
    ],
)
def test_other_bad_schedules(
    ava: Session, store: Any, changes: dict[str, Any], field: str, words: str
) -> None:
    response = _bad(ava, store, {**_tailor(ava), **changes})
    assert f'id="e-{field}"' in response.text, response.text[:3000]
    assert words in response.text


def test_draft_activities_cannot_be_assigned(app: Any, store: Any, ava: Session) -> None:
    from hw_fhir.library import clone_questionnaire

    draft = clone_questionnaire(store, "phq-9", practitioner="dr-rivera", title="My PHQ")
    before = snapshot(store)
    response = ava.get(f"/clinician/patients/pat-ava/assign/{draft['id']}")
    assert response.status_code == 422 and "Publish it first" in response.text
    assert (
        ava.post(f"/clinician/patients/pat-ava/assign/{draft['id']}", _tailor(ava)).status_code
        == 422
    )
    assert snapshot(store) == before


def test_assigning_without_csrf_stores_nothing(ava: Session, store: Any) -> None:
    before = snapshot(store)
    form = {k: v for k, v in _tailor(ava).items() if k != "csrf_token"}
    response = ava.post("/clinician/patients/pat-ava/assign/phq-9", form, csrf=False)
    assert response.status_code == 403
    assert snapshot(store) == before


# -- pathways ---------------------------------------------------------------------------------


def test_assign_a_pathway(store: Any, ava: Session) -> None:
    page = ava.get("/clinician/patients/pat-ava/pathways/insomnia-4-weeks")
    assert page.status_code == 200 and 'id="pathway-steps"' in page.text
    form = _form(page.text, "pathway-form")
    response = ava.post("/clinician/patients/pat-ava/pathways/insomnia-4-weeks", form)
    assert response.status_code == 303
    plan_id = response.headers["Location"].split("/CarePlan/")[1].split("?")[0]
    plan = store.read("CarePlan", plan_id).resource
    assert plan["instantiatesUri"] == ["http://hw-fhir.org/fhir/pathway/insomnia-4-weeks"]
    confirmation = ava.client.get(response.headers["Location"]).text
    assert "Sleep diary" in confirmation and 'id="step-2"' in confirmation
    dashboard = ava.get("/clinician/patients/pat-ava").text
    assert f'id="assignment-CarePlan-{plan_id}"' in dashboard and "pathway" in dashboard


def test_pathway_starting_in_the_past_is_refused(store: Any, ava: Session) -> None:
    page = ava.get("/clinician/patients/pat-ava/pathways/insomnia-4-weeks").text
    before = snapshot(store)
    form = {
        **_form(page, "pathway-form"),
        "start": (_local_today() - timedelta(days=2)).isoformat(),
    }
    response = ava.post("/clinician/patients/pat-ava/pathways/insomnia-4-weeks", form)
    assert response.status_code == 400 and "cannot start in the past" in response.text
    assert snapshot(store) == before


def test_unknown_pathway_is_404(ava: Session) -> None:
    assert ava.get("/clinician/patients/pat-ava/pathways/nope").status_code == 404


# -- change, pause, stop ----------------------------------------------------------------------


def _assign_plan(ava: Session) -> str:
    response = ava.post("/clinician/patients/pat-ava/assign/phq-9", _tailor(ava))
    return response.headers["Location"].split("/CarePlan/")[1].split("?")[0]


def test_edit_a_task_due_time_and_instructions(store: Any, ava: Session) -> None:
    task = assign_once(store, due_in_days=3)
    path = f"/clinician/patients/pat-ava/assignments/Task/{task['id']}"
    page = ava.get(path)
    assert page.status_code == 200
    form = _form(page.text, "edit-form")
    new_day = _local_today() + timedelta(days=6)
    response = ava.post(
        path,
        {
            **form,
            "due_date": new_day.isoformat(),
            "time": "08:15",
            "instructions": "Before breakfast on Saturday.",
        },
    )
    assert response.status_code == 303 and "notice=edited" in response.headers["Location"]
    stored = store.read("Task", task["id"]).resource
    assert stored["description"] == "Before breakfast on Saturday."
    assert task_due(stored).astimezone(NEW_YORK) == datetime(
        new_day.year, new_day.month, new_day.day, 8, 15, tzinfo=NEW_YORK
    )


def test_edit_a_task_with_a_past_due_date_or_no_instructions(store: Any, ava: Session) -> None:
    task = assign_once(store, due_in_days=3)
    path = f"/clinician/patients/pat-ava/assignments/Task/{task['id']}"
    form = _form(ava.get(path).text, "edit-form")
    before = snapshot(store)
    past = ava.post(path, {**form, "due_date": (_local_today() - timedelta(days=1)).isoformat()})
    assert (
        past.status_code == 400 and "already passed" in past.text and 'id="e-due_date"' in past.text
    )
    empty = ava.post(path, {**form, "instructions": ""})
    assert empty.status_code == 400 and 'id="e-instructions"' in empty.text
    assert snapshot(store) == before


def test_change_a_plans_schedule_from_now_on(store: Any, ava: Session) -> None:
    plan_id = _assign_plan(ava)
    path = f"/clinician/patients/pat-ava/assignments/CarePlan/{plan_id}"
    form = _form(ava.get(path).text, "edit-form")
    start = _local_today() + timedelta(days=2)
    response = ava.post(
        path,
        {
            **form,
            "change_schedule": "1",
            "frequency": "weekly",
            "days": ["mon"],
            "start": start.isoformat(),
            "interval": "1",
            "end": "count",
            "count": "4",
        },
    )
    assert response.status_code == 303, response.text
    plan = store.read("CarePlan", plan_id).resource
    statuses = [a["detail"]["status"] for a in plan["activity"]]
    assert statuses == ["stopped", "scheduled"]
    assert plan["activity"][1]["detail"]["scheduledTiming"]["repeat"]["dayOfWeek"] == ["mon"]


def test_change_a_plans_schedule_to_end_before_it_starts(store: Any, ava: Session) -> None:
    plan_id = _assign_plan(ava)
    path = f"/clinician/patients/pat-ava/assignments/CarePlan/{plan_id}"
    form = _form(ava.get(path).text, "edit-form")
    before = snapshot(store)
    start = _local_today() + timedelta(days=4)
    response = ava.post(
        path,
        {
            **form,
            "change_schedule": "1",
            "start": start.isoformat(),
            "end": "until",
            "until": (start - timedelta(days=1)).isoformat(),
        },
    )
    assert response.status_code == 400 and "before it starts" in response.text
    assert snapshot(store) == before


def test_pause_resume_and_stop_a_plan(store: Any, ava: Session) -> None:
    plan_id = _assign_plan(ava)
    base = f"/clinician/patients/pat-ava/assignments/CarePlan/{plan_id}"
    assert "notice=paused" in ava.post(f"{base}/pause").headers["Location"]
    assert store.read("CarePlan", plan_id).resource["status"] == "on-hold"
    page = ava.get(base).text
    assert 'id="resume-button"' in page
    ava.post(f"{base}/resume")
    assert store.read("CarePlan", plan_id).resource["status"] == "active"
    response = ava.post(f"{base}/cancel", {"reason": "Goal reached"})
    assert "notice=stopped" in response.headers["Location"]
    plan = store.read("CarePlan", plan_id).resource
    assert plan["status"] == "revoked" and plan["note"][-1]["text"] == "Goal reached"
    open_tasks = iter_all(
        store, "Task", [("based-on", f"CarePlan/{plan_id}"), ("status", "requested")]
    )
    assert open_tasks == []
    assert f'id="assignment-CarePlan-{plan_id}"' not in ava.get("/clinician/patients/pat-ava").text


def test_cancel_a_task(store: Any, ava: Session) -> None:
    task = assign_once(store, due_in_days=3)
    response = ava.post(f"/clinician/patients/pat-ava/assignments/Task/{task['id']}/cancel")
    assert "notice=cancelled" in response.headers["Location"]
    assert store.read("Task", task["id"]).resource["status"] == "cancelled"


def test_skip_a_pathway_step(store: Any, ava: Session) -> None:
    page = ava.get(
        "/clinician/patients/pat-ava/pathways/panic-breathing-interoceptive-exposure"
    ).text
    response = ava.post(
        "/clinician/patients/pat-ava/pathways/panic-breathing-interoceptive-exposure",
        _form(page, "pathway-form"),
    )
    plan_id = response.headers["Location"].split("/CarePlan/")[1].split("?")[0]
    response = ava.post(f"/clinician/patients/pat-ava/assignments/CarePlan/{plan_id}/skip/0")
    assert "notice=skipped" in response.headers["Location"]
    plan = store.read("CarePlan", plan_id).resource
    assert plan["activity"][0]["detail"]["status"] in ("stopped", "cancelled")


def test_another_patients_assignment_is_not_reachable(store: Any, ava: Session) -> None:
    task = assign_once(store, patient="pat-ben", due_in_days=3)
    before = snapshot(store)
    assert ava.get(f"/clinician/patients/pat-ava/assignments/Task/{task['id']}").status_code == 404
    assert (
        ava.post(f"/clinician/patients/pat-ava/assignments/Task/{task['id']}/cancel").status_code
        == 404
    )
    assert snapshot(store) == before
