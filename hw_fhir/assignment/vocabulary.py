"""The codes, URLs and status sets of homework Tasks and CarePlans.

What each one means is written in the package doc (:mod:`hw_fhir.assignment`).
"""

from __future__ import annotations

from .. import catalog

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
#: CarePlan.activity.detail statuses of a step still to be done (released or not yet).
LIVE_ACTIVITY_STATUSES = frozenset({"scheduled", "not-started", "in-progress", "on-hold"})
#: Confidence (0–10) below which the assignment comes back with a warning.
LOW_CONFIDENCE = 7
