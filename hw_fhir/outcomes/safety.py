"""Safety: a risk a scorer raises becomes a Flag and a stat alert to the assigning clinician.

For each :class:`~hw_fhir.scoring.RiskFlag` of a scored response:

* a ``Flag`` — status ``active``; category
  ``http://terminology.hl7.org/CodeSystem/flag-category|clinical`` plus a local
  category (``http://hw-fhir.org/fhir/CodeSystem/flag-category|self-harm-risk``);
  ``code`` the risk (``http://hw-fhir.org/fhir/CodeSystem/risk|self-harm``, text = the
  scorer's reason); ``subject`` the patient; ``author`` the assigning Practitioner when
  known; ``period.start`` when the patient answered (the response's ``authored``, in UTC;
  the scoring time when it has none, or a later one) — a response synced or re-scored late
  is dated when the risk was expressed, not when it was scored; the time the Flag was raised
  in the ``flag-raised`` extension (:data:`FLAG_RAISED_EXTENSION`); the standard
  ``flag-detail`` extension → the QuestionnaireResponse; identifier ``http://hw-fhir.org/fhir/sid/risk-flag|<response
  id>/<risk code>``;
* a ``CommunicationRequest`` — the alert: status ``active``, priority ``stat``, category
  ``http://hw-fhir.org/fhir/CodeSystem/communication-category|risk-alert``, ``subject``
  the patient, ``recipient`` the first person of its escalation path
  (:mod:`.escalation`: Task requester, CarePlan author, GP, CareTeam, practice safety
  contact; later recipients are added as it escalates), ``about`` → [Flag,
  QuestionnaireResponse], ``authoredOn``, identifier
  ``http://hw-fhir.org/fhir/sid/risk-alert|<response id>/<risk code>``. Its payload
  holds no clinical content (it may travel by SMS or email). The reminder worker
  delivers it through the recipient's channels, escalates it when it cannot, and never
  gives it up; until delivered it is shown as undelivered on the clinician screens.

Both are conditional creates on their identifier, so one response never raises the
same risk twice (re-scoring, an amendment, two racing writers). An amended response
that no longer raises the risk leaves the Flag active: only a clinician's
:func:`acknowledge_flag` ends it (Flag ``inactive`` with ``period.end`` and an
acknowledgement extension; its alerts ``completed``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from .. import catalog
from ..assignment import instant, parse_instant, reference
from ..completion import RESPONSE_TASK_SYSTEM
from ..errors import BusinessRuleError, InvalidInput, NotFound
from ..scoring import RiskFlag
from ..store.base import Store, iter_all

__all__ = [
    "FLAG_CATEGORY_SYSTEM",
    "LOCAL_FLAG_CATEGORY_SYSTEM",
    "RISK_SYSTEM",
    "RISK_FLAG_SYSTEM",
    "RISK_ALERT_SYSTEM",
    "COMMUNICATION_CATEGORY_SYSTEM",
    "FLAG_DETAIL_EXTENSION",
    "ACKNOWLEDGEMENT_EXTENSION",
    "FLAG_RAISED_EXTENSION",
    "answered_at",
    "ALERT_TEXT",
    "now_utc",
    "flag_entries",
    "answered_task",
    "clinician_reference",
    "read_or_none",
    "assigning_practitioner",
    "flags_for_response",
    "acknowledge_flag",
]

Json = dict[str, Any]
_BASE = catalog.CANONICAL_BASE
FLAG_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-category"
LOCAL_FLAG_CATEGORY_SYSTEM = f"{_BASE}/CodeSystem/flag-category"
RISK_SYSTEM = f"{_BASE}/CodeSystem/risk"
RISK_FLAG_SYSTEM = f"{_BASE}/sid/risk-flag"
RISK_ALERT_SYSTEM = f"{_BASE}/sid/risk-alert"
COMMUNICATION_CATEGORY_SYSTEM = f"{_BASE}/CodeSystem/communication-category"
FLAG_DETAIL_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-detail"
ACKNOWLEDGEMENT_EXTENSION = f"{_BASE}/StructureDefinition/flag-acknowledgement"
#: When hw-fhir raised the Flag (scored the response): ``valueDateTime``. ``period.start`` is
#: when the patient answered; the two differ for a response synced or re-scored late.
FLAG_RAISED_EXTENSION = f"{_BASE}/StructureDefinition/flag-raised"
#: The alert's message: no clinical content, since channels (SMS, email) are not private.
ALERT_TEXT = ("A patient's homework response needs your review now. "
              "Open hw-fhir to see the alert.")
_CATEGORY_DISPLAY = {"self-harm": "Self-harm risk"}
_CLINICIAN_TYPES = ("Practitioner/", "PractitionerRole/")
_OPEN_ALERT = ("draft", "active", "on-hold")


def now_utc(now: datetime | None = None) -> datetime:
    """Return ``now`` (timezone-aware) in UTC, or the current time."""
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise InvalidInput("now must be timezone-aware")
    return now.astimezone(timezone.utc)


def _key(response_id: str, risk: RiskFlag) -> str:
    return f"{response_id}/{risk.code}"


def answered_at(response: Mapping[str, Any], moment: datetime) -> datetime:
    """Return when the patient answered: ``authored`` (a dateTime with a time), else ``moment``.

    An ``authored`` later than ``moment`` (the time of scoring; a device clock ahead) is not
    believed: ``moment`` is returned.
    """
    authored = response.get("authored")
    if not isinstance(authored, str) or "T" not in authored:
        return moment
    try:
        when = parse_instant(authored)
    except ValueError:
        return moment
    return min(when, moment)


def _flag(response: Mapping[str, Any], risk: RiskFlag, author: str | None, moment: str,
          answered: str) -> Json:
    display = _CATEGORY_DISPLAY.get(risk.code, f"Risk: {risk.display}")
    flag: Json = {
        "resourceType": "Flag",
        "extension": [{"url": FLAG_DETAIL_EXTENSION,
                       "valueReference": {"reference": f"QuestionnaireResponse/{response['id']}"}},
                      {"url": FLAG_RAISED_EXTENSION, "valueDateTime": moment}],
        "identifier": [{"system": RISK_FLAG_SYSTEM, "value": _key(response["id"], risk)}],
        "status": "active",
        "category": [
            {"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": "clinical",
                         "display": "Clinical"}]},
            {"coding": [{"system": LOCAL_FLAG_CATEGORY_SYSTEM, "code": f"{risk.code}-risk",
                         "display": display}]},
        ],
        "code": {"coding": [{"system": RISK_SYSTEM, "code": risk.code, "display": risk.display}],
                 "text": risk.reason},
        "subject": dict(response["subject"]),
        "period": {"start": answered},
    }
    if author:
        flag["author"] = {"reference": author}
    return flag


def _alert(response: Mapping[str, Any], risk: RiskFlag, recipient: str | None,
           flag_url: str, moment: str) -> Json:
    alert: Json = {
        "resourceType": "CommunicationRequest",
        "identifier": [{"system": RISK_ALERT_SYSTEM, "value": _key(response["id"], risk)}],
        "status": "active",
        "category": [{"coding": [{"system": COMMUNICATION_CATEGORY_SYSTEM, "code": "risk-alert",
                                  "display": "Risk alert"}]}],
        "priority": "stat",
        "subject": dict(response["subject"]),
        "about": [{"reference": flag_url},
                  {"reference": f"QuestionnaireResponse/{response['id']}"}],
        "payload": [{"contentString": ALERT_TEXT}],
        "occurrenceDateTime": moment,
        "authoredOn": moment,
    }
    if recipient:
        alert["recipient"] = [{"reference": recipient}]
    return alert


def _conditional(resource: Json, system: str, value: str, full_url: str) -> Json:
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"],
                        "ifNoneExist": urlencode([("identifier", f"{system}|{value}")])}}


def flag_entries(response: Mapping[str, Any], risks: tuple[RiskFlag, ...], *,
                 clinician: str | None, moment: datetime) -> list[Json]:
    """Return transaction entries that raise each risk once: a Flag and its alert.

    The Flag's ``period.start`` is when the patient answered (:func:`answered_at`); the alert
    is authored ``moment``, when the risk was raised (its escalation clock starts then).
    """
    entries: list[Json] = []
    when = instant(moment)
    answered = instant(answered_at(response, moment))
    for risk in risks:
        flag_url = f"urn:uuid:{uuid.uuid4()}"
        key = _key(response["id"], risk)
        entries.append(_conditional(_flag(response, risk, clinician, when, answered), RISK_FLAG_SYSTEM, key,
                                    flag_url))
        entries.append(_conditional(_alert(response, risk, clinician, flag_url, when),
                                    RISK_ALERT_SYSTEM, key, f"urn:uuid:{uuid.uuid4()}"))
    return entries


def clinician_reference(ref: Any) -> str | None:
    """Return the reference string when ``ref`` points at a Practitioner(Role), else None."""
    value = ref.get("reference") if isinstance(ref, Mapping) else None
    return value if isinstance(value, str) and value.startswith(_CLINICIAN_TYPES) else None


def read_or_none(store: Store, ref: str) -> Json | None:
    """Return the resource at ``Type/id``, or None when it is not stored."""
    rtype, _, rid = ref.partition("/")
    try:
        return store.read(rtype, rid).resource
    except NotFound:
        return None


def answered_task(store: Store, response: Mapping[str, Any]) -> Json | None:
    """Return the Task a response answers (only a Task for the response's own subject)."""
    subject = (response.get("subject") or {}).get("reference")
    candidates: list[Json] = []
    identifiers = response.get("identifier")
    for ident in identifiers if isinstance(identifiers, list) else [identifiers or {}]:
        if ident.get("system") == RESPONSE_TASK_SYSTEM and ident.get("value"):
            candidates += [t for t in [read_or_none(store, f"Task/{ident['value']}")] if t]
    found = store.search("Task", [("output", f"QuestionnaireResponse/{response['id']}")])
    candidates += found.resources
    return next((t for t in candidates if (t.get("for") or {}).get("reference") == subject), None)


def assigning_practitioner(store: Store, response: Mapping[str, Any],
                           task: Mapping[str, Any] | None = None) -> str | None:
    """Return the clinician to alert about a response, or None when no one is known.

    In order: the requester of the Task it answers (``task``, the response's
    task-response identifier, or ``Task.output``), the author of the CarePlan it is
    ``basedOn``, the patient's ``generalPractitioner``.
    """
    task = task or answered_task(store, response)
    if task and clinician_reference(task.get("requester")):
        return clinician_reference(task.get("requester"))
    for based_on in response.get("basedOn") or []:
        ref = based_on.get("reference", "")
        if ref.startswith("CarePlan/"):
            plan = read_or_none(store, ref) or {}
            if clinician_reference(plan.get("author")):
                return clinician_reference(plan.get("author"))
    subject = (response.get("subject") or {}).get("reference", "")
    if subject.startswith("Patient/"):
        patient = read_or_none(store, subject) or {}
        for ref in patient.get("generalPractitioner") or []:
            if clinician_reference(ref):
                return clinician_reference(ref)
    return None


def flags_for_response(store: Store, response: Mapping[str, Any], *,
                       active_only: bool = True) -> list[Json]:
    """Return the Flags a response raised (by default only those still active)."""
    params = [("identifier", f"{RISK_FLAG_SYSTEM}|")]
    subject = (response.get("subject") or {}).get("reference")
    if subject:
        params.append(("subject", subject))
    if active_only:
        params.append(("status", "active"))
    prefix = f"{response['id']}/"
    return [f for f in iter_all(store, "Flag", params)
            if any(i.get("system") == RISK_FLAG_SYSTEM
                   and str(i.get("value", "")).startswith(prefix)
                   for i in f.get("identifier") or [])]


def _entry(resource: Mapping[str, Any]) -> Json:
    data = {k: v for k, v in resource.items() if k != "meta"}
    return {"resource": data,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}",
                        "ifMatch": f'W/"{resource["meta"]["versionId"]}"'}}


def acknowledge_flag(store: Store, flag_id: str, practitioner_ref: str, note: str | None = None, *,
                     now: datetime | None = None) -> Json:
    """Record that a clinician has seen a risk: Flag ``inactive``, its open alerts ``completed``.

    The Flag gets ``period.end`` and an acknowledgement extension (who, when, the
    note); each alert about it a ``note``. Acknowledging an inactive Flag again
    changes nothing. Return the stored Flag. Raise NotFound, InvalidInput (not a
    Practitioner reference) or BusinessRuleError (a Flag entered in error).
    """
    clinician = reference("Practitioner", practitioner_ref)
    if note is not None and not isinstance(note, str):
        raise InvalidInput("The acknowledgement note must be text")
    flag = store.read("Flag", flag_id).resource
    if flag.get("status") == "inactive":
        return flag
    if flag.get("status") != "active":
        raise BusinessRuleError(
            f"Flag/{flag_id} is {flag.get('status')}; it cannot be acknowledged")
    when = instant(now_utc(now))
    ack: Json = {"url": ACKNOWLEDGEMENT_EXTENSION, "extension": [
        {"url": "by", "valueReference": {"reference": clinician}},
        {"url": "at", "valueDateTime": when}]}
    if note and note.strip():
        ack["extension"].append({"url": "note", "valueString": note.strip()})
    updated = dict(flag, status="inactive", period=dict(flag.get("period") or {}, end=when),
                   extension=[*(flag.get("extension") or []), ack])
    entries = [_entry(updated)]
    text = f"Acknowledged by {clinician}" + (f": {note.strip()}" if note and note.strip() else "")
    for alert in iter_all(store, "CommunicationRequest", [("about", f"Flag/{flag_id}")]):
        if alert.get("status") not in _OPEN_ALERT:
            continue
        notes = [*(alert.get("note") or []),
                 {"authorReference": {"reference": clinician}, "time": when, "text": text}]
        entries.append(_entry(dict(alert, status="completed", note=notes)))
    result = store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return dict(result["entry"][0]["resource"])
