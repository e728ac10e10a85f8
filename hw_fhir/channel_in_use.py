"""Which reminder channel reaches a patient now: what the reminder sweep would choose.

The sweep (:mod:`hw_fhir.reminders`) reads the patient's preferences at send time and asks
the ``channel_for`` hook among the installed channels that can reach the patient, with the
Task's own channel first. :func:`channel_in_use` asks the same question for the patient's
latest open homework, so the preferences page shows the channel actually in use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .assignment import OPEN_STATUSES
from .plugins import channels as installed
from .reminders import preferences
from .store.base import iter_all

__all__ = ["channel_in_use"]

_OPEN = ",".join(sorted(OPEN_STATUSES - {"on-hold"}))


def _latest_open_task(store: Any, patient_ref: str) -> dict[str, Any] | None:
    tasks = iter_all(store, "Task", [("patient", patient_ref), ("status", _OPEN)])
    if not tasks:
        return None
    return max(tasks, key=lambda t: str(t.get("authoredOn") or ""))


def channel_in_use(services: Any, patient: Mapping[str, Any]) -> str | None:
    """Return the channel the next reminder would go by (``"none"``: the patient chose none).

    None when no installed channel can reach the patient.
    """
    prefs = preferences(patient)
    if prefs.channel == "none":
        return "none"
    available: dict[str, Any] = {}
    for name, channel in installed(services.plugins, services.settings).items():
        try:
            if channel.address(patient):
                available[name] = channel
        except Exception:  # noqa: BLE001 - a broken plugin channel reaches nobody
            continue
    if not available:
        return None
    task = _latest_open_task(services.store, f"Patient/{patient['id']}")
    name = services.plugins.hook.channel_for(
        recipient=patient, task=task, request=None, communication_request=None,
        channels=available, preferences=prefs, settings=services.settings, services=services)
    return str(name) if name in available else next(iter(available))
