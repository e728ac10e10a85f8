"""Assign homework: one activity to one patient, once or on a schedule.

A one-off assignment is one SDC Task; a recurring one is a CarePlan with one activity
plus one Task per occurrence (``Task.basedOn`` → the CarePlan), created by the
materializer (:mod:`hw_fhir.plans`) up to a horizon ahead.

The Task (``http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-task``)::

    status        requested → in-progress → completed | cancelled | failed (on-hold when paused)
    intent        order
    code          http://hl7.org/fhir/uv/sdc/CodeSystem/temp#complete-questionnaire
    input         [{type: temp#questionnaire, valueCanonical: "<url>|<version>"}]
    for, owner    the Patient          requester    the Practitioner
    authoredOn    when assigned        restriction.period   start = window opens, end = due
    description   the instructions     note         rationale and example (tagged, below)
    identifier    http://hw-fhir.org/fhir/sid/task-occurrence|<careplan-id>/<activity>/<key>
                  (plan occurrences only: makes materializing idempotent)
    basedOn       the CarePlan (plan occurrences only)
    encounter     the session it was agreed in (optional)

The CarePlan: ``status`` active, ``intent`` plan, ``subject``, ``author``, ``category``
``http://hw-fhir.org/fhir/CodeSystem/care-plan-category#homework`` and per activity
``detail.kind`` Task, ``detail.instantiatesCanonical`` ``[url|version]``,
``detail.scheduledTiming`` (:meth:`Schedule.to_fhir_timing`, the patient's time zone in
the Timing's ``timezone`` extension), ``detail.status`` (``scheduled``; ``not-started``
for a pathway step not released yet; ``completed``, ``cancelled``, ``stopped``),
``detail.description`` = instructions and ``detail.performer`` the Patient.

Extensions (``http://hw-fhir.org/fhir/StructureDefinition/...``):

``homework-label`` (valueString; Task, CarePlan.activity.detail)
    The clinician's wording for "homework", e.g. "skills practice".
``patient-confidence`` (valueInteger 0–10; Task, detail)
    How confident the patient is to do it; below 7 gets a warning at assignment.
``reminder-channel`` (valueCode; Task, detail)
    The reminder channel chosen (``email``, ``sms``, a plugin's channel, ``none``).
``homework-rationale``, ``homework-example`` (valueString; detail)
    Why it helps, and a worked example. On a Task they are ``note`` entries instead.
``note-kind`` (valueCode ``rationale`` | ``example``; on Task.note)
    Which of the two a Task note is.
``occurrences-from`` (valueDateTime; CarePlan.activity)
    Occurrences due before this instant are never materialized (set at assignment,
    release of a pathway step and resume).

``Task.businessStatus`` uses ``http://hw-fhir.org/fhir/CodeSystem/task-business-status``:
``on-time`` and ``late`` (completed before / after the due time), ``missed`` (failed by
the overdue sweep), ``paused``/``plan-cancelled``/``step-skipped``/``rescheduled`` (why
it was cancelled); reminders add their own funnel codes (``reminded``, ``overdue``...).
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from . import catalog
from .errors import BusinessRuleError, InvalidInput, Issue, NotFound
from .events import PLAN_CREATED, TASK_CREATED, TASK_STATUS_CHANGED, Events, publish
from .library import resolve_questionnaire
from .schedule import Occurrence, Schedule
from .store.base import Store, iter_all

__all__ = [
    "SDC_TASK_PROFILE",
    "SDC_TEMP_SYSTEM",
    "COMPLETE_QUESTIONNAIRE",
    "STRUCTURE_BASE",
    "EXT_HOMEWORK_LABEL",
    "EXT_PATIENT_CONFIDENCE",
    "EXT_REMINDER_CHANNEL",
    "EXT_RATIONALE",
    "EXT_EXAMPLE",
    "EXT_NOTE_KIND",
    "EXT_OCCURRENCES_FROM",
    "TASK_OCCURRENCE_SYSTEM",
    "BUSINESS_STATUS_SYSTEM",
    "CARE_PLAN_CATEGORY_SYSTEM",
    "HOMEWORK_CATEGORY",
    "NOT_STARTED_STATUSES",
    "OPEN_STATUSES",
    "TERMINAL_STATUSES",
    "LOW_CONFIDENCE",
    "HomeworkDetails",
    "Assignment",
    "AssignmentEdit",
    "AssignResult",
    "assign",
    "edit_assignment",
    "cancel_assignment",
    "build_task",
    "occurrence_tasks",
    "occurrence_identifier",
    "task_canonical",
    "task_due",
    "business_status",
    "with_business_status",
    "status_entry",
    "transact",
    "instant",
    "parse_instant",
    "reference",
    "encounter_reference",
    "activity_schedule",
    "occurrences_from",
    "set_occurrences_from",
    "plan_tasks",
    "create_entry",
    "write_plan",
    "cancel_plan_tasks",
    "utc_now",
    "assignable",
    "new_plan",
    "plan_activity",
    "task_activity",
    "without_extensions",
]

SDC_TASK_PROFILE = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-task"
SDC_TEMP_SYSTEM = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
COMPLETE_QUESTIONNAIRE = "complete-questionnaire"
STRUCTURE_BASE = f"{catalog.CANONICAL_BASE}/StructureDefinition"
EXT_HOMEWORK_LABEL = f"{STRUCTURE_BASE}/homework-label"
EXT_PATIENT_CONFIDENCE = f"{STRUCTURE_BASE}/patient-confidence"
EXT_REMINDER_CHANNEL = f"{STRUCTURE_BASE}/reminder-channel"
EXT_RATIONALE = f"{STRUCTURE_BASE}/homework-rationale"
EXT_EXAMPLE = f"{STRUCTURE_BASE}/homework-example"
EXT_NOTE_KIND = f"{STRUCTURE_BASE}/note-kind"
EXT_OCCURRENCES_FROM = f"{STRUCTURE_BASE}/occurrences-from"
TASK_OCCURRENCE_SYSTEM = f"{catalog.CANONICAL_BASE}/sid/task-occurrence"
BUSINESS_STATUS_SYSTEM = f"{catalog.CODE_SYSTEM_BASE}/task-business-status"
CARE_PLAN_CATEGORY_SYSTEM = f"{catalog.CODE_SYSTEM_BASE}/care-plan-category"
HOMEWORK_CATEGORY = {
    "coding": [{"system": CARE_PLAN_CATEGORY_SYSTEM, "code": "homework", "display": "Homework"}]
}

#: Task statuses of work not begun: these are cancelled with a plan, put on hold by a pause.
NOT_STARTED_STATUSES = frozenset({"draft", "requested", "received", "accepted", "ready", "on-hold"})
#: Task statuses of work that can still be done.
OPEN_STATUSES = NOT_STARTED_STATUSES | {"in-progress"}
#: Task statuses that end a Task.
TERMINAL_STATUSES = frozenset({"completed", "cancelled", "failed", "rejected", "entered-in-error"})
#: Confidence (0–10) below which the assignment comes back with a warning.
LOW_CONFIDENCE = 7

_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ABSOLUTE_ENCOUNTER = re.compile(r"^https?://[^\s/]+(/[^\s/]+)*/Encounter/[A-Za-z0-9\-.]{1,64}$")


# -- small helpers ------------------------------------------------------------------------


def instant(moment: datetime) -> str:
    """Return an aware datetime as a FHIR instant in UTC (``2026-03-08T20:00:00Z``)."""
    if moment.tzinfo is None:
        raise InvalidInput(f"{moment.isoformat()} has no time zone")
    utc = moment.astimezone(timezone.utc)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


@lru_cache(maxsize=65536)
def parse_instant(value: str) -> datetime:
    """Parse a FHIR dateTime with a time and zone into an aware UTC datetime.

    Cached: the clinician pages parse the same due dates of a patient's Tasks many times,
    and a datetime is immutable.
    """
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def utc_now(now: datetime | None = None) -> datetime:
    """Return ``now`` in UTC (the current time when None); a naive datetime is refused."""
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise InvalidInput("now must be timezone-aware")
    return now.astimezone(timezone.utc)


def reference(resource_type: str, value: str) -> str:
    """Return ``Type/id`` for an id or a reference of that type; InvalidInput otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"A {resource_type} reference is required")
    value = value.strip()
    rid = value.split("/", 1)[1] if value.startswith(f"{resource_type}/") else value
    if not _ID.match(rid):
        raise InvalidInput(f"{value!r} is not a {resource_type} id or reference")
    return f"{resource_type}/{rid}"


def encounter_reference(value: str) -> str:
    """Return an Encounter reference: ``Encounter/<id>``, or the absolute URL of one on an EHR."""
    if isinstance(value, str) and _ABSOLUTE_ENCOUNTER.match(value.strip()):
        return value.strip()
    return reference("Encounter", value)


def _ext(url: str, key: str, value: Any) -> dict[str, Any]:
    return {"url": url, key: value}


def _ext_value(element: Mapping[str, Any], url: str) -> Any:
    for ext in element.get("extension") or []:
        if ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def without_extensions(element: Mapping[str, Any], urls: Iterable[str]) -> list[dict[str, Any]]:
    """Return an element's extensions except those with the given urls."""
    drop = set(urls)
    return [e for e in element.get("extension") or [] if e.get("url") not in drop]


def business_status(task: Mapping[str, Any]) -> str | None:
    """Return the Task's businessStatus code in the hw-fhir system, if any."""
    for coding in (task.get("businessStatus") or {}).get("coding") or []:
        if coding.get("system") == BUSINESS_STATUS_SYSTEM and coding.get("code"):
            return str(coding["code"])
    return None


_BUSINESS_DISPLAY = {
    "on-time": "Completed on time",
    "late": "Completed late",
    "missed": "Missed: the due window passed unfinished",
    "paused": "Cancelled: the plan was paused",
    "plan-cancelled": "Cancelled with its plan",
    "step-skipped": "Cancelled: the pathway step was skipped",
    "rescheduled": "Cancelled: the schedule was changed",
    "assignment-cancelled": "Cancelled by the clinician",
}


def with_business_status(task: Mapping[str, Any], code: str) -> dict[str, Any]:
    """Return a copy of the Task with this hw-fhir businessStatus code."""
    coding: dict[str, Any] = {"system": BUSINESS_STATUS_SYSTEM, "code": code}
    if code in _BUSINESS_DISPLAY:
        coding["display"] = _BUSINESS_DISPLAY[code]
    return dict(task, businessStatus={"coding": [coding], "text": coding.get("display", code)})


def task_canonical(task: Mapping[str, Any]) -> str | None:
    """Return the Questionnaire a Task asks for: the ``questionnaire`` input, or ``focus``.

    The value is a canonical (``url|version``) or, for a Task made elsewhere that points
    at a Questionnaire by reference, ``Questionnaire/<id>``.
    """
    for entry in task.get("input") or []:
        codes = {
            (c.get("system"), c.get("code")) for c in (entry.get("type") or {}).get("coding") or []
        }
        if (SDC_TEMP_SYSTEM, "questionnaire") not in codes:
            continue
        if entry.get("valueCanonical"):
            return str(entry["valueCanonical"])
        ref = (entry.get("valueReference") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Questionnaire/"):
            return ref
    ref = (task.get("focus") or {}).get("reference")
    if isinstance(ref, str) and (ref.startswith("Questionnaire/") or "/Questionnaire/" in ref):
        return ref
    return None


def task_due(task: Mapping[str, Any]) -> datetime | None:
    """Return when the Task is due (``restriction.period.end``), or None."""
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    return parse_instant(end) if end else None


def transact(store: Store, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run entries as one transaction Bundle; return the response entries (same order)."""
    if not entries:
        return []
    response = store.transaction(
        {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    return list(response.get("entry") or [])


def status_entry(resource: Mapping[str, Any]) -> dict[str, Any]:
    """Return a transaction entry that writes a stored resource back with If-Match."""
    data = {k: v for k, v in resource.items() if k != "meta"}
    if (resource.get("meta") or {}).get("profile"):
        data["meta"] = {"profile": list(resource["meta"]["profile"])}
    request: dict[str, Any] = {
        "method": "PUT",
        "url": f"{resource['resourceType']}/{resource['id']}",
    }
    version = (resource.get("meta") or {}).get("versionId")
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return {"resource": data, "request": request}


def _created(entry: Mapping[str, Any]) -> bool:
    return str((entry.get("response") or {}).get("status", "")).startswith("201")


# -- what the clinician agrees with the patient -------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HomeworkDetails:
    """The tailoring of one assignment: instructions, why, an example, wording, confidence."""

    instructions: str = ""
    rationale: str = ""
    example: str = ""
    wording: str = "homework"
    confidence: int | None = None
    reminder_channel: str | None = None

    def __post_init__(self) -> None:
        issues = _detail_issues(self)
        if issues:
            raise InvalidInput(
                "Invalid assignment: " + "; ".join(i.message for i in issues), issues=issues
            )
        for name in ("instructions", "rationale", "example", "wording"):
            object.__setattr__(self, name, getattr(self, name).strip())
        if not self.wording:
            object.__setattr__(self, "wording", "homework")

    @property
    def warnings(self) -> tuple[str, ...]:
        """Advice for the clinician, e.g. when the patient's confidence is low."""
        if self.confidence is not None and self.confidence < LOW_CONFIDENCE:
            return (
                f"The patient's confidence is {self.confidence}/10. Homework is done more often "
                f"when the patient is at least {LOW_CONFIDENCE}/10 confident: consider a smaller "
                "or easier step, or agreeing on it together.",
            )
        return ()

    def _common_extensions(self) -> list[dict[str, Any]]:
        out = [_ext(EXT_HOMEWORK_LABEL, "valueString", self.wording)]
        if self.confidence is not None:
            out.append(_ext(EXT_PATIENT_CONFIDENCE, "valueInteger", self.confidence))
        if self.reminder_channel:
            out.append(_ext(EXT_REMINDER_CHANNEL, "valueCode", self.reminder_channel))
        return out

    def apply_to_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Return a copy of a Task carrying these details (description, note, extensions)."""
        out = dict(task)
        out.pop("description", None)
        if self.instructions:
            out["description"] = self.instructions
        notes = [n for n in task.get("note") or [] if _ext_value(n, EXT_NOTE_KIND) is None]
        for kind, text in (("rationale", self.rationale), ("example", self.example)):
            if text:
                notes.append({"extension": [_ext(EXT_NOTE_KIND, "valueCode", kind)], "text": text})
        out.pop("note", None)
        if notes:
            out["note"] = notes
        extensions = without_extensions(task, _DETAIL_EXTENSIONS) + self._common_extensions()
        out["extension"] = extensions
        return out

    def apply_to_detail(self, detail: Mapping[str, Any]) -> dict[str, Any]:
        """Return a copy of a CarePlan.activity.detail carrying these details."""
        out = dict(detail)
        out.pop("description", None)
        if self.instructions:
            out["description"] = self.instructions
        extensions = without_extensions(detail, _DETAIL_EXTENSIONS) + self._common_extensions()
        if self.rationale:
            extensions.append(_ext(EXT_RATIONALE, "valueString", self.rationale))
        if self.example:
            extensions.append(_ext(EXT_EXAMPLE, "valueString", self.example))
        out["extension"] = extensions
        return out

    @classmethod
    def from_task(cls, task: Mapping[str, Any]) -> "HomeworkDetails":
        """Read the details back from a Task."""
        notes = {_ext_value(n, EXT_NOTE_KIND): n.get("text", "") for n in task.get("note") or []}
        return cls(
            instructions=task.get("description") or "",
            rationale=notes.get("rationale") or "",
            example=notes.get("example") or "",
            wording=_ext_value(task, EXT_HOMEWORK_LABEL) or "homework",
            confidence=_ext_value(task, EXT_PATIENT_CONFIDENCE),
            reminder_channel=_ext_value(task, EXT_REMINDER_CHANNEL),
        )

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> "HomeworkDetails":
        """Read the details back from a CarePlan.activity.detail."""
        return cls(
            instructions=detail.get("description") or "",
            rationale=_ext_value(detail, EXT_RATIONALE) or "",
            example=_ext_value(detail, EXT_EXAMPLE) or "",
            wording=_ext_value(detail, EXT_HOMEWORK_LABEL) or "homework",
            confidence=_ext_value(detail, EXT_PATIENT_CONFIDENCE),
            reminder_channel=_ext_value(detail, EXT_REMINDER_CHANNEL),
        )


_DETAIL_EXTENSIONS = (
    EXT_HOMEWORK_LABEL,
    EXT_PATIENT_CONFIDENCE,
    EXT_REMINDER_CHANNEL,
    EXT_RATIONALE,
    EXT_EXAMPLE,
)


def _detail_issues(details: Any) -> list[Issue]:
    issues = []
    for name in ("instructions", "rationale", "example", "wording"):
        if not isinstance(getattr(details, name), str):
            issues.append(Issue(f"{name} must be text", expression=name))
    confidence = details.confidence
    if confidence is not None and (
        isinstance(confidence, bool) or not isinstance(confidence, int) or not 0 <= confidence <= 10
    ):
        issues.append(
            Issue(
                f"confidence must be a whole number from 0 to 10 (got {confidence!r})",
                expression="confidence",
            )
        )
    channel = details.reminder_channel
    if channel is not None and (not isinstance(channel, str) or not _CHANNEL.match(channel)):
        issues.append(
            Issue(
                f"reminder_channel must be a channel code such as 'email' or 'sms' "
                f"(got {channel!r})",
                expression="reminder_channel",
            )
        )
    if isinstance(details.wording, str) and len(details.wording) > 60:
        issues.append(
            Issue("wording must be a short label (60 characters at most)", expression="wording")
        )
    return issues


@dataclass(frozen=True, kw_only=True)
class Assignment:
    """One activity for one patient, on a schedule, tailored by the clinician.

    ``activity`` is a Questionnaire canonical ``url|version`` (a bare url means its newest
    active version), ``Questionnaire/<id>`` or an id. ``schedule`` with frequency
    ``once`` makes a single Task due at its start date and time; any other frequency a
    CarePlan with Tasks per occurrence. ``encounter`` is the session it was agreed in.
    """

    patient: str
    practitioner: str
    activity: str
    schedule: Schedule
    instructions: str = ""
    rationale: str = ""
    example: str = ""
    wording: str = "homework"
    confidence: int | None = None
    reminder_channel: str | None = None
    encounter: str | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        issues = _detail_issues(self)
        for name, kind in (("patient", "Patient"), ("practitioner", "Practitioner")):
            try:
                object.__setattr__(self, name, reference(kind, getattr(self, name)))
            except InvalidInput as exc:
                issues.append(Issue(exc.message, expression=name))
        if self.encounter is not None:
            try:
                object.__setattr__(self, "encounter", encounter_reference(self.encounter))
            except InvalidInput as exc:
                issues.append(Issue(exc.message, expression="encounter"))
        if not isinstance(self.activity, str) or not self.activity.strip():
            issues.append(
                Issue("activity (the Questionnaire to complete) is required", expression="activity")
            )
        if not isinstance(self.schedule, Schedule):
            issues.append(Issue("schedule must be a Schedule", expression="schedule"))
        if issues:
            raise InvalidInput(
                "Invalid assignment: " + "; ".join(i.message for i in issues), issues=issues
            )

    @property
    def details(self) -> HomeworkDetails:
        """The tailoring part of the assignment."""
        return HomeworkDetails(
            instructions=self.instructions,
            rationale=self.rationale,
            example=self.example,
            wording=self.wording,
            confidence=self.confidence,
            reminder_channel=self.reminder_channel,
        )


@dataclass(frozen=True)
class AssignResult:
    """What an assignment wrote: the Tasks, the CarePlan (recurring), and warnings."""

    tasks: tuple[dict[str, Any], ...]
    plan: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def task(self) -> dict[str, Any] | None:
        """The first Task (the only one of a one-off assignment), or None."""
        return self.tasks[0] if self.tasks else None


# -- building Tasks -----------------------------------------------------------------------


def build_task(
    *,
    canonical: str,
    patient: str,
    practitioner: str,
    details: HomeworkDetails,
    due: datetime,
    opens: datetime,
    now: datetime,
    based_on: str | None = None,
    identifier: Mapping[str, str] | None = None,
    encounter: str | None = None,
) -> dict[str, Any]:
    """Return a new SDC Task (``requested``) asking the patient to complete a Questionnaire."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"profile": [SDC_TASK_PROFILE]},
    }
    if identifier:
        task["identifier"] = [dict(identifier)]
    if based_on:
        task["basedOn"] = [{"reference": based_on}]
    task.update(
        {
            "status": "requested",
            "intent": "order",
            "code": {
                "coding": [
                    {
                        "system": SDC_TEMP_SYSTEM,
                        "code": COMPLETE_QUESTIONNAIRE,
                        "display": "Complete Questionnaire",
                    }
                ]
            },
            "for": {"reference": patient},
        }
    )
    if encounter:
        task["encounter"] = {"reference": encounter}
    task.update(
        {
            "authoredOn": instant(now),
            "lastModified": instant(now),
            "requester": {"reference": practitioner},
            "owner": {"reference": patient},
            "restriction": {"period": {"start": instant(min(opens, due)), "end": instant(due)}},
            "input": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": SDC_TEMP_SYSTEM,
                                "code": "questionnaire",
                                "display": "Questionnaire",
                            }
                        ]
                    },
                    "valueCanonical": canonical,
                }
            ],
        }
    )
    return details.apply_to_task(task)


def occurrence_identifier(plan_id: str, activity_index: int, occurrence_key: str) -> dict[str, str]:
    """Return the stable identifier of the Task of one plan occurrence."""
    return {
        "system": TASK_OCCURRENCE_SYSTEM,
        "value": f"{plan_id}/{activity_index}/{occurrence_key}",
    }


def activity_schedule(activity: Mapping[str, Any]) -> Schedule:
    """Return the Schedule of a CarePlan activity (its ``detail.scheduledTiming``)."""
    timing = (activity.get("detail") or {}).get("scheduledTiming")
    if not isinstance(timing, dict):
        raise InvalidInput("The CarePlan activity has no scheduledTiming")
    return Schedule.from_fhir_timing(timing)


def occurrences_from(activity: Mapping[str, Any]) -> datetime | None:
    """Return the instant before which an activity's occurrences are not materialized."""
    value = _ext_value(activity, EXT_OCCURRENCES_FROM)
    return parse_instant(value) if value else None


def set_occurrences_from(activity: Mapping[str, Any], moment: datetime) -> dict[str, Any]:
    """Return a copy of a CarePlan activity whose occurrences start at ``moment``."""
    out = dict(activity)
    out["extension"] = without_extensions(activity, [EXT_OCCURRENCES_FROM]) + [
        _ext(EXT_OCCURRENCES_FROM, "valueDateTime", instant(moment))
    ]
    return out


def _window_opens(
    schedule: Schedule, occurrence: Occurrence, released: datetime | None = None
) -> datetime:
    """Return when an occurrence's window opens: the previous occurrence's due time.

    The first occurrence opens at the start of its local day, or at the release of the
    activity (assignment) when that is earlier.
    """
    if occurrence.sequence == 1:
        midnight = datetime.combine(occurrence.local_date, time(0), tzinfo=schedule.zone)
        return min(midnight.astimezone(timezone.utc), released or midnight)
    span = 7 * schedule.interval + 2
    previous = None
    for earlier in schedule.iter_occurrences(occurrence.due - timedelta(days=span)):
        if earlier.due >= occurrence.due:
            break
        previous = earlier
    return previous.due if previous else occurrence.due - timedelta(days=1)


def occurrence_tasks(
    plan: Mapping[str, Any],
    activity_index: int,
    *,
    until: datetime,
    now: datetime,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Return the Tasks of one CarePlan activity's occurrences due before ``until``.

    Occurrences due before the activity's ``occurrences-from`` (and before ``since``,
    when given) are left out. The Tasks are not stored; each carries its occurrence
    identifier.
    """
    activity = plan["activity"][activity_index]
    detail = activity.get("detail") or {}
    schedule = activity_schedule(activity)
    released = occurrences_from(activity)
    start = max(filter(None, (released, since)), default=None)
    canonical = (detail.get("instantiatesCanonical") or [None])[0]
    if not canonical:
        raise InvalidInput(f"CarePlan/{plan.get('id')} activity {activity_index} names no activity")
    details = HomeworkDetails.from_detail(detail)
    encounter = (plan.get("encounter") or {}).get("reference")
    tasks = []
    for occurrence in schedule.iter_occurrences(start):
        if occurrence.due >= until:
            break
        tasks.append(
            build_task(
                canonical=canonical,
                patient=plan["subject"]["reference"],
                practitioner=plan["author"]["reference"],
                details=details,
                due=occurrence.due,
                opens=_window_opens(schedule, occurrence, released),
                now=now,
                based_on=f"CarePlan/{plan['id']}",
                identifier=occurrence_identifier(plan["id"], activity_index, occurrence.key),
                encounter=encounter,
            )
        )
    return tasks


def create_entry(task: Mapping[str, Any]) -> dict[str, Any]:
    """Return a conditional-create transaction entry for a Task (by its identifier)."""
    entry: dict[str, Any] = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": dict(task),
        "request": {"method": "POST", "url": "Task"},
    }
    for ident in task.get("identifier") or []:
        entry["request"]["ifNoneExist"] = urlencode(
            [("identifier", f"{ident['system']}|{ident['value']}")]
        )
        break
    return entry


def plan_tasks(store: Store, plan_id: str, statuses: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Return the Tasks of a CarePlan, optionally only those in some statuses."""
    params = [("based-on", f"CarePlan/{plan_id}")]
    wanted = ",".join(statuses)
    if wanted:
        params.append(("status", wanted))
    return iter_all(store, "Task", params)


# -- assign -------------------------------------------------------------------------------


def assignable(store: Store, activity: str) -> dict[str, Any]:
    """Return the Questionnaire an assignment names; BusinessRuleError unless it is active."""
    questionnaire = resolve_questionnaire(store, activity)
    status = questionnaire.get("status")
    if status != "active":
        hint = "publish it first" if status == "draft" else "choose a current activity"
        raise BusinessRuleError(
            f"{catalog.canonical(questionnaire)} is {status} and cannot be assigned; {hint}"
        )
    return questionnaire


def _plan_title(questionnaire: Mapping[str, Any], details: HomeworkDetails) -> str:
    name = questionnaire.get("title") or questionnaire.get("name") or "activity"
    return f"{details.wording[:1].upper()}{details.wording[1:]}: {name}"


def assign(
    store: Store,
    assignment: Assignment,
    *,
    events: Events | None = None,
    now: datetime | None = None,
    horizon_days: int = 14,
) -> AssignResult:
    """Assign one activity: a one-off Task, or a CarePlan plus its first Tasks.

    The activity must be an ``active`` Questionnaire. A one-off due time must lie
    ahead. A recurring plan is written with the Tasks of its occurrences due in the
    next ``horizon_days`` in one transaction; the materializer creates the rest later.
    Publishes ``task_created`` per Task and ``plan_created``.
    """
    moment = utc_now(now)
    questionnaire = assignable(store, assignment.activity)
    canonical = catalog.canonical(questionnaire)
    details = assignment.details
    schedule = assignment.schedule
    if schedule.frequency == "once":
        due = schedule.due_on(schedule.start)
        if due <= moment:
            raise BusinessRuleError(
                f"The due time {due.isoformat()} has already passed; choose a later one"
            )
        task = build_task(
            canonical=canonical,
            patient=assignment.patient,
            practitioner=assignment.practitioner,
            details=details,
            due=due,
            opens=moment,
            now=moment,
            encounter=assignment.encounter,
        )
        stored = store.create(task).resource
        publish(events, TASK_CREATED, store=store, task=stored)
        return AssignResult(tasks=(stored,), warnings=details.warnings)
    plan = new_plan(
        patient=assignment.patient,
        practitioner=assignment.practitioner,
        title=assignment.title or _plan_title(questionnaire, details),
        encounter=assignment.encounter,
        now=moment,
        activities=[plan_activity(canonical, schedule, details, moment, assignment.patient)],
        start=schedule.start,
        end=schedule.last_date,
    )
    stored_plan, tasks = write_plan(
        store, plan, now=moment, horizon_days=horizon_days, events=events
    )
    return AssignResult(tasks=tuple(tasks), plan=stored_plan, warnings=details.warnings)


def plan_activity(
    canonical: str,
    schedule: Schedule,
    details: HomeworkDetails,
    moment: datetime,
    patient: str,
    *,
    status: str = "scheduled",
) -> dict[str, Any]:
    """Return a CarePlan.activity for a Questionnaire on a schedule (released at ``moment``)."""
    detail = {
        "kind": "Task",
        "instantiatesCanonical": [canonical],
        "status": status,
        "scheduledTiming": schedule.to_fhir_timing(),
        "performer": [{"reference": patient}],
    }
    activity = {"detail": details.apply_to_detail(detail)}
    return set_occurrences_from(activity, moment) if status == "scheduled" else activity


def new_plan(
    *,
    patient: str,
    practitioner: str,
    title: str,
    encounter: str | None,
    now: datetime,
    activities: list[dict[str, Any]],
    start: date,
    end: date | None,
    description: str | None = None,
    instantiates_uri: str | None = None,
) -> dict[str, Any]:
    """Return a new homework CarePlan (active, intent plan) with a fresh id, not stored yet."""
    plan: dict[str, Any] = {"resourceType": "CarePlan", "id": str(uuid.uuid4())}
    if instantiates_uri:
        plan["instantiatesUri"] = [instantiates_uri]
    plan.update(
        {
            "status": "active",
            "intent": "plan",
            "category": [copy.deepcopy(HOMEWORK_CATEGORY)],
            "title": title,
        }
    )
    if description:
        plan["description"] = description
    plan["subject"] = {"reference": patient}
    if encounter:
        plan["encounter"] = {"reference": encounter}
    period = {"start": start.isoformat()}
    if end is not None:
        period["end"] = end.isoformat()
    plan.update(
        {
            "period": period,
            "created": instant(now),
            "author": {"reference": practitioner},
            "activity": activities,
        }
    )
    return plan


def write_plan(
    store: Store, plan: dict[str, Any], *, now: datetime, horizon_days: int, events: Events | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Store a new CarePlan and the Tasks of its first ``horizon_days`` in one transaction."""
    until = now + timedelta(days=horizon_days)
    tasks = [
        task
        for index, activity in enumerate(plan["activity"])
        if (activity.get("detail") or {}).get("status") == "scheduled"
        for task in occurrence_tasks(plan, index, until=until, now=now)
    ]
    entries = [{"resource": plan, "request": {"method": "PUT", "url": f"CarePlan/{plan['id']}"}}]
    entries += [create_entry(task) for task in tasks]
    response = transact(store, entries)
    stored_plan = response[0]["resource"]
    stored_tasks = [entry["resource"] for entry in response[1:] if _created(entry)]
    for task in stored_tasks:
        publish(events, TASK_CREATED, store=store, task=task)
    publish(events, PLAN_CREATED, store=store, plan=stored_plan, tasks=stored_tasks)
    return stored_plan, stored_tasks


# -- edit and cancel ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AssignmentEdit:
    """Changes to an assignment; a field left None stays as it is ("" clears a text)."""

    instructions: str | None = None
    rationale: str | None = None
    example: str | None = None
    wording: str | None = None
    confidence: int | None = None
    reminder_channel: str | None = None
    due: datetime | None = None
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        if self.due is not None and (not isinstance(self.due, datetime) or self.due.tzinfo is None):
            raise InvalidInput(
                "due must be a timezone-aware datetime",
                issues=[Issue("due must be a timezone-aware datetime", expression="due")],
            )
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise InvalidInput("schedule must be a Schedule")

    def details(self, current: HomeworkDetails) -> HomeworkDetails:
        """Return the current details with this edit applied."""
        changes = {
            name: getattr(self, name)
            for name in (
                "instructions",
                "rationale",
                "example",
                "wording",
                "confidence",
                "reminder_channel",
            )
            if getattr(self, name) is not None
        }
        if changes.get("reminder_channel") == "":
            changes["reminder_channel"] = None
        return replace(current, **changes)


def _split_ref(ref: str) -> tuple[str, str]:
    kind, _, rid = ref.strip().partition("/")
    if kind not in ("Task", "CarePlan") or not _ID.match(rid or ""):
        raise InvalidInput(f"{ref!r} is not a Task or CarePlan reference")
    return kind, rid


def edit_assignment(
    store: Store,
    ref: str,
    edit: AssignmentEdit,
    *,
    activity_index: int = 0,
    events: Events | None = None,
    now: datetime | None = None,
    horizon_days: int = 14,
) -> AssignResult:
    """Change a one-off Task (``Task/<id>``) or a recurring plan's activity (``CarePlan/<id>``).

    A Task must still be open; its due time may move (to the future). For a plan, the
    details are rewritten on the activity and on its Tasks not started yet; a new
    ``schedule`` stops the old activity (its future, not-started Tasks are cancelled)
    and adds the rescheduled one, whose Tasks are created at once. Completed work is
    never touched.
    """
    moment = utc_now(now)
    kind, rid = _split_ref(ref)
    if kind == "Task":
        return _edit_task(store, rid, edit, moment, events)
    return _edit_plan(store, rid, edit, activity_index, moment, events, horizon_days)


def _edit_task(
    store: Store, rid: str, edit: AssignmentEdit, moment: datetime, events: Events | None
) -> AssignResult:
    task = store.read("Task", rid).resource
    if task.get("status") not in OPEN_STATUSES:
        raise BusinessRuleError(
            f"Task/{rid} is {task.get('status')}; only open homework can be edited"
        )
    if edit.schedule is not None:
        raise BusinessRuleError("A single Task has no schedule; give a new due time instead")
    details = edit.details(HomeworkDetails.from_task(task))
    updated = details.apply_to_task(task)
    if edit.due is not None:
        if edit.due <= moment:
            raise BusinessRuleError("The new due time has already passed")
        period = dict((task.get("restriction") or {}).get("period") or {})
        period["end"] = instant(edit.due)
        if period.get("start") and parse_instant(period["start"]) > edit.due:
            period["start"] = instant(moment)
        updated["restriction"] = {"period": period}
    updated["lastModified"] = instant(moment)
    stored = transact(store, [status_entry(updated)])[0]["resource"]
    return AssignResult(tasks=(stored,), warnings=details.warnings)


def _edit_plan(
    store: Store,
    rid: str,
    edit: AssignmentEdit,
    index: int,
    moment: datetime,
    events: Events | None,
    horizon_days: int,
) -> AssignResult:
    plan = store.read("CarePlan", rid).resource
    if plan.get("status") not in ("active", "on-hold"):
        raise BusinessRuleError(f"CarePlan/{rid} is {plan.get('status')} and cannot be edited")
    activities = list(plan.get("activity") or [])
    if not 0 <= index < len(activities):
        raise NotFound(f"CarePlan/{rid} has no activity {index}")
    activity = activities[index]
    detail = activity.get("detail") or {}
    if detail.get("status") in ("completed", "cancelled", "stopped"):
        raise BusinessRuleError(f"Activity {index} of CarePlan/{rid} is {detail.get('status')}")
    details = edit.details(HomeworkDetails.from_detail(detail))
    open_tasks = [
        t for t in plan_tasks(store, rid, NOT_STARTED_STATUSES) if task_activity(t) == index
    ]
    entries: list[dict[str, Any]] = []
    changed: list[tuple[dict[str, Any], str]] = []
    if edit.schedule is not None:
        if plan.get("instantiatesUri"):
            raise BusinessRuleError("A pathway step keeps the pathway's schedule; skip it instead")
        activities[index] = dict(activity, detail=dict(detail, status="stopped"))
        activities.append(
            plan_activity(
                detail["instantiatesCanonical"][0],
                edit.schedule,
                details,
                moment,
                plan["subject"]["reference"],
            )
        )
        for task in open_tasks:
            due = task_due(task)
            if due is None or due > moment:
                cancelled = with_business_status(
                    dict(
                        task,
                        status="cancelled",
                        statusReason={"text": "Rescheduled"},
                        lastModified=instant(moment),
                    ),
                    "rescheduled",
                )
                entries.append(status_entry(cancelled))
                changed.append((cancelled, task["status"]))
    else:
        activities[index] = dict(activity, detail=details.apply_to_detail(detail))
        for task in open_tasks:
            updated = details.apply_to_task(task)
            updated["lastModified"] = instant(moment)
            entries.append(status_entry(updated))
    changed_plan = dict(plan, activity=activities)
    if edit.schedule is not None:
        period = {
            "start": (plan.get("period") or {}).get("start") or edit.schedule.start.isoformat()
        }
        last = edit.schedule.last_date
        if last is not None:
            period["end"] = last.isoformat()
        changed_plan["period"] = period
    response = transact(store, [status_entry(changed_plan), *entries])
    stored_plan = response[0]["resource"]
    for (_, previous), entry in zip(changed, response[1 : 1 + len(changed)], strict=True):
        publish(
            events,
            TASK_STATUS_CHANGED,
            store=store,
            task=entry["resource"],
            previous_status=previous,
        )
    created: list[dict[str, Any]] = []
    if edit.schedule is not None and stored_plan.get("status") == "active":
        until = moment + timedelta(days=horizon_days)
        new_tasks = occurrence_tasks(stored_plan, len(activities) - 1, until=until, now=moment)
        for entry in transact(store, [create_entry(t) for t in new_tasks]):
            if _created(entry):
                created.append(entry["resource"])
                publish(events, TASK_CREATED, store=store, task=entry["resource"])
    return AssignResult(tasks=tuple(created), plan=stored_plan, warnings=details.warnings)


def task_activity(task: Mapping[str, Any]) -> int | None:
    """Return which CarePlan activity a plan occurrence Task belongs to (None: not one)."""
    for ident in task.get("identifier") or []:
        if ident.get("system") == TASK_OCCURRENCE_SYSTEM:
            parts = str(ident.get("value", "")).split("/")
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


def cancel_assignment(
    store: Store,
    ref: str,
    *,
    reason: str = "Cancelled by the clinician",
    events: Events | None = None,
    now: datetime | None = None,
) -> AssignResult:
    """Cancel a Task (unless it is finished already) or a whole plan (see plans.cancel_plan).

    Completed, failed and cancelled Tasks are left as they are.
    """
    moment = utc_now(now)
    kind, rid = _split_ref(ref)
    if kind == "CarePlan":
        plan, tasks = cancel_plan_tasks(store, rid, reason=reason, now=moment, events=events)
        return AssignResult(tasks=tuple(tasks), plan=plan)
    task = store.read("Task", rid).resource
    if task.get("status") in TERMINAL_STATUSES:
        return AssignResult(tasks=(task,))
    cancelled = with_business_status(
        dict(task, status="cancelled", statusReason={"text": reason}, lastModified=instant(moment)),
        "assignment-cancelled",
    )
    stored = transact(store, [status_entry(cancelled)])[0]["resource"]
    publish(events, TASK_STATUS_CHANGED, store=store, task=stored, previous_status=task["status"])
    return AssignResult(tasks=(stored,))


def cancel_plan_tasks(
    store: Store,
    plan_id: str,
    *,
    reason: str,
    now: datetime,
    events: Events | None,
    plan_status: str = "revoked",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """End a CarePlan and cancel its future, not-started Tasks, in one transaction.

    Return the stored plan and the Tasks cancelled. Tasks in progress, finished, or
    whose due time has passed (the overdue sweep decides those) are left alone.
    """
    plan = store.read("CarePlan", plan_id).resource
    if plan.get("status") in ("revoked", "completed", "entered-in-error"):
        return plan, []
    activities = []
    for activity in plan.get("activity") or []:
        detail = dict(activity.get("detail") or {})
        if detail.get("status") == "not-started":
            detail["status"] = "cancelled"
        elif detail.get("status") in ("scheduled", "in-progress", "on-hold"):
            detail["status"] = "stopped"
        activities.append(dict(activity, detail=detail))
    ended = dict(plan, status=plan_status, activity=activities)
    period = dict(plan.get("period") or {})
    local_end = now.date().isoformat()
    if not period.get("end") or period["end"] > local_end:
        period["end"] = max(local_end, period.get("start", local_end))
    ended["period"] = period
    ended["note"] = list(plan.get("note") or []) + [{"time": instant(now), "text": reason}]
    future = [
        t
        for t in plan_tasks(store, plan_id, NOT_STARTED_STATUSES)
        if (task_due(t) or now + timedelta(seconds=1)) > now
    ]
    cancelled = [
        with_business_status(
            dict(t, status="cancelled", statusReason={"text": reason}, lastModified=instant(now)),
            "plan-cancelled",
        )
        for t in future
    ]
    response = transact(store, [status_entry(ended), *map(status_entry, cancelled)])
    stored = [entry["resource"] for entry in response[1:]]
    for task, before in zip(stored, future, strict=True):
        publish(
            events, TASK_STATUS_CHANGED, store=store, task=task, previous_status=before["status"]
        )
    return response[0]["resource"], stored
