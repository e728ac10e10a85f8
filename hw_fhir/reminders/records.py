"""The FHIR records of reminders: their code and identifier systems, and stable resource ids.

Each homework Task gets one ``CommunicationRequest`` (the plan, identifier
:data:`REMINDER_PLAN_SYSTEM` ``|<task id>``); every send attempt is one
``Communication`` (identifier :data:`ATTEMPT_SYSTEM` ``|<idempotency key>``) whose
``id`` is derived from that key (:func:`resource_id`), so recording an attempt twice
stores it once.
"""

from __future__ import annotations

import uuid

__all__ = ["COMMUNICATION_CATEGORY_SYSTEM", "REMINDER_PLAN_SYSTEM", "ATTEMPT_SYSTEM",
           "REMINDER_CATEGORY", "resource_id"]

COMMUNICATION_CATEGORY_SYSTEM = "http://hw-fhir.org/fhir/CodeSystem/communication-category"
REMINDER_PLAN_SYSTEM = "http://hw-fhir.org/fhir/sid/reminder-plan"
ATTEMPT_SYSTEM = "http://hw-fhir.org/fhir/sid/communication-attempt"
#: ``category`` of reminder plans and attempts.
REMINDER_CATEGORY = {"coding": [{"system": COMMUNICATION_CATEGORY_SYSTEM, "code": "reminder",
                                 "display": "Homework reminder"}]}


_ID_NAMESPACE = uuid.UUID("6f0c5c1e-4b1d-5a9e-9c3e-2f6a3c1b7d10")


def resource_id(kind: str, key: str) -> str:
    """Return the stable id of the resource recording ``key`` (a plan's Task id, an attempt key).

    Writing it with a PUT by this id makes recording idempotent: a worker that redoes
    an interrupted job finds the resource instead of creating a second one.
    """
    return str(uuid.uuid5(_ID_NAMESPACE, f"{kind}:{key}"))
