"""Defaults and wording, round 2: as-needed logs, schedule fields, reminder texts in sentence
case, the patient's word for "homework" explained, times labelled with their zone, and the
acknowledgement note visible after a risk flag is acknowledged."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from clinician_support import Session, assign_once, complete_phq9, form_values, snapshot
from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)

from hw_fhir.activity_defaults import is_as_needed
from hw_fhir.reminders import default_message




@pytest.mark.parametrize("purpose", ["assigned", "before-due", "overdue", "risk-alert"])
def test_every_reminder_text_starts_in_sentence_case(purpose: str) -> None:
    message = default_message(kind="reminder", purpose=purpose, channel="email", to="a@b.c",
                              recipient="Patient/pat-ava", practice="your care team",
                              link="https://hw.example.org/p/x", idempotency_key="k")
    for text in (message.subject, message.text):
        assert text[:1].isupper(), text
        assert "Ava" not in text and "PHQ" not in text  # no PHI, no clinical content
    if purpose == "overdue":
        assert message.text.startswith("Your care team: your activity is still open")


def _selected(page: str, name: str) -> str:
    block = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', page, re.S)
    assert block
    chosen = re.search(r'<option value="([^"]*)"[^>]*selected', block.group(1))
    assert chosen
    return chosen.group(1)


def test_the_thought_record_defaults_to_once_with_as_needed_instructions(ava: Session) -> None:
    page = ava.get("/clinician/patients/pat-ava/assign/thought-record").text
    assert _selected(page, "frequency") == "once"
    assert "each time it happens" in page
    assert re.search(r'name="count" id="f-count"[^>]*value="7"', page)  # ready if switched
    assert "Days of the week" in page and "(weekly only)" not in page
    assert "clinician/schedule.js" in page and "<script>" not in page.split("schedule.js")[0][-200:]
    assert "The word the patient sees" in page
    mood = ava.get("/clinician/patients/pat-ava/assign/mood-log").text
    assert _selected(mood, "frequency") == "daily"


def test_a_copy_of_an_as_needed_log_is_as_needed_too() -> None:
    base = "http://hw-fhir.org/fhir/Questionnaire/"
    assert is_as_needed({"url": base + "thought-record"})
    assert is_as_needed({"url": "https://x/q/mine", "derivedFrom": [base + "urge-log|1.0.0"]})
    assert not is_as_needed({"url": base + "mood-log"})


def test_switching_to_every_day_is_one_choice_and_days_are_ignored(store: Any, ava: Session) -> None:
    form = {**form_values(ava.get("/clinician/patients/pat-ava/assign/thought-record").text,
                    "assign-form"), "frequency": "daily", "days": ["mon", "wed"]}
    response = ava.post("/clinician/patients/pat-ava/assign/thought-record", form)
    assert response.status_code == 303, response.text
    plan_id = response.headers["Location"].split("/CarePlan/")[1].split("?")[0]
    plan = store.read("CarePlan", plan_id).resource
    timing = plan["activity"][0]["detail"]["scheduledTiming"]["repeat"]
    assert timing.get("count") == 7 and timing.get("frequency", 1) == 1
    assert "dayOfWeek" not in timing


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"frequency": "daily", "end": "count", "count": "lots"}, "number of times"),
        ({"frequency": "weekly", "days": []}, "day"),
        ({"frequency": "once", "start": "2001-01-01"}, "in the past"),
    ],
)
def test_bad_schedules_are_refused_and_nothing_is_stored(
    store: Any, ava: Session, changes: dict[str, Any], message: str
) -> None:
    before = snapshot(store)
    form = {**form_values(ava.get("/clinician/patients/pat-ava/assign/thought-record").text,
                    "assign-form"), **changes}
    response = ava.post("/clinician/patients/pat-ava/assign/thought-record", form)
    assert response.status_code == 400
    assert message in response.text and "Traceback" not in response.text
    assert snapshot(store) == before


def test_acknowledged_flags_keep_who_when_and_the_note(store: Any, ava: Session) -> None:
    start = datetime.now(timezone.utc) - timedelta(days=3)
    task = assign_once(store, now=start, due_in_days=2)
    complete_phq9(store, task, [1, 1, 1, 1, 1, 1, 1, 1, 2], when=start + timedelta(days=1))
    page = ava.get("/clinician/patients/pat-ava").text
    # labelled with the clinician's zone (here the practice default, UTC), like every clinician page
    assert re.search(r"Answered \w{3} \d+ \w{3} \d{4}, \d\d:\d\d UTC", page)
    assert 'id="acknowledged-flags"' not in page
    flag = next(iter(store.search("Flag", [("status", "active")]).resources))
    response = ava.post(f"/clinician/patients/pat-ava/flags/{flag['id']}/acknowledge",
                        {"note": "Called her, safe, plan reviewed"})
    assert response.status_code == 303
    after = ava.client.get(response.headers["Location"]).text
    history = after[after.index('id="acknowledged-flags"'):]
    row = history[history.index(f'id="ack-{flag["id"]}"'):]
    row = row[: row.index("</tr>")]
    assert "Called her, safe, plan reviewed" in row and "Dr. Elena Rivera" in row
    assert re.search(r"\d\d:\d\d UTC", row)
    # no caption naming another zone than the one the times are shown in
    assert "patient's time zone" not in history[: history.index("</section>")]
