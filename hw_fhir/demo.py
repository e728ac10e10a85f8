"""Demo data: a small practice (clinicians and clients) for the sandbox EHR and newcomers.

Idempotent: every resource has a fixed id and is written with PUT only when it
is missing, so running the demo twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from .errors import NotFound
from .services import Services

__all__ = ["demo_resources", "load_demo_data", "DEMO_IDENTIFIER_SYSTEM"]

DEMO_IDENTIFIER_SYSTEM = "urn:hw-fhir:demo-ehr:mrn"

_CLINICIANS = [
    ("dr-rivera", "Rivera", "Elena", "female", "Psychologist"),
    ("dr-okafor", "Okafor", "Samuel", "male", "Clinical social worker"),
]

_CLIENTS = [
    ("pat-ava", "Nguyen", "Ava", "female", "1991-04-12", "dr-rivera", "America/New_York"),
    ("pat-ben", "Schmidt", "Ben", "male", "1984-09-30", "dr-rivera", "Europe/Berlin"),
    ("pat-carmen", "Lopez", "Carmen", "female", "2000-01-22", "dr-okafor", "America/Chicago"),
    ("pat-dev", "Patel", "Dev", "male", "1976-06-05", "dr-okafor", "America/Los_Angeles"),
]


def demo_resources() -> list[dict[str, Any]]:
    """Return the demo Practitioners and Patients."""
    out: list[dict[str, Any]] = []
    for pid, family, given, gender, role in _CLINICIANS:
        out.append({
            "resourceType": "Practitioner", "id": pid, "active": True,
            "identifier": [{"system": "urn:hw-fhir:demo-ehr:npi", "value": pid}],
            "name": [{"family": family, "given": [given], "prefix": ["Dr."],
                      "text": f"Dr. {given} {family}"}],
            "gender": gender,
            "qualification": [{"code": {"text": role}}],
        })
    for pid, family, given, gender, birth, gp, tz in _CLIENTS:
        out.append({
            "resourceType": "Patient", "id": pid, "active": True,
            "identifier": [{"system": DEMO_IDENTIFIER_SYSTEM, "value": pid.upper()}],
            "name": [{"family": family, "given": [given], "text": f"{given} {family}"}],
            "gender": gender, "birthDate": birth,
            "telecom": [{"system": "email", "value": f"{given.lower()}@example.org", "use": "home"}],
            "generalPractitioner": [{"reference": f"Practitioner/{gp}"}],
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/timezone",
                           "valueCode": tz}],
        })
    return out


def load_demo_data(services: Services) -> int:
    """Write the demo resources that are missing; return how many were written."""
    written = 0
    for resource in demo_resources():
        try:
            services.store.read(resource["resourceType"], resource["id"])
        except NotFound:
            services.store.update(resource)
            written += 1
    for count in services.plugins.hook.demo_data_loaded(services=services):
        written += int(count or 0)
    return written
