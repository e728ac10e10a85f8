"""Doing homework: save a draft, submit, amend — always against the Task's exact Questionnaire.

* :func:`save_draft` — the QuestionnaireResponse is ``in-progress`` (required items may
  still be empty) and the Task ``in-progress`` (``executionPeriod.start`` set).
* :func:`submit_response` — the response is ``completed``; the Task ``completed`` with
  ``output`` type ``http://hl7.org/fhir/uv/sdc/CodeSystem/temp#questionnaire-response``
  → the response, ``executionPeriod`` start/end, and businessStatus ``on-time`` or
  ``late`` (after ``restriction.period.end``; allowed while the Task is open, i.e. until
  the overdue sweep marks it ``failed``).
* :func:`amend_response` — a new version of a submitted response with status
  ``amended``; the earlier version stays in the response's history.

The response is validated (:func:`hw_fhir.responses.validate_response`) against the
Questionnaire version the Task names (``input`` ``questionnaire`` ``valueCanonical``, or
``focus``); a response naming another questionnaire or version is rejected. The Task
must be for the patient submitting. Each Task has at most one response: it carries the
identifier ``http://hw-fhir.org/fhir/sid/task-response|<task id>``, for a plan's
Task ``basedOn`` → the CarePlan, and the Task's ``encounter`` (the session the homework
was assigned in, from the launch) as its own. The response write and the Task write are one store
transaction, with If-Match on both, so nothing is ever half-written and a concurrent
change fails cleanly (:class:`~hw_fhir.errors.VersionConflict`). A caller that saw the
response at some version (a page opened earlier, answers filled offline) passes
``if_match``: the ``versionId`` it saw ("" for no response yet); when the stored response
has moved on (another device saved meanwhile) nothing is written and VersionConflict says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from . import catalog
from .assignment import (
    OPEN_STATUSES,
    SDC_TEMP_SYSTEM,
    business_status,
    instant,
    reference,
    status_entry,
    task_canonical,
    task_due,
    transact,
    utc_now,
    with_business_status,
)
from .errors import (
    BusinessRuleError,
    Forbidden,
    InvalidInput,
    InvalidResponse,
    Issue,
    NotFound,
    VersionConflict,
)
from .events import RESPONSE_COMPLETED, RESPONSE_SAVED, TASK_STATUS_CHANGED, Events, publish
from .library import resolve_questionnaire
from .models import validated_as_amended
from .responses import validate_response
from .store.base import Store

__all__ = [
    "check_version",
    "RESPONSE_TASK_SYSTEM",
    "SDC_RESPONSE_PROFILE",
    "CompletionResult",
    "save_draft",
    "submit_response",
    "amend_response",
    "record_answer",
    "check_open",
    "advance_task",
    "task_output",
    "publish_answer",
    "task_questionnaire",
    "response_for_task",
]

#: ``QuestionnaireResponse.identifier`` system; the value is the id of the Task answered.
RESPONSE_TASK_SYSTEM = f"{catalog.CANONICAL_BASE}/sid/task-response"
SDC_RESPONSE_PROFILE = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaireresponse"
_COPIED = ("item", "language", "extension")


@dataclass(frozen=True)
class CompletionResult:
    """The stored Task and QuestionnaireResponse after a save, submit or amendment."""

    task: dict[str, Any]
    response: dict[str, Any]
    late: bool = False


def task_questionnaire(store: Store, task: Mapping[str, Any]) -> dict[str, Any]:
    """Return the exact Questionnaire version a Task asks to complete."""
    ref = task_canonical(task)
    if not ref:
        raise BusinessRuleError(f"Task/{task.get('id')} names no Questionnaire to complete")
    try:
        return resolve_questionnaire(store, ref)
    except NotFound:
        raise BusinessRuleError(
            f"Task/{task.get('id')} asks for {ref}, which is not stored"
        ) from None


def response_for_task(store: Store, task_id: str) -> dict[str, Any] | None:
    """Return the QuestionnaireResponse answering a Task (draft or submitted), or None."""
    found = store.search(  # the first match alone, no count (one statement on the SQL store)
        "QuestionnaireResponse", [("identifier", f"{RESPONSE_TASK_SYSTEM}|{task_id}"),
                                  ("_count", "1"), ("_total", "none")]
    )
    return found.matches[0].resource if found.matches else None


def _task_id(task_ref: str) -> str:
    return reference("Task", task_ref).split("/", 1)[1]


def _load(store: Store, task_ref: str, patient: str) -> tuple[dict[str, Any], str]:
    task = store.read("Task", _task_id(task_ref)).resource
    patient_ref = reference("Patient", patient)
    if (task.get("for") or {}).get("reference") != patient_ref:
        raise Forbidden(f"Task/{task['id']} is not homework of {patient_ref}")
    return task, patient_ref


def check_open(task: Mapping[str, Any]) -> None:
    """Raise BusinessRuleError unless answers can still be saved for the Task."""
    status = task.get("status")
    if status in OPEN_STATUSES and status != "on-hold":
        return
    messages = {
        "completed": "has been submitted already; amend the response instead",
        "failed": "was not completed in time and is closed",
        "cancelled": "was cancelled by the clinician",
        "on-hold": "is paused by the clinician",
    }
    raise BusinessRuleError(f"Task/{task.get('id')} {messages.get(str(status), f'is {status}')}")


def _build_response(
    task: Mapping[str, Any],
    questionnaire: Mapping[str, Any],
    given: Any,
    *,
    patient: str,
    status: str,
    moment: datetime,
) -> dict[str, Any]:
    if not isinstance(given, Mapping):
        raise InvalidInput("The response must be a JSON object")
    if given.get("resourceType") not in (None, "QuestionnaireResponse"):
        raise InvalidResponse(
            f"Expected a QuestionnaireResponse, not a {given.get('resourceType')}",
            issues=[
                Issue(
                    f"Expected a QuestionnaireResponse, not a {given.get('resourceType')}",
                    expression="resourceType",
                )
            ],
        )
    subject = (given.get("subject") or {}).get("reference")
    if subject not in (None, patient):
        raise Forbidden(f"A response for {patient} cannot be about {subject}")
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "meta": {"profile": [SDC_RESPONSE_PROFILE]},
        "identifier": {"system": RESPONSE_TASK_SYSTEM, "value": task["id"]},
    }
    plans = [
        ref
        for ref in task.get("basedOn") or []
        if str(ref.get("reference", "")).startswith("CarePlan/")
    ]
    if plans:
        response["basedOn"] = [dict(ref) for ref in plans]
    if task.get("encounter"):
        response["encounter"] = dict(task["encounter"])
    response.update(
        {
            "questionnaire": given.get("questionnaire") or catalog.canonical(questionnaire),
            "status": status,
            "subject": {"reference": patient},
            "authored": instant(moment),
            "author": {"reference": patient},
        }
    )
    response.update({key: given[key] for key in _COPIED if key in given})
    return response


def task_output(response_ref: str) -> list[dict[str, Any]]:
    """Return ``Task.output``: type ``questionnaire-response`` → the response."""
    return [
        {
            "type": {
                "coding": [
                    {
                        "system": SDC_TEMP_SYSTEM,
                        "code": "questionnaire-response",
                        "display": "Questionnaire Response",
                    }
                ]
            },
            "valueReference": {"reference": response_ref},
        }
    ]


def advance_task(
    task: Mapping[str, Any], *, final: bool, now: datetime | None = None
) -> tuple[dict[str, Any], bool]:
    """Return the Task after a draft (``in-progress``) or a submission (``completed``), and lateness.

    ``executionPeriod.start`` is kept or set, ``end`` set on submission with businessStatus
    ``on-time`` or ``late``; ``output`` is left to the writer, who knows the response's reference.
    """
    moment = utc_now(now)
    new_task = dict(task, lastModified=instant(moment))
    period = dict(task.get("executionPeriod") or {})
    period.setdefault("start", instant(moment))
    late = False
    if final:
        period["end"] = instant(moment)
        due = task_due(task)
        late = due is not None and moment > due
        new_task = with_business_status(
            dict(new_task, status="completed"), "late" if late else "on-time"
        )
    else:
        new_task["status"] = "in-progress"
    new_task["executionPeriod"] = period
    return new_task, late


def publish_answer(
    events: Events | None,
    store: Store,
    *,
    task_before: Mapping[str, Any],
    task: dict[str, Any],
    response: dict[str, Any],
    questionnaire: Mapping[str, Any],
) -> None:
    """Announce a stored draft or submission: ``task_status_changed``, then ``response_*``."""
    if task.get("status") != task_before.get("status"):
        publish(
            events,
            TASK_STATUS_CHANGED,
            store=store,
            task=task,
            previous_status=task_before.get("status"),
        )
    if response.get("status") == "completed":
        publish(
            events,
            RESPONSE_COMPLETED,
            store=store,
            response=response,
            task=task,
            questionnaire=questionnaire,
            amended=False,
        )
    else:
        publish(events, RESPONSE_SAVED, store=store, response=response, task=task)


def _write(
    store: Store,
    task: dict[str, Any],
    new_task: dict[str, Any],
    response: dict[str, Any],
    existing: Mapping[str, Any] | None,
    if_match: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the response and the Task in one transaction; return both as stored."""
    sent = response
    if existing is not None:
        response = dict(
            response,
            id=existing["id"],
            meta=dict(response.get("meta") or {}, versionId=existing["meta"]["versionId"]),
        )
        response_entry = status_entry(response)
        target = f"QuestionnaireResponse/{existing['id']}"
    elif response.get("id"):
        response_entry = status_entry(response)
        if if_match:
            response_entry["request"]["ifMatch"] = if_match
        target = response_entry["request"]["url"]
    else:
        target = f"urn:uuid:{uuid.uuid4()}"
        response_entry = {
            "fullUrl": target,
            "resource": response,
            "request": {
                "method": "POST",
                "url": "QuestionnaireResponse",
                "ifNoneExist": urlencode([("identifier", f"{RESPONSE_TASK_SYSTEM}|{task['id']}")]),
            },
        }
    if new_task.get("status") == "completed":
        new_task["output"] = task_output(target)
    if response_entry["resource"] is not sent:  # a copy with id (meta as If-Match): checked by
        validated_as_amended(response_entry["resource"], sent)  # what changed, if ``sent`` passed
    entries = [response_entry, status_entry(new_task)]
    stored = transact(store, entries)
    return stored[1]["resource"], stored[0]["resource"]


def _save(
    store: Store,
    task_ref: str,
    given: Any,
    *,
    patient: str,
    final: bool,
    events: Events | None,
    now: datetime | None,
    if_match: str | None = None,
) -> CompletionResult:
    moment = utc_now(now)
    task, patient_ref = _load(store, task_ref, patient)
    check_open(task)
    questionnaire = task_questionnaire(store, task)
    existing = response_for_task(store, task["id"])
    if existing is not None and existing.get("status") != "in-progress":
        raise BusinessRuleError(f"Task/{task['id']} has a submitted response; amend it instead")
    check_version(existing, if_match)
    response = _build_response(
        task,
        questionnaire,
        given,
        patient=patient_ref,
        status="completed" if final else "in-progress",
        moment=moment,
    )
    return record_answer(
        store, task, questionnaire, response, existing=existing, final=final, events=events,
        now=moment,
    )


def record_answer(
    store: Store,
    task: dict[str, Any],
    questionnaire: Mapping[str, Any],
    response: dict[str, Any],
    *,
    existing: Mapping[str, Any] | None,
    final: bool,
    events: Events | None = None,
    now: datetime | None = None,
    if_match: str | None = None,
) -> CompletionResult:
    """Store a built response for an open Task and move the Task on, in one transaction.

    The one code path behind :func:`save_draft`, :func:`submit_response` and the SDC
    workflow of responses written through the API (:mod:`hw_fhir.task_workflow`):
    the response is validated against ``questionnaire`` (required items only when
    ``final``); the Task becomes ``in-progress`` (draft) or ``completed`` with
    ``output`` → the response, ``executionPeriod`` and businessStatus ``on-time`` /
    ``late``. ``existing`` is the Task's stored response (written over, If-Match on its
    version); otherwise a response with an ``id`` is PUT under that id, one without
    is created (``if_match``: the version a PUT under an id must replace). Events are
    published after the write.
    """
    validate_response(questionnaire, response, final=final)
    new_task, late = advance_task(task, final=final, now=now)
    stored_task, stored_response = _write(
        store, task, new_task, response, existing, if_match
    )
    publish_answer(
        events,
        store,
        task_before=task,
        task=stored_task,
        response=stored_response,
        questionnaire=questionnaire,
    )
    return CompletionResult(task=stored_task, response=stored_response, late=late)


def check_version(existing: Mapping[str, Any] | None, if_match: str | None) -> None:
    """Raise VersionConflict unless the stored response is at ``if_match`` ("" = none yet).

    ``if_match`` may be an ETag (``W/"3"``); None skips the check.
    """
    if if_match is None:
        return
    wanted = if_match.strip().removeprefix("W/").strip('"')
    current = str(((existing or {}).get("meta") or {}).get("versionId") or "")
    if wanted != current:
        raise VersionConflict("These answers were changed on another device after this page was "
                              "opened; nothing was overwritten")


def save_draft(
    store: Store,
    task: str,
    response: Any,
    *,
    patient: str,
    events: Events | None = None,
    now: datetime | None = None,
    if_match: str | None = None,
) -> CompletionResult:
    """Save answers so far: response ``in-progress``, Task ``in-progress``.

    Answers are checked (types, options, enableWhen...) but required items may be
    missing. Raise InvalidResponse (per-item issues), Forbidden (not the patient's Task)
    or BusinessRuleError (the Task is closed); nothing is stored then.
    """
    return _save(store, task, response, patient=patient, final=False, events=events, now=now,
                 if_match=if_match)


def submit_response(
    store: Store,
    task: str,
    response: Any,
    *,
    patient: str,
    events: Events | None = None,
    now: datetime | None = None,
    if_match: str | None = None,
) -> CompletionResult:
    """Submit the answers: response ``completed``, Task ``completed`` with its output.

    Late submissions (after the due time, before the sweep closes the Task) are
    accepted and marked ``late``. Errors as for :func:`save_draft`, plus ``required``.
    """
    return _save(store, task, response, patient=patient, final=True, events=events, now=now,
                 if_match=if_match)


def amend_response(
    store: Store,
    task: str,
    response: Any,
    *,
    patient: str,
    events: Events | None = None,
    now: datetime | None = None,
) -> CompletionResult:
    """Correct a submitted response: a new version, status ``amended`` (history keeps the old)."""
    moment = utc_now(now)
    current_task, patient_ref = _load(store, task, patient)
    if current_task.get("status") != "completed":
        raise BusinessRuleError(
            f"Task/{current_task['id']} is {current_task.get('status')}; only "
            "a submitted response can be amended"
        )
    existing = response_for_task(store, current_task["id"])
    if existing is None or existing.get("status") not in ("completed", "amended"):
        raise BusinessRuleError(f"Task/{current_task['id']} has no submitted response to amend")
    questionnaire = task_questionnaire(store, current_task)
    amended = _build_response(
        current_task, questionnaire, response, patient=patient_ref, status="amended", moment=moment
    )
    validate_response(questionnaire, amended, final=True)
    amended = dict(
        amended,
        id=existing["id"],
        meta=dict(amended["meta"], versionId=existing["meta"]["versionId"]),
    )
    stored = transact(store, [status_entry(amended)])[0]["resource"]
    publish(
        events,
        RESPONSE_COMPLETED,
        store=store,
        response=stored,
        task=current_task,
        questionnaire=questionnaire,
        amended=True,
    )
    return CompletionResult(
        task=current_task, response=stored, late=business_status(current_task) == "late"
    )
