""""Needs attention" on the clinician panel: a worsening measure is flagged when the latest score
rose by the instrument's reliable change (hw_fhir.scoring.mbc.THRESHOLDS) since the first score
or since the previous one, and the panel says which comparison and from when (real SQLite, the
app's pages)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from clinician_fixtures import app, store  # noqa: F401  (fixtures)
from clinician_support import assign_once, complete_phq9, open_launch

from hw_fhir.review import panel, patient_zone
from hw_fhir.scoring.mbc import THRESHOLDS


def _weights(total: int) -> list[int]:
    """PHQ-9 answers summing to ``total`` with item 9 unanswered-as-0 (no risk flag)."""
    weights = [0] * 9
    for n in range(total):
        weights[n % 8] += 1
    assert sum(weights) == total and max(weights) <= 3
    return weights


def _history(store: Any, totals: list[int], patient: str = "pat-ava") -> list[datetime]:
    now = datetime.now(timezone.utc)
    days = []
    for n, total in enumerate(totals):
        when = now - timedelta(days=7 * (len(totals) - n))
        task = assign_once(store, patient=patient, now=when - timedelta(days=1), due_in_days=2)
        complete_phq9(store, task, _weights(total), when=when)
        days.append(when)
    return days


def _patient_day(store: Any, moment: datetime, patient: str = "pat-ava") -> str:
    """The day of ``moment`` in the patient's zone: the panel says the patient's days."""
    local = moment.astimezone(ZoneInfo(patient_zone(store.read("Patient", patient).resource)))
    return f"{local:%a} {local.day} {local:%b %Y}"


def _reasons(app: Any) -> str:
    session = open_launch(app, app.test_client(), patient=None)
    page = session.get("/clinician/panel").text
    row = page[page.index('id="panel-pat-ava"'):]
    return row[: row.index("</tr>")]


def test_a_steady_rise_is_flagged_against_the_first_score(app: Any, store: Any) -> None:
    # each step under the PHQ-9 reliable change, the whole rise well over it
    steps = [3, 8, 13, 17]
    assert all(b - a < THRESHOLDS["phq-9"].reliable_change for a, b in zip(steps, steps[1:]))
    days = _history(store, steps)
    [entry] = [e for e in panel(store, "Practitioner/dr-rivera") if e.patient == "Patient/pat-ava"]
    assert entry.worsening
    row = _reasons(app)
    assert f"PHQ-9 up 14 since first score on {_patient_day(store, days[0])}" in row


def test_a_jump_from_the_previous_score_is_flagged_when_the_first_was_higher(
    app: Any, store: Any
) -> None:
    # 12 → 2 → 10: below the first score, but 8 up from the previous one
    days = _history(store, [12, 2, 10])
    row = _reasons(app)
    assert f"PHQ-9 up 8 since previous score on {_patient_day(store, days[1])}" in row
    assert "since first score" not in row


def test_a_small_rise_is_not_flagged(app: Any, store: Any) -> None:
    _history(store, [8, 10, 12])  # +4 in all: under the PHQ-9 reliable change (6)
    [entry] = [e for e in panel(store, "Practitioner/dr-rivera") if e.patient == "Patient/pat-ava"]
    assert entry.worsening == ()
    assert " up " not in _reasons(app)


def test_the_patient_dashboard_says_the_same(app: Any, store: Any) -> None:
    days = _history(store, [12, 2, 10])
    # the dashboard's measure dates are the patient's days, as the panel's
    page = open_launch(app, app.test_client()).get("/clinician/patients/pat-ava").text
    said = page[page.index('id="worsening-phq-9"'):]
    assert f"PHQ-9 up 8 since previous score on {_patient_day(store, days[1])}" in said[:400]


def test_worsening_uses_each_instruments_reliable_change() -> None:
    from hw_fhir.scoring.mbc import worsening

    gad = worsening("gad-7", [("2026-01-05", 3), ("2026-01-19", 5), ("2026-02-02", 7)])
    assert [(r.since, r.rise, str(r.point.when)) for r in gad] == [("first", 4, "2026-01-05")]
    both = worsening("phq-9", [("2026-01-05", 3), ("2026-01-19", 4), ("2026-02-02", 12)])
    assert [(r.since, r.rise) for r in both] == [("first", 9), ("previous", 8)]
    two = worsening("phq-9", [("2026-01-05", 3), ("2026-01-19", 9)])
    assert [r.since for r in two] == ["first"]  # two scores: the first is the previous
    assert worsening("pcl-5", [("2026-01-05", 30), ("2026-01-19", 39)]) == ()  # under 10
    assert worsening("phq-9", [("2026-01-05", 3)]) == ()
