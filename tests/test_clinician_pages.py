"""Clinician pages: who may see them, the dashboard, flags, the panel, the landing page, CSRF."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

from clinician_support import (PATIENT_ONLY_SCOPE, Session, assign_once, complete_phq9, open_launch,
                               snapshot)
from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)




def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


# -- access ----------------------------------------------------------------------------------


def test_no_launch_gets_a_clear_401(app: Any) -> None:
    response = app.test_client().get("/clinician/patients/pat-ava")
    assert response.status_code == 401
    assert "Open hw-fhir from your EHR" in response.text
    assert "Ava" not in response.text


def test_a_launch_of_another_browser_session_is_refused(app: Any, ava: Session) -> None:
    stranger = app.test_client()
    response = stranger.get("/clinician/patients/pat-ava", query_string={"launch": ava.launch_id})
    assert response.status_code == 401


def test_patients_cannot_open_clinician_pages(app: Any) -> None:
    session = open_launch(app, app.test_client(), user_type="Patient", patient="pat-ava")
    response = session.get("/clinician/patients/pat-ava")
    assert response.status_code == 403
    assert "for clinicians" in response.text


def test_patient_level_launch_opens_only_its_patient(app: Any) -> None:
    session = open_launch(app, app.test_client(), scope=PATIENT_ONLY_SCOPE)
    assert session.get("/clinician/patients/pat-ava").status_code == 200
    other = session.get("/clinician/patients/pat-ben")
    assert other.status_code == 403 and "another patient" in other.text
    assert session.get("/clinician/panel").status_code == 403


def test_user_level_launch_may_open_other_patients(ava: Session) -> None:
    response = ava.get("/clinician/patients/pat-ben")
    assert response.status_code == 200
    assert 'class="patient-name">Ben Schmidt<' in response.text


def test_unknown_patient_is_404(ava: Session) -> None:
    assert ava.get("/clinician/patients/nobody").status_code == 404


def test_index_goes_to_the_patient_in_context_or_the_panel(app: Any, ava: Session) -> None:
    response = ava.get("/clinician/")
    assert response.status_code == 303
    assert f"/clinician/patients/pat-ava?launch={ava.launch_id}" in response.headers["Location"]
    no_patient = open_launch(app, app.test_client(), patient=None)
    response = no_patient.get("/clinician/")
    assert "/clinician/panel" in response.headers["Location"]


def test_pages_are_framable_by_the_ehr_and_not_cached_by_referrer(ava: Session) -> None:
    response = ava.get("/clinician/patients/pat-ava")
    assert "X-Frame-Options" not in response.headers
    assert "frame-ancestors" in response.headers["Content-Security-Policy"]


# -- dashboard --------------------------------------------------------------------------------


def test_empty_dashboard_invites_the_first_assignment(ava: Session) -> None:
    page = ava.get("/clinician/patients/pat-ava").text
    assert 'id="no-assignments"' in page and 'id="no-measures"' in page
    assert 'id="risk-flags"' not in page
    assert f"/clinician/patients/pat-ava/assign?launch={ava.launch_id}" in page


def test_dashboard_shows_scores_band_change_and_chart(store: Any, ava: Session) -> None:
    start = datetime.now(timezone.utc) - timedelta(days=20)  # inside the 28-day window
    first = assign_once(store, now=start, due_in_days=2)
    complete_phq9(store, first, [3, 3, 2, 2, 2, 2, 2, 1, 0], when=start + timedelta(days=1))
    second = assign_once(store, now=start + timedelta(days=14), due_in_days=2)
    complete_phq9(store, second, [1, 1, 1, 1, 0, 0, 0, 0, 0], when=start + timedelta(days=15))
    page = ava.get("/clinician/patients/pat-ava").text
    assert re.search(r'id="score-phq-9">4<', page)
    measure = page[page.index('id="measure-phq-9"') :]
    assert "Minimal" in measure[:800]
    assert "<strong>-13</strong>" in measure
    for label in ("Response", "Remission", "Reliable improvement"):
        assert label in measure[:1500]
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert 'id="chart-phq-9"' in svg and svg.count('class="point"') == 2
    assert 'class="threshold-remission"' in svg
    # adherence: two assigned, two done on time
    assert re.search(r'id="completion-rate">100%<', page)
    assert re.search(r'id="streak">2<', page)
    assert "Show the numbers" in page


def test_dashboard_lists_active_assignments_with_next_due(store: Any, ava: Session) -> None:
    task = assign_once(store, due_in_days=3)
    page = ava.get("/clinician/patients/pat-ava").text
    row = page[page.index(f'id="assignment-Task-{task["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert "PHQ-9" in row and "Assigned" in row and "Change" in row
    assert "none yet" in row


def test_risk_flag_first_and_acknowledge(app: Any, store: Any, ava: Session) -> None:
    start = datetime.now(timezone.utc) - timedelta(days=3)
    task = assign_once(store, now=start, due_in_days=2)
    complete_phq9(store, task, [1, 1, 1, 1, 1, 1, 1, 1, 2], when=start + timedelta(days=1))
    page = ava.get("/clinician/patients/pat-ava").text
    assert page.index('id="risk-flags"') < page.index('id="adherence"')
    flag = next(iter(store.search("Flag", [("status", "active")]).resources))
    assert f'id="flag-{flag["id"]}"' in page
    assert "item 9" in _text(page)
    response = ava.post(
        f"/clinician/patients/pat-ava/flags/{flag['id']}/acknowledge",
        {"note": "Called her, safe, plan reviewed"},
    )
    assert response.status_code == 303
    assert "notice=flag-acknowledged" in response.headers["Location"]
    stored = store.read("Flag", flag["id"]).resource
    assert stored["status"] == "inactive"
    assert "Called her, safe" in str(stored["extension"])
    after = ava.client.get(response.headers["Location"]).text
    assert 'id="risk-flags"' not in after and 'id="notice"' in after


def test_acknowledging_without_csrf_is_refused_and_changes_nothing(
    store: Any, ava: Session
) -> None:
    start = datetime.now(timezone.utc) - timedelta(days=3)
    task = assign_once(store, now=start, due_in_days=2)
    complete_phq9(store, task, [1, 1, 1, 1, 1, 1, 1, 1, 3], when=start + timedelta(days=1))
    flag = store.search("Flag", [("status", "active")]).resources[0]
    before = snapshot(store)
    response = ava.post(
        f"/clinician/patients/pat-ava/flags/{flag['id']}/acknowledge", {}, csrf=False
    )
    assert response.status_code == 403
    bad = ava.post(
        f"/clinician/patients/pat-ava/flags/{flag['id']}/acknowledge", {"csrf_token": "forged"}
    )
    assert bad.status_code == 403
    assert snapshot(store) == before


def test_a_flag_of_another_patient_cannot_be_acknowledged_here(store: Any, ava: Session) -> None:
    start = datetime.now(timezone.utc) - timedelta(days=3)
    task = assign_once(store, patient="pat-ben", now=start, due_in_days=2)
    complete_phq9(store, task, [0, 0, 0, 0, 0, 0, 0, 0, 1], when=start + timedelta(days=1))
    flag = store.search("Flag", [("status", "active")]).resources[0]
    before = snapshot(store)
    response = ava.post(f"/clinician/patients/pat-ava/flags/{flag['id']}/acknowledge", {})
    assert response.status_code == 404
    assert snapshot(store) == before


def test_patient_banner_follows_need_patient_banner(app: Any) -> None:
    hidden = open_launch(app, app.test_client(), need_patient_banner=False)
    assert 'class="patient-banner"' not in hidden.get("/clinician/patients/pat-ava").text
    shown = open_launch(app, app.test_client(), need_patient_banner=True)
    assert 'class="patient-banner"' in shown.get("/clinician/patients/pat-ava").text


# -- landing page ---------------------------------------------------------------------------


def test_landing_page_is_the_dashboard_for_a_clinician(store: Any, ava: Session) -> None:
    assign_once(store, due_in_days=3)
    page = ava.get("/app").text
    assert 'class="patient-name">Ava Nguyen<' in page
    assert 'id="assignments"' in page and 'id="assign-button"' in page
    assert 'id="signed-in-user">Dr. Elena Rivera<' in page
    assert "EHR launch" in page
    assert "clinician/clinician.css" in page


def test_landing_page_without_a_patient_is_the_panel(app: Any, store: Any) -> None:
    assign_once(store, due_in_days=3, patient="pat-ben")
    session = open_launch(app, app.test_client(), patient=None)
    page = session.get("/app").text
    assert 'id="panel"' in page and "Ben Schmidt" in page


def test_landing_page_for_a_patient_opens_the_patients_own_pages(app: Any) -> None:
    # an EHR launch by the patient (portal): their own pages, not the clinician side (issue 17)
    session = open_launch(app, app.test_client(), user_type="Patient", patient="pat-ava")
    landing = session.get("/app")
    assert landing.status_code == 302 and "/my/launch" in landing.headers["Location"]
    signed_in = session.client.get(landing.headers["Location"])
    assert signed_in.status_code == 302 and signed_in.headers["Location"].endswith("/my/")
    page = session.client.get("/my/").text
    assert "<h1>Your " in page and 'id="assignments"' not in page


# -- panel ------------------------------------------------------------------------------------


def test_panel_puts_risk_first_then_missed_homework(app: Any, store: Any) -> None:
    from hw_fhir.plans import sweep_overdue

    now = datetime.now(timezone.utc)
    # Ben: missed one; Ava: a risk flag; both are Dr Rivera's patients
    missed = assign_once(store, patient="pat-ben", now=now - timedelta(days=10), due_in_days=1)
    sweep_overdue(store, now=now)
    assert store.read("Task", missed["id"]).resource["status"] == "failed"
    task = assign_once(store, now=now - timedelta(days=3), due_in_days=2)
    complete_phq9(store, task, [0, 0, 0, 0, 0, 0, 0, 0, 1], when=now - timedelta(days=2))
    session = open_launch(app, app.test_client(), patient=None)
    page = session.get("/clinician/panel").text
    assert page.index('id="panel-pat-ava"') < page.index('id="panel-pat-ben"')
    ben = page[page.index('id="panel-pat-ben"') :]
    assert "1 missed" in ben[:600]
    assert "1 active risk flag" in page[page.index('id="panel-pat-ava"') :][:600]


def test_quick_picks_on_a_fresh_dashboard(ava: Session, store: Any) -> None:
    page = ava.get("/clinician/patients/pat-ava").text
    picks = page[page.index('id="quick-picks"') :]
    assert "PHQ-9 every 2 weeks" in picks[:2000]
    assert f"/clinician/patients/pat-ava/assign/phq-9?launch={ava.launch_id}" in picks[:2000]
    assign_once(store, due_in_days=3)
    assert 'id="quick-picks"' not in ava.get("/clinician/patients/pat-ava").text


def test_calendar_and_dates_are_the_patients_local_days(store: Any) -> None:
    from hw_fhir.review import patient_dashboard

    # due 21:00 in New York (EDT) is already the next day in UTC
    now = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
    from hw_fhir.assignment import Assignment, assign
    from hw_fhir.schedule import Schedule

    assign(
        store,
        Assignment(
            patient="pat-ava",
            practitioner="dr-rivera",
            activity="phq-9",
            schedule=Schedule(
                frequency="once",
                start=date(2026, 3, 11),
                timezone="America/New_York",
                time_of_day="21:00",
            ),
            instructions="x",
        ),
        now=now,
    )
    local = patient_dashboard(store, "pat-ava", now=now, zone="America/New_York")
    utc = patient_dashboard(store, "pat-ava", now=now, zone="UTC")
    assert local.calendar.rows == (("2026-03-11", "Due later"),)
    assert utc.calendar.rows == (("2026-03-12", "Due later"),)


def test_a_plans_next_due_comes_from_its_schedule_when_done_early(store: Any, ava: Session) -> None:
    from hw_fhir.assignment import Assignment, assign
    from hw_fhir.review import patient_dashboard
    from hw_fhir.schedule import Schedule

    now = datetime.now(timezone.utc)
    start = (now + timedelta(days=1)).date()
    result = assign(
        store,
        Assignment(
            patient="pat-ava",
            practitioner="dr-rivera",
            activity="phq-9",
            instructions="x",
            schedule=Schedule(
                frequency="every-n-days", interval=14, count=3, start=start, timezone="UTC"
            ),
        ),
        now=now,
    )
    complete_phq9(store, result.tasks[0], [0] * 9, when=now)  # done a day early
    row = next(
        r for r in patient_dashboard(store, "pat-ava", now=now).assignments if r.kind == "plan"
    )
    assert row.title == "PHQ-9" and row.done == 1
    assert row.next_due is not None and row.next_due.startswith(
        (start + timedelta(days=14)).isoformat()
    )


def test_dashboard_shows_the_last_reminder_and_its_delivery(store: Any, ava: Session) -> None:
    task = assign_once(store, due_in_days=3)
    other = assign_once(store, due_in_days=4)
    for sent, status, about in (
        ("2026-03-01T08:00:00Z", "completed", task),
        ("2026-03-02T08:00:00Z", "not-done", task),
        ("2026-03-05T08:00:00Z", "completed", other),
    ):
        store.create(
            {
                "resourceType": "Communication",
                "status": status,
                "sent": sent,
                "subject": {"reference": "Patient/pat-ava"},
                "about": [{"reference": f"Task/{about['id']}"}],
                "medium": [{"coding": [{"code": "email"}]}],
            }
        )
    page = ava.get("/clinician/patients/pat-ava").text
    row = page[page.index(f'id="assignment-Task-{task["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert "Mon 2 Mar 2026" in row and "not-done" in row and "none yet" not in row


def test_panel_puts_worsening_scores_before_missed_homework(app: Any, store: Any) -> None:
    from hw_fhir.plans import sweep_overdue

    now = datetime.now(timezone.utc)
    for days, weights in ((20, [0, 1, 0, 1, 0, 1, 0, 1, 0]), (6, [2, 2, 2, 2, 2, 1, 1, 1, 0])):
        task = assign_once(store, patient="pat-ben", now=now - timedelta(days=days), due_in_days=2)
        complete_phq9(store, task, weights, when=now - timedelta(days=days - 1))
    assign_once(store, patient="pat-ava", now=now - timedelta(days=10), due_in_days=1)
    sweep_overdue(store, now=now)
    session = open_launch(app, app.test_client(), patient=None)
    page = session.get("/clinician/panel").text
    assert page.index('id="panel-pat-ben"') < page.index('id="panel-pat-ava"')
    assert re.search(r"Worse: PHQ-9 up 9 since first score on \w{3} \d+ \w{3} \d{4} \(4 → 13\)", page)


# -- sharing scores with the patient ----------------------------------------------------------


def _shared(store: Any, pid: str = "pat-ava") -> list[Any]:
    return [
        e.get("valueBoolean")
        for e in store.read("Patient", pid).resource.get("extension") or []
        if e.get("url") == "http://hw-fhir.org/fhir/StructureDefinition/share-scores-with-patient"
    ]


def test_scores_are_private_until_the_clinician_shares_them(
    app: Any, store: Any, ava: Session
) -> None:
    page = ava.get("/clinician/patients/pat-ava").text
    assert 'id="share-scores-yes"' in page and "Scores are not shown to the patient" in page
    response = ava.post("/clinician/patients/pat-ava/share-scores", {"share": "yes"})
    assert response.status_code == 303
    assert "notice=scores-shared" in response.headers["Location"]
    assert _shared(store) == [True]
    after = ava.client.get(response.headers["Location"]).text
    assert 'id="share-scores-no"' in after and "sees their scores" in after
    stop = ava.post("/clinician/patients/pat-ava/share-scores", {"share": "no"})
    assert stop.status_code == 303 and _shared(store) == [False]  # one extension, updated


def test_sharing_scores_refuses_bad_input_forgery_and_other_patients(
    app: Any, store: Any, ava: Session
) -> None:
    before = snapshot(store)
    bad = ava.post("/clinician/patients/pat-ava/share-scores", {"share": "maybe"})
    assert bad.status_code == 400 and "Choose whether" in bad.text
    assert ava.post(
        "/clinician/patients/pat-ava/share-scores", {"share": "yes"}, csrf=False
    ).status_code == 403
    only_ava = open_launch(app, app.test_client(), scope=PATIENT_ONLY_SCOPE)
    other = only_ava.post("/clinician/patients/pat-ben/share-scores", {"share": "yes"})
    assert other.status_code == 403
    assert snapshot(store) == before
