"""Built-in plugin: reminders follow the homework events, and the built-in channel choice.

* ``task_created`` queues the planning of the Task's reminders;
* ``task_status_changed`` to a closed status cancels its pending reminders at once;
* ``risk_raised`` queues the clinician alert for delivery;
* ``channel_for`` (``trylast``) is the default choice of channel.

Writes go to the queue table only (never a FHIR write), so a patient's submission is
never slowed or failed by reminders; the worker does the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .assignment import EXT_REMINDER_CHANNEL
from .hookspecs import hookimpl
from .reminders import enqueue_alert, enqueue_plan, stop_task_reminders

__all__ = ["task_created", "task_status_changed", "risk_raised", "channel_for"]

log = logging.getLogger("hw_fhir.reminders")


@hookimpl(tryfirst=True)
def task_created(store: Any, task: dict[str, Any]) -> None:
    """Queue the planning of a new homework Task's reminders."""
    enqueue_plan(store, task)


@hookimpl(tryfirst=True)
def task_status_changed(store: Any, task: dict[str, Any], previous_status: str) -> None:
    """Stop a Task's reminders the moment it is completed, cancelled or failed."""
    stop_task_reminders(store, task)


@hookimpl(tryfirst=True)
def risk_raised(store: Any, alert: dict[str, Any] | None) -> None:
    """Queue the delivery of a clinician risk alert at once."""
    if alert:
        enqueue_alert(store, alert)


def _task_channel(task: Mapping[str, Any] | None) -> str | None:
    for ext in (task or {}).get("extension") or []:
        if ext.get("url") == EXT_REMINDER_CHANNEL and ext.get("valueCode"):
            return str(ext["valueCode"])
    return None


@hookimpl(trylast=True)
def channel_for(recipient: Mapping[str, Any] | None, task: Mapping[str, Any] | None,
                channels: Mapping[str, Any], preferences: Any) -> str | None:
    """Choose: the Task's channel, the patient's preference, EHR inbox (clinicians), email, any."""
    wanted = [_task_channel(task), getattr(preferences, "channel", None)]
    if (recipient or {}).get("resourceType") in ("Practitioner", "PractitionerRole"):
        wanted.append("ehr-inbox")
    wanted.append("email")
    for name in wanted:
        if name and name in channels:
            return name
    return next(iter(channels), None)
