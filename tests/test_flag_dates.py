"""Risk Flags of responses that arrive or are scored late are dated when the patient answered:
Flag.period.start is the response's authored time, the dashboard orders and labels the flags by
it, and says when the flag was raised when that was much later (real SQLite, the app's pages)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)
from clinician_support import PHQ9, Session, assign_once, phq9_answers

from hw_fhir import catalog
from hw_fhir.completion import submit_response
from hw_fhir.outcomes import record_scores


def _answer(store: Any, task: dict[str, Any], item9: int, *, answered: datetime,
            scored: datetime) -> dict[str, Any]:
    """The patient answers at ``answered``; the response is scored at ``scored``."""
    questionnaire = catalog.get_questionnaire(PHQ9)
    result = submit_response(store, f"Task/{task['id']}",
                             phq9_answers(questionnaire, [1] * 8 + [item9]),
                             patient="Patient/pat-ava", now=answered)
    [flag] = record_scores(store, result.response, task=result.task, now=scored).flags
    return flag


def test_the_dashboard_orders_and_labels_flags_by_when_the_patient_answered(
    store: Any, ava: Session
) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    # answered four days ago on a phone that was offline; synced and scored only now
    late = _answer(store, assign_once(store, now=now - timedelta(days=6)), 2,
                   answered=now - timedelta(days=4), scored=now)
    # answered and scored two days ago
    timely = _answer(store, assign_once(store, now=now - timedelta(days=6)), 1,
                     answered=now - timedelta(days=2), scored=now - timedelta(days=2))
    assert late["period"]["start"] == (now - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")

    page = ava.get("/clinician/patients/pat-ava").text
    flags = page[page.index('id="risk-flags"'):page.index("</section>", page.index('id="risk-flags"'))]
    assert flags.index(f'id="flag-{timely["id"]}"') < flags.index(f'id="flag-{late["id"]}"')
    late_row = flags[flags.index(f'id="flag-{late["id"]}"'):]
    answered_day = f"{(now - timedelta(days=4)):%a} {(now - timedelta(days=4)).day}"
    assert re.search(rf"Answered {answered_day} \w{{3}} \d{{4}}, \d\d:\d\d UTC", late_row)
    assert "flagged later" in late_row.split("</div>")[0]
    timely_row = flags[flags.index(f'id="flag-{timely["id"]}"'):]
    assert "flagged later" not in timely_row.split("</div>")[0]

    prep = ava.get("/clinician/patients/pat-ava/session-prep").text
    assert re.search(rf"answered {answered_day} \w{{3}} \d{{4}}, \d\d:\d\d UTC, flagged ", prep)
