"""The patient's list says the day a homework was done in the patient's own time zone."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from hw_fhir.store import open_store
from smart_app.patient.todo import todo_list

SDC = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"


def test_done_lately_uses_the_patient_zone(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    try:
        task = {
            "resourceType": "Task", "id": "t-late", "status": "completed", "intent": "order",
            "code": {"coding": [{"system": SDC, "code": "complete-questionnaire"}]},
            "for": {"reference": "Patient/p1"},
            "input": [{"type": {"coding": [{"system": SDC, "code": "questionnaire"}]},
                       "valueCanonical": "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0"}],
            # 23:30 UTC on Friday 4 Dec is already Saturday 5 Dec in Berlin
            "executionPeriod": {"start": "2026-12-04T23:00:00Z", "end": "2026-12-04T23:30:00Z"},
        }
        now = datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc)
        berlin = todo_list(store, [task], now=now, zone=ZoneInfo("Europe/Berlin"))
        [done] = berlin.done
        assert done.done_at is not None and done.done_at.date().isoformat() == "2026-12-05"
        utc = todo_list(store, [task], now=now, zone=timezone.utc)
        assert utc.done[0].done_at.date().isoformat() == "2026-12-04"
    finally:
        store.dispose()
