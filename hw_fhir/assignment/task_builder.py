"""Building a new SDC Task that asks the patient to complete a Questionnaire."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .details import HomeworkDetails
from .instants import instant
from .vocabulary import COMPLETE_QUESTIONNAIRE, SDC_TASK_PROFILE, SDC_TEMP_SYSTEM


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
