"""A patient's reminder preferences: reading them from the Patient, quiet hours, opting out.

On ``Patient.extension`` (written by the patient pages):

``http://hw-fhir.org/fhir/StructureDefinition/reminder-preferences`` (complex)
    ``channel`` (valueCode): preferred channel (``email``, ``sms``, a plugin's name);
    ``timeOfDay`` (valueTime): preferred local time for reminders;
    ``quietStart`` / ``quietEnd`` (valueTime): no reminders from start to end (may wrap
    midnight; default 21:00–08:00, :class:`~hw_fhir.reminders.policy.ReminderPolicy`);
    ``optOut`` (valueCode, repeats): channels never to use.
``http://hl7.org/fhir/StructureDefinition/timezone`` (valueCode)
    IANA time zone (default UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import VersionConflict
from .clock import local_moment, parse_time_of_day, zone_named
from .policy import ReminderPolicy

__all__ = ["STRUCTURE_BASE", "REMINDER_PREFERENCES_URL", "TIMEZONE_URL", "ReminderPreferences",
           "preferences", "opt_out"]

STRUCTURE_BASE = "http://hw-fhir.org/fhir/StructureDefinition"
REMINDER_PREFERENCES_URL = f"{STRUCTURE_BASE}/reminder-preferences"
TIMEZONE_URL = "http://hl7.org/fhir/StructureDefinition/timezone"


@dataclass(frozen=True)
class ReminderPreferences:
    """A patient's reminder preferences (see the module docs for the extension)."""

    channel: str | None = None
    time_of_day: time | None = None
    quiet_start: time | None = None
    quiet_end: time | None = None
    timezone: str = "UTC"
    opt_out: frozenset[str] = frozenset()

    @property
    def zone(self) -> ZoneInfo:
        """The patient's time zone."""
        return zone_named(self.timezone)

    def _quiet(self) -> tuple[time, time] | None:
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return None
        return self.quiet_start, self.quiet_end

    def in_quiet_hours(self, moment: datetime) -> bool:
        """Tell whether a moment falls in the patient's quiet hours (local time)."""
        quiet = self._quiet()
        if quiet is None:
            return False
        start, end = quiet
        local = moment.astimezone(self.zone).time().replace(tzinfo=None)
        if start < end:
            return start <= local < end
        return local >= start or local < end

    def next_allowed(self, moment: datetime) -> datetime:
        """Return the moment itself, or the end of the quiet hours it falls in."""
        if not self.in_quiet_hours(moment):
            return moment
        start, end = self._quiet()  # type: ignore[misc]
        local = moment.astimezone(self.zone)
        day = local.date()
        if start > end and local.time().replace(tzinfo=None) >= start:
            day += timedelta(days=1)
        return local_moment(day, end, self.zone)

    def previous_allowed(self, moment: datetime) -> datetime:
        """Return the moment itself, or just before the start of the quiet hours it falls in."""
        if not self.in_quiet_hours(moment):
            return moment
        start, end = self._quiet()  # type: ignore[misc]
        local = moment.astimezone(self.zone)
        day = local.date()
        if start > end and local.time().replace(tzinfo=None) < end:
            day -= timedelta(days=1)
        return local_moment(day, start, self.zone) - timedelta(minutes=1)


def _sub_values(ext: Mapping[str, Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for sub in ext.get("extension") or []:
        for key, value in sub.items():
            if key.startswith("value"):
                out.setdefault(str(sub.get("url")), []).append(value)
    return out


def preferences(patient: Mapping[str, Any] | None,
                policy: ReminderPolicy | None = None) -> ReminderPreferences:
    """Read a Patient's reminder preferences (policy defaults for missing quiet hours)."""
    policy = policy or ReminderPolicy()
    prefs: dict[str, Any] = {"quiet_start": policy.quiet_start, "quiet_end": policy.quiet_end}
    for ext in (patient or {}).get("extension") or []:
        if ext.get("url") == TIMEZONE_URL and isinstance(ext.get("valueCode"), str):
            prefs["timezone"] = ext["valueCode"]
        if ext.get("url") != REMINDER_PREFERENCES_URL:
            continue
        subs = _sub_values(ext)
        if subs.get("channel"):
            prefs["channel"] = str(subs["channel"][0])
        if subs.get("timeOfDay"):
            prefs["time_of_day"] = parse_time_of_day(subs["timeOfDay"][0])
        start = parse_time_of_day((subs.get("quietStart") or [None])[0])
        end = parse_time_of_day((subs.get("quietEnd") or [None])[0])
        if start is not None and end is not None:
            prefs["quiet_start"], prefs["quiet_end"] = start, end
        prefs["opt_out"] = frozenset(str(v) for v in subs.get("optOut", []))
    return ReminderPreferences(**prefs)


def opt_out(services: Any, patient_id: str, channel: str) -> bool:
    """Record that a patient opted out of a channel (e.g. replied STOP); True if it changed."""
    store = services.store
    for _ in range(5):
        stored = store.read("Patient", patient_id)
        patient = stored.resource
        extensions = list(patient.get("extension") or [])
        prefs = next((e for e in extensions if e.get("url") == REMINDER_PREFERENCES_URL), None)
        if prefs is None:
            prefs = {"url": REMINDER_PREFERENCES_URL, "extension": []}
            extensions.append(prefs)
        if any(s.get("url") == "optOut" and s.get("valueCode") == channel
               for s in prefs.get("extension") or []):
            return False
        index = extensions.index(prefs)
        extensions[index] = dict(prefs, extension=[*(prefs.get("extension") or []),
                                                   {"url": "optOut", "valueCode": channel}])
        try:
            store.update(dict(patient, extension=extensions), if_match=stored.version_id)
            return True
        except VersionConflict:
            continue
    raise VersionConflict(f"Patient/{patient_id} kept changing; opt-out not recorded")

