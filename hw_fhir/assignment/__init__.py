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
                  (plan occurrences only: makes materializing idempotent), or
                  http://hw-fhir.org/fhir/sid/assignment-request|<key> (a one-off assigned
                  with an idempotency key: makes sending the same assignment twice harmless)
    basedOn       the CarePlan (plan occurrences only)
    encounter     the session it was agreed in (optional)

The CarePlan (with an idempotency key: ``identifier`` assignment-request as above, and an
id derived from it): ``status`` active, ``intent`` plan, ``subject``, ``author``, ``category``
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

The package, one concept a module: :mod:`.vocabulary` (codes, URLs, status sets),
:mod:`.instants` and :mod:`.references` (FHIR values), :mod:`.extensions`,
:mod:`.task_fields` (reading and marking a Task), :mod:`.transactions` (transaction
entries), :mod:`.details` (:class:`HomeworkDetails`), :mod:`.request` (:class:`Assignment`,
:class:`AssignResult`), :mod:`.task_builder` (:func:`build_task`), :mod:`.occurrences`
(a recurring activity's occurrences and their Tasks), :mod:`.care_plans` (new and written
plans), :mod:`.duplicates` (a patient's active assignments of an activity, a request sent twice),
:mod:`.assigning` (:func:`assign`), :mod:`.editing` (:func:`edit_assignment`) and
:mod:`.cancelling` (:func:`cancel_assignment`).
"""

from __future__ import annotations

from .assigning import assign, assignable
from .cancelling import cancel_assignment, cancel_plan_tasks
from .care_plans import new_plan, plan_activity, plan_tasks, write_plan
from .details import HomeworkDetails
from .duplicates import ASSIGNMENT_REQUEST_SYSTEM, active_assignments_of
from .editing import AssignmentEdit, edit_assignment
from .extensions import without_extensions
from .instants import instant, parse_instant, utc_now
from .occurrences import (
    activity_schedule,
    occurrence_identifier,
    occurrence_tasks,
    occurrences_from,
    set_occurrences_from,
)
from .references import encounter_reference, reference
from .request import Assignment, AssignResult
from .task_builder import build_task
from .task_fields import business_status, task_activity, task_canonical, task_due, with_business_status
from .transactions import create_entry, status_entry, transact
from .vocabulary import (
    BUSINESS_STATUS_SYSTEM,
    CARE_PLAN_CATEGORY_SYSTEM,
    COMPLETE_QUESTIONNAIRE,
    EXT_EXAMPLE,
    EXT_HOMEWORK_LABEL,
    EXT_NOTE_KIND,
    EXT_OCCURRENCES_FROM,
    EXT_PATIENT_CONFIDENCE,
    EXT_RATIONALE,
    EXT_REMINDER_CHANNEL,
    HOMEWORK_CATEGORY,
    LIVE_ACTIVITY_STATUSES,
    LOW_CONFIDENCE,
    NOT_STARTED_STATUSES,
    OPEN_STATUSES,
    SDC_TASK_PROFILE,
    SDC_TEMP_SYSTEM,
    STRUCTURE_BASE,
    TASK_OCCURRENCE_SYSTEM,
    TERMINAL_STATUSES,
)

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
    "ASSIGNMENT_REQUEST_SYSTEM",
    "BUSINESS_STATUS_SYSTEM",
    "CARE_PLAN_CATEGORY_SYSTEM",
    "HOMEWORK_CATEGORY",
    "NOT_STARTED_STATUSES",
    "LIVE_ACTIVITY_STATUSES",
    "OPEN_STATUSES",
    "TERMINAL_STATUSES",
    "LOW_CONFIDENCE",
    "HomeworkDetails",
    "Assignment",
    "AssignmentEdit",
    "AssignResult",
    "assign",
    "active_assignments_of",
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
