"""Demo data: a small practice (clinicians, clients, their current sessions) for the sandbox EHR.

Clinicians and clients have contact points (email; a mobile number for SMS), the
clients ten weeks of history (:mod:`hw_fhir.demo_history`), and at every start one
homework is assigned to a client who is awake now (outside quiet hours), so its
first reminder reaches the demo inbox within a minute (:func:`assign_welcome`).

Idempotent: every person has a fixed id and is written with PUT only when it is
missing; the history is written once; the welcome homework only when that client
has no open one.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from . import catalog
from .assignment import OPEN_STATUSES, Assignment, assign
from .channels.base import telecom
from .demo_history import load_history
from .errors import NotFound
from .reminders import ReminderPolicy, preferences
from .schedule import Schedule
from .services import Services

__all__ = ["demo_resources", "demo_encounters", "load_demo_data", "assign_welcome", "awake_client",
           "DEMO_IDENTIFIER_SYSTEM", "DEMO_ENCOUNTER_SYSTEM", "WELCOME_SYSTEM"]

DEMO_IDENTIFIER_SYSTEM = "urn:hw-fhir:demo-ehr:mrn"
DEMO_ENCOUNTER_SYSTEM = "urn:hw-fhir:demo-ehr:encounter"
#: Task.identifier system marking the homework the demo assigns at start-up.
WELCOME_SYSTEM = "urn:hw-fhir:demo:welcome"

_CLINICIANS = [
    ("dr-rivera", "Rivera", "Elena", "female", "Psychologist"),
    ("dr-okafor", "Okafor", "Samuel", "male", "Clinical social worker"),
]
#: Where the demo's clinicians work (``hw-fhir demo``): their pages show times in their zone,
#: as the assignment confirmation shows the patient's, instead of the practice default (UTC).
_CLINICIAN_ZONES = {"dr-rivera": "America/New_York", "dr-okafor": "America/Chicago"}
_TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"

#: id, family, given, gender, birth date, clinician, time zone, email?, mobile number
_CLIENTS = [
    ("pat-ava", "Nguyen", "Ava", "female", "1991-04-12", "dr-rivera", "America/New_York", True,
     "+1 555 0100 101"),
    ("pat-ben", "Schmidt", "Ben", "male", "1984-09-30", "dr-rivera", "Europe/Berlin", True, None),
    ("pat-carmen", "Lopez", "Carmen", "female", "2000-01-22", "dr-okafor", "America/Chicago", False,
     "+1 555 0100 103"),
    ("pat-dev", "Patel", "Dev", "male", "1976-06-05", "dr-okafor", "America/Los_Angeles", True,
     None),
    ("pat-emi", "Tanaka", "Emi", "female", "1995-11-03", "dr-okafor", "Asia/Tokyo", True,
     "+81 90 5550 0105"),
]

#: Where the clients live (ISO 3166), when not the US: it picks the crisis resources they see.
_COUNTRIES = {"pat-ben": "DE", "pat-emi": "JP"}


def demo_resources(now: datetime | None = None) -> list[dict[str, Any]]:
    """Return the demo Practitioners, Patients and Encounters (sessions begun this hour)."""
    out: list[dict[str, Any]] = []
    for pid, family, given, gender, role in _CLINICIANS:
        out.append({
            "resourceType": "Practitioner", "id": pid, "active": True,
            "identifier": [{"system": "urn:hw-fhir:demo-ehr:npi", "value": pid}],
            "name": [{"family": family, "given": [given], "prefix": ["Dr."],
                      "text": f"Dr. {given} {family}"}],
            "gender": gender,
            "qualification": [{"code": {"text": role}}],
            "telecom": [{"system": "email", "value": f"{given.lower()}.{family.lower()}@clinic.example.org",
                         "use": "work"}],
        })
    for pid, family, given, gender, birth, gp, tz, email, mobile in _CLIENTS:
        telecom = []
        if email:
            telecom.append({"system": "email", "value": f"{given.lower()}@example.org", "use": "home"})
        if mobile:
            telecom.append({"system": "phone", "value": mobile, "use": "mobile"})
        out.append({
            "resourceType": "Patient", "id": pid, "active": True,
            "identifier": [{"system": DEMO_IDENTIFIER_SYSTEM, "value": pid.upper()}],
            "name": [{"family": family, "given": [given], "text": f"{given} {family}"}],
            "gender": gender, "birthDate": birth,
            "telecom": telecom,
            "generalPractitioner": [{"reference": f"Practitioner/{gp}"}],
            "address": [{"use": "home", "country": _COUNTRIES.get(pid, "US")}],
            "extension": [{"url": _TIMEZONE_EXTENSION,
                           "valueCode": tz}],
        })
    return out + demo_encounters(now)


def demo_encounters(now: datetime | None = None) -> list[dict[str, Any]]:
    """Return the demo Encounters: each client's current therapy session with their clinician,
    begun at the top of ``now``'s hour (UTC), so the sandbox EHR shows a session of today."""
    begun = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    start = begun.replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: list[dict[str, Any]] = []
    for pid, _family, given, _gender, _birth, gp, *_rest in _CLIENTS:
        out.append({
            "resourceType": "Encounter", "id": f"enc-{pid}", "status": "in-progress",
            "identifier": [{"system": DEMO_ENCOUNTER_SYSTEM, "value": f"ENC-{pid.upper()}"}],
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                      "display": "ambulatory"},
            "type": [{"text": "Psychotherapy session"}],
            "subject": {"reference": f"Patient/{pid}", "display": given},
            "participant": [{"individual": {"reference": f"Practitioner/{gp}"}}],
            "period": {"start": start},
        })
    return out


def _zone_clinicians(services: Services) -> int:
    """Give the demo's clinicians their time zone (once); return how many were written."""
    written = 0
    for pid, zone in _CLINICIAN_ZONES.items():
        practitioner = services.store.read("Practitioner", pid).resource
        extensions = practitioner.get("extension") or []
        if any(e.get("url") == _TIMEZONE_EXTENSION for e in extensions):
            continue
        services.store.update({**practitioner, "extension": [
            *extensions, {"url": _TIMEZONE_EXTENSION, "valueCode": zone}]})
        written += 1
    return written


def load_demo_data(services: Services, *, history: bool = False,
                   now: datetime | None = None) -> int:
    """Write the demo practice; return how many resources were written.

    ``history`` (``hw-fhir demo``): also the clients' ten weeks of history and the
    welcome homework (both need the activity library loaded).
    """
    written = 0
    for resource in demo_resources(now):
        try:
            stored = services.store.read(resource["resourceType"], resource["id"]).resource
        except NotFound:
            services.store.update(resource)
            written += 1
            continue
        if history and resource["resourceType"] == "Encounter" and \
                stored.get("period", {}).get("start", "")[:10] != resource["period"]["start"][:10]:
            # the demo again on another day: today's session, not the one of the first start
            services.store.update({**stored, "period": resource["period"]})
            written += 1
    if history:
        written += _zone_clinicians(services)
        written += load_history(services, now=now)
        written += assign_welcome(services, now=now)
    for count in services.plugins.hook.demo_data_loaded(services=services):
        written += int(count or 0)
    return written


def awake_client(services: Services, now: datetime) -> dict[str, Any]:
    """Return the demo client whose local time is furthest from their quiet hours now."""
    policy = ReminderPolicy.from_settings(services.settings)
    best: tuple[float, dict[str, Any]] | None = None
    for row in _CLIENTS:
        patient = services.store.read("Patient", row[0]).resource
        prefs = preferences(patient, policy)
        if prefs.in_quiet_hours(now):
            continue
        local = now.astimezone(prefs.zone)
        distance = abs(local.hour + local.minute / 60 - 14)  # early afternoon is best
        if best is None or distance < best[0]:
            best = (distance, patient)
    if best is None:  # everyone asleep (cannot happen with these time zones)
        return services.store.read("Patient", _CLIENTS[0][0]).resource
    return best[1]


def assign_welcome(services: Services, *, now: datetime | None = None) -> int:
    """Assign a mood log due tomorrow to a client who is awake now; 0 if one is still open."""
    moment = now or datetime.now(timezone.utc)
    patient = awake_client(services, moment)
    url = f"{catalog.CANONICAL_BASE}/Questionnaire/mood-log"
    open_tasks = services.store.search("Task", [
        ("patient", f"Patient/{patient['id']}"), ("status", ",".join(OPEN_STATUSES)),
        ("identifier", f"{WELCOME_SYSTEM}|welcome")]).matches
    if open_tasks:
        return 0
    zone = next((e.get("valueCode") for e in patient.get("extension") or []
                 if e.get("url") == _TIMEZONE_EXTENSION), "UTC")
    local = moment.astimezone(ZoneInfo(zone))
    gp = (patient.get("generalPractitioner") or [{}])[0].get("reference", "Practitioner/dr-rivera")
    result = assign(services.store, Assignment(
        patient=f"Patient/{patient['id']}", practitioner=gp, activity=url,
        schedule=Schedule(frequency="once", start=local.date() + timedelta(days=1), timezone=zone,
                          time_of_day=time(20, 0)),
        instructions="Rate your mood this evening, and note one thing that helped.",
        rationale="Noticing what lifts your mood shows us what to do more of.",
        reminder_channel="email" if telecom(patient, "email") else "sms"),
        events=services.events, now=moment)
    task = result.task
    if task is not None:  # mark it, so a restart does not assign another
        marked = dict(task, identifier=[*(task.get("identifier") or []),
                                        {"system": WELCOME_SYSTEM, "value": "welcome"}])
        services.store.update(marked)
    return len(result.tasks)
