"""Shared benchmark data: Tasks spread over patients, loaded through transaction Bundles."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any, Iterator

STATUSES = ["requested", "requested", "in-progress", "completed", "completed", "failed", "cancelled"]


def tasks(n: int, patients: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Yield n SDC Tasks for `patients` patients (ids pat-0 … pat-N)."""
    rnd = random.Random(seed)
    for i in range(n):
        pid = f"pat-{rnd.randrange(patients)}"
        day = 1 + i % 28
        yield {
            "resourceType": "Task",
            "id": str(uuid.UUID(int=rnd.getrandbits(128))),
            "meta": {"profile": ["http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-task"]},
            "status": rnd.choice(STATUSES),
            "intent": "order",
            "code": {"coding": [{"system": "http://hl7.org/fhir/uv/sdc/CodeSystem/temp",
                                 "code": "complete-questionnaire"}]},
            "for": {"reference": f"Patient/{pid}"},
            "owner": {"reference": f"Patient/{pid}"},
            "requester": {"reference": "Practitioner/dr-rivera"},
            "authoredOn": f"2026-03-{day:02d}T09:00:00Z",
            "restriction": {"period": {"end": f"2026-04-{day:02d}T20:00:00Z"}},
            "input": [{"type": {"coding": [{"system": "http://hl7.org/fhir/uv/sdc/CodeSystem/temp",
                                            "code": "questionnaire"}]},
                       "valueCanonical": "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0"}],
            "description": "Complete the PHQ-9 before your next session.",
        }


def load(store: Any, resources: Iterator[dict[str, Any]], batch: int = 1000) -> tuple[int, float]:
    """Load resources with PUT entries in transaction Bundles; return (count, seconds)."""
    count = 0
    start = time.perf_counter()
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in chunk]})

    for resource in resources:
        chunk.append(resource)
        if len(chunk) == batch:
            flush()
            count += len(chunk)
            chunk = []
    if chunk:
        flush()
        count += len(chunk)
    return count, time.perf_counter() - start
