"""Is a reminder channel possible for this patient? Checked when homework is assigned.

A channel chosen at assignment must be installed on this server (a built-in or a
plugin's, :func:`hw_fhir.plugins.channels`) and able to reach the patient (the
channel's ``address(patient)``: an email address, a mobile number...). Otherwise the
choice is refused with a message that says what to do, instead of reminders that
can never be sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["channel_problem"]

_LABELS = {"email": "email", "sms": "text messages (SMS)"}
_WHAT = {"email": "an email address", "sms": "a mobile number"}


def _name(patient: Mapping[str, Any]) -> str:
    for name in patient.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        given = " ".join(name.get("given") or [])
        if given or name.get("family"):
            return f"{given} {name.get('family') or ''}".strip()
    return "This patient"


def channel_problem(patient: Mapping[str, Any], channel: str | None,
                    channels: Mapping[str, Any]) -> str | None:
    """Return why ``channel`` cannot remind ``patient`` (one sentence saying what to do), or None.

    ``channels`` are the installed channels by name. ``None`` and ``"none"`` (no
    reminders) are always possible.
    """
    if not channel or channel == "none":
        return None
    label = _LABELS.get(channel, f"the {channel!r} channel")
    reachable = [name for name, c in channels.items() if _reaches(c, patient)]
    others = " or ".join(_LABELS.get(n, n) for n in sorted(reachable) if n != channel)
    instead = f"choose {others}" if others else "choose no reminders"
    if channel not in channels:
        return (f"Reminders by {label} are not installed on this server: {instead}, or ask your "
                "administrator to install that channel.")
    if not _reaches(channels[channel], patient):
        what = _WHAT.get(channel, f"an address for {channel}")
        return (f"{_name(patient)} has no {what.removeprefix('an ').removeprefix('a ')} on file "
                f"for {label}: add {what} in the EHR, or {instead}.")
    return None


def _reaches(channel: Any, patient: Mapping[str, Any]) -> bool:
    try:
        return bool(channel.address(patient))
    except Exception:  # noqa: BLE001 - a broken plugin channel cannot reach anyone
        return False
