"""Review: one response readably, two side by side, session prep, and their view models."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from clinician_support import PHQ9, Session, assign_once, complete_phq9
from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)
from hw_fhir import catalog, review




@pytest.fixture
def two_phq9(store: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    start = datetime.now(timezone.utc) - timedelta(days=20)
    first = complete_phq9(
        store,
        assign_once(store, now=start, due_in_days=2),
        [3, 3, 2, 2, 2, 2, 1, 1, 0],
        when=start + timedelta(days=1),
    )
    later = start + timedelta(days=14)
    second = complete_phq9(
        store,
        assign_once(store, now=later, due_in_days=2),
        [1, 1, 1, 0, 1, 0, 0, 0, 2],
        when=later + timedelta(days=1),
    )
    return first, second


# -- view models ------------------------------------------------------------------------------


def test_response_view_puts_questions_and_answers_side_by_side(two_phq9: Any) -> None:
    questionnaire = catalog.get_questionnaire(PHQ9)
    view = review.response_view(questionnaire, two_phq9[0])
    rows = {r.link_id: r for r in view.rows}
    assert rows["phq9-1"].answers == ("Nearly every day",) and rows["phq9-1"].weight == "3"
    assert rows["phq9-9"].answers == ("Not at all",) and not rows["phq9-9"].flagged
    assert rows["phq9-total"].kind == "score" and rows["phq9-total"].answers == ("16",)
    assert rows["phq9-10"].answers == ()
    assert "phq9-intro" not in rows  # display text is not a question
    assert (view.total, view.band, view.instrument) == (16.0, "Moderately severe", "phq-9")


def test_response_view_flags_the_risky_answer(two_phq9: Any) -> None:
    view = review.response_view(catalog.get_questionnaire(PHQ9), two_phq9[1])
    assert [r.link_id for r in view.flagged] == ["phq9-9"]
    assert "scored 2 of 3" in view.flagged[0].flag_reason
    assert view.risks and view.total == 6.0 and view.band == "Mild"


def test_response_view_walks_repeating_groups() -> None:
    questionnaire = catalog.get_questionnaire(
        "http://hw-fhir.org/fhir/Questionnaire/thought-record|1.0.0"
    )
    response = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [
            {
                "linkId": "entry",
                "item": [{"linkId": "situation", "answer": [{"valueString": "Bus"}]}],
            },
            {
                "linkId": "entry",
                "item": [{"linkId": "situation", "answer": [{"valueString": "Work"}]}],
            },
        ],
    }
    rows = review.response_view(questionnaire, response).rows
    groups = [r for r in rows if r.kind == "group"]
    assert [g.text for g in groups] == [
        "Thought record entry (1 of 2)",
        "Thought record entry (2 of 2)",
    ]
    situations = [r for r in rows if r.link_id == "situation"]
    assert [s.answers for s in situations] == [("Bus",), ("Work",)]
    assert situations[0].key != situations[1].key and situations[0].depth == 1


@pytest.mark.parametrize(
    "answer, text",
    [
        ({"valueBoolean": True}, "Yes"),
        ({"valueBoolean": False}, "No"),
        ({"valueInteger": 7}, "7"),
        ({"valueDecimal": 7.5}, "7.5"),
        ({"valueCoding": {"code": "x", "display": "Ex"}}, "Ex"),
        ({"valueCoding": {"code": "x"}}, "x"),
        ({"valueQuantity": {"value": 30, "unit": "min"}}, "30 min"),
        ({"valueDateTime": "2026-03-01T20:15:00Z"}, "2026-03-01 20:15"),
        ({}, ""),
    ],
)
def test_answer_text(answer: dict[str, Any], text: str) -> None:
    assert review.answer_text(answer) == text


def test_compare_orders_by_time_and_marks_changes(two_phq9: Any) -> None:
    questionnaire = catalog.get_questionnaire(PHQ9)
    first, second = two_phq9
    comparison = review.compare_responses((questionnaire, second), (questionnaire, first))
    assert comparison.before.id == first["id"] and comparison.after.id == second["id"]
    assert comparison.change == -10.0
    assert "Response" in comparison.labels and "Reliable improvement" in comparison.labels
    rows = {r.key: r for r in comparison.rows}
    assert rows["phq9-1"].changed and rows["phq9-1"].before == ("Nearly every day",)
    assert not rows["phq9-10"].changed
    assert rows["phq9-9"].flagged
    assert comparison.changed_count == 10  # all nine items and the total


def test_compare_refuses_different_activities(two_phq9: Any) -> None:
    from hw_fhir.errors import InvalidInput

    gad = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://hw-fhir.org/fhir/Questionnaire/gad-7|1.0.0",
    }
    with pytest.raises(InvalidInput):
        review.compare_responses((catalog.get_questionnaire(PHQ9), two_phq9[0]), ({}, gad))


def test_library_entries_keep_the_newest_version_and_filter() -> None:
    questionnaires = catalog.load_questionnaires()
    older = dict(questionnaires[0], version="0.9.0", title="Old")
    entries = review.library_entries([older, *questionnaires])
    assert len(entries) == len(questionnaires)
    assert all(e.title != "Old" for e in entries)
    found = review.filter_library(entries, text="thought record")
    assert [e.id for e in found] == ["thought-record"]
    assert (
        review.filter_library(entries, problem_area="ptsd", media="form", kind="measure")[0].id
        == "pcl-5"
    )


def test_assign_defaults_by_kind() -> None:
    now = datetime(2026, 3, 7, 23, 30, tzinfo=timezone.utc)  # already the 8th in Berlin
    get = catalog.get_questionnaire
    measure = review.assign_defaults(
        get("http://hw-fhir.org/fhir/Questionnaire/gad-7|1.0.0"),
        timezone_name="Europe/Berlin",
        now=now,
    )
    assert (measure.frequency, measure.interval, measure.count) == ("every-n-days", 14, 6)
    assert measure.start == date(2026, 3, 9)
    assert measure.instructions == review.MEASURE_INSTRUCTIONS
    assert measure.schedule().describe() == "Every 14 days at 19:00, 6 times"
    reading = review.assign_defaults(
        get("http://hw-fhir.org/fhir/Questionnaire/reading-cbt-model|1.0.0"),
        timezone_name="UTC",
        now=now,
    )
    assert reading.frequency == "once" and reading.start == date(2026, 3, 10)
    assert reading.rationale.startswith("Understanding the cognitive model")


def test_preview_rows_fold_help_text_into_its_item() -> None:
    questionnaire = {
        "item": [
            {
                "linkId": "a",
                "type": "string",
                "text": "Q",
                "required": True,
                "item": [
                    {
                        "linkId": "a-help",
                        "type": "display",
                        "text": "Some help",
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl",
                                "valueCodeableConcept": {"coding": [{"code": "help"}]},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    rows = review.preview_rows(questionnaire)
    assert [(r.link_id, r.help, r.required) for r in rows] == [("a", "Some help", True)]


def test_patient_zone_reads_the_timezone_extension() -> None:
    patient = {"extension": [{"url": review.TIMEZONE_EXTENSION, "valueCode": "Europe/Berlin"}]}
    assert review.patient_zone(patient) == "Europe/Berlin"
    bad = {"extension": [{"url": review.TIMEZONE_EXTENSION, "valueCode": "Mars/Olympus"}]}
    assert (
        review.patient_zone(bad) == "UTC"
        and review.patient_zone(None, "Europe/Paris") == "Europe/Paris"
    )


# -- pages ------------------------------------------------------------------------------------


def test_response_page(ava: Session, two_phq9: Any) -> None:
    second = two_phq9[1]
    page = ava.get(f"/clinician/patients/pat-ava/responses/{second['id']}")
    assert page.status_code == 200
    text = page.text
    assert re.search(r'id="total">6<', text) and "Mild" in text
    flagged = re.findall(r'<tr class="flagged[^"]*"[^>]*>(.*?)</tr>', text, re.S)
    assert (
        len(flagged) == 1
        and "better off dead" in flagged[0]
        and "More than half the days" in flagged[0]
    )
    assert 'id="response-flag-' in text  # the active flag, with its acknowledge form
    assert f"a={two_phq9[0]['id']}" in text  # compare with the other completion


def test_response_of_another_patient_is_404(store: Any, ava: Session) -> None:
    task = assign_once(
        store, patient="pat-ben", due_in_days=2, now=datetime.now(timezone.utc) - timedelta(days=1)
    )
    response = complete_phq9(store, task, [0] * 9)
    assert ava.get(f"/clinician/patients/pat-ava/responses/{response['id']}").status_code == 404
    assert ava.get(f"/clinician/patients/pat-ben/responses/{response['id']}").status_code == 200


def test_compare_page(ava: Session, two_phq9: Any) -> None:
    first, second = two_phq9
    page = ava.get("/clinician/patients/pat-ava/compare", a=second["id"], b=first["id"])
    assert page.status_code == 200
    assert re.search(r'id="score-change">-10<', page.text)
    assert page.text.count('class="changed') == 10
    assert ava.get("/clinician/patients/pat-ava/compare", a=first["id"]).status_code == 400
    assert (
        ava.get("/clinician/patients/pat-ava/compare", a=first["id"], b="nope").status_code == 404
    )


def test_session_prep_summarises_since_the_last_session(store: Any, ava: Session) -> None:
    now = datetime.now(timezone.utc)
    done = assign_once(store, now=now - timedelta(days=6), due_in_days=2)
    complete_phq9(store, done, [1, 1, 1, 1, 1, 1, 1, 1, 1], when=now - timedelta(days=5))
    assign_once(
        store,
        "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0",
        now=now - timedelta(days=6),
        due_in_days=1,
    )
    since = (now - timedelta(days=7)).date()
    page = ava.get("/clinician/patients/pat-ava/session-prep", since=since.isoformat())
    assert page.status_code == 200
    text = page.text
    done_block = text[text.index('id="prep-done"') : text.index('id="prep-not-done"')]
    assert "PHQ-9" in done_block and "Done on time" in done_block
    not_done = text[text.index('id="prep-not-done"') :]
    assert "Daily mood log" in not_done[:800] and "Overdue" in not_done[:800]
    for heading in ("A win", "What was done", "What was hard", "What was learned", "What next"):
        assert f"<h3>{heading}</h3>" in text
    assert 'id="prep-risks"' in text  # item 9 answered above 0: an active flag
    assert "Review the safety plan first" in text
    assert "@media print" in ava.client.get("/static/clinician/clinician.css").text


def test_session_prep_default_date_is_the_last_assignment_day(store: Any, ava: Session) -> None:
    now = datetime.now(timezone.utc)
    assign_once(store, now=now - timedelta(days=9), due_in_days=3)
    page = ava.get("/clinician/patients/pat-ava/session-prep").text
    assert f'value="{(now - timedelta(days=9)).date().isoformat()}"' in page


@pytest.mark.parametrize(
    "since, words", [("yesterday-ish", "is not a date"), ("2999-01-01", "cannot be in the future")]
)
def test_session_prep_bad_date(ava: Session, since: str, words: str) -> None:
    page = ava.get("/clinician/patients/pat-ava/session-prep", since=since)
    assert page.status_code == 400 and words in page.text and 'id="e-since"' in page.text
