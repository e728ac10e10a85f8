"""Reminder preferences on the Patient resource: read them for the form, write them back.

The preferences are one extension on the Patient::

    {"url": "http://hw-fhir.org/fhir/StructureDefinition/reminder-preferences",
     "extension": [{"url": "channel", "valueCode": "email"},
                   {"url": "timeOfDay", "valueTime": "18:00:00"},
                   {"url": "quietStart", "valueTime": "21:00:00"},
                   {"url": "quietEnd", "valueTime": "08:00:00"},
                   {"url": "optOut", "valueCode": "overdue"}]}        # optOut repeats

and the time zone is the standard ``http://hl7.org/fhir/StructureDefinition/timezone``
(valueCode, an IANA name). The reminder scheduler reads them when it plans the next
reminder, so a change takes effect then. No web framework here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import available_timezones

from hw_fhir.errors import InvalidInput, Issue
from hw_fhir.i18n import N_

from .todo import TIMEZONE_EXTENSION

__all__ = [
    "PREFERENCES_EXTENSION",
    "OPT_OUTS",
    "CHANNELS",
    "Preferences",
    "read_preferences",
    "with_preferences",
    "parse_preferences",
    "time_zones",
    "COMMON_ZONES",
    "likely_zone",
]

PREFERENCES_EXTENSION = "http://hw-fhir.org/fhir/StructureDefinition/reminder-preferences"
#: Channels a patient can pick here, with their labels (plugins may add more later).
#: Labels and messages are marked for translation (N_) and translated where shown.
CHANNELS: dict[str, str] = {
    "email": N_("Email"),
    "sms": N_("Text message (SMS)"),
    "none": N_("No reminders"),
}
#: Kinds of message a patient can opt out of.
OPT_OUTS: dict[str, str] = {
    "reminder": N_("Reminders before homework is due"),
    "overdue": N_("A nudge when homework is past its due time"),
}
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


@dataclass(frozen=True)
class Preferences:
    """A patient's reminder preferences (None: not set, the practice's default applies)."""

    channel: str | None = None
    time_of_day: str | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None
    opt_out: tuple[str, ...] = ()
    timezone: str | None = None
    extra_opt_out: tuple[str, ...] = field(default=(), compare=False)

    @staticmethod
    def hhmm(value: str | None) -> str:
        """A FHIR time as ``HH:MM`` for a time input ("" when unset)."""
        return value[:5] if value else ""


def _sub(extension: Mapping[str, Any], url: str) -> list[Any]:
    out: list[Any] = []
    for ext in extension.get("extension") or []:
        if ext.get("url") == url:
            out.extend(v for k, v in ext.items() if k.startswith("value"))
    return out


def read_preferences(patient: Mapping[str, Any]) -> Preferences:
    """Return the reminder preferences stored on a Patient."""
    zone = next(
        (
            e.get("valueCode")
            for e in patient.get("extension") or []
            if e.get("url") == TIMEZONE_EXTENSION
        ),
        None,
    )
    prefs = next(
        (e for e in patient.get("extension") or [] if e.get("url") == PREFERENCES_EXTENSION), None
    )
    if prefs is None:
        return Preferences(timezone=zone)

    def first(url: str) -> Any:
        values = _sub(prefs, url)
        return values[0] if values else None

    opt_out = tuple(str(v) for v in _sub(prefs, "optOut"))
    return Preferences(
        channel=first("channel"),
        time_of_day=first("timeOfDay"),
        quiet_start=first("quietStart"),
        quiet_end=first("quietEnd"),
        opt_out=tuple(v for v in opt_out if v in OPT_OUTS),
        timezone=zone,
        extra_opt_out=tuple(v for v in opt_out if v not in OPT_OUTS),
    )


def with_preferences(patient: Mapping[str, Any], prefs: Preferences) -> dict[str, Any]:
    """Return a copy of the Patient carrying these preferences (other extensions kept)."""
    subs: list[dict[str, Any]] = []
    if prefs.channel:
        subs.append({"url": "channel", "valueCode": prefs.channel})
    for url, value in (
        ("timeOfDay", prefs.time_of_day),
        ("quietStart", prefs.quiet_start),
        ("quietEnd", prefs.quiet_end),
    ):
        if value:
            subs.append({"url": url, "valueTime": value})
    subs += [
        {"url": "optOut", "valueCode": code} for code in (*prefs.opt_out, *prefs.extra_opt_out)
    ]
    kept = [
        e
        for e in patient.get("extension") or []
        if e.get("url") not in (PREFERENCES_EXTENSION, TIMEZONE_EXTENSION)
    ]
    if prefs.timezone:
        kept.append({"url": TIMEZONE_EXTENSION, "valueCode": prefs.timezone})
    if subs:
        kept.append({"url": PREFERENCES_EXTENSION, "extension": subs})
    out = {k: v for k, v in patient.items() if k != "extension"}
    if kept:
        out["extension"] = kept
    return out


#: Zones listed first in the picker, before the full list (most patients live in one).
COMMON_ZONES: tuple[str, ...] = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
    "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu", "America/Puerto_Rico",
    "America/Toronto", "America/Vancouver", "America/Mexico_City", "America/Sao_Paulo",
    "Europe/London", "Europe/Dublin", "Europe/Paris", "Europe/Berlin", "Europe/Madrid",
    "Africa/Johannesburg", "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo",
    "Australia/Sydney", "Pacific/Auckland",
)


def likely_zone(prefs: Preferences, practice_zone: str) -> tuple[str, bool]:
    """Return the zone the picker starts from and whether the patient chose it.

    The patient's stored zone; else the practice's (the browser's zone, read by
    ``patient/timezone.js``, replaces it when the patient has none stored).
    """
    if prefs.timezone and prefs.timezone in available_timezones():
        return prefs.timezone, True
    return practice_zone, False


def time_zones() -> list[str]:
    """Return the IANA time zone names a patient can choose, sorted."""
    return sorted(
        z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))
    )


def _time(value: str, name: str, message: str, issues: list[Issue]) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    match = _TIME.match(value)
    if not match:
        issues.append(Issue(message, expression=name))
        return None
    return f"{match.group(1)}:{match.group(2)}:{match.group(3) or '00'}"


def parse_preferences(form: Mapping[str, Any], current: Preferences) -> Preferences:
    """Read the preferences form (``channel``, ``time_of_day``, ``quiet_start``, ``quiet_end``,
    ``timezone``, ``opt_out`` repeated); raise InvalidInput with per-field issues."""
    getlist = getattr(form, "getlist", lambda key: [form[key]] if key in form else [])
    issues: list[Issue] = []
    channel = (form.get("channel") or "").strip() or None
    if channel is None:
        issues.append(Issue(N_("Choose how we should remind you, or “No reminders”"),
                            expression="channel"))
    elif channel not in CHANNELS and channel != current.channel:
        issues.append(Issue(N_("Choose one of the ways to be reminded"), expression="channel"))
    zone = (form.get("timezone") or "").strip() or None
    if zone is not None and zone not in available_timezones():
        issues.append(Issue(N_("Choose your time zone from the list"), expression="timezone"))
    opt_out = tuple(dict.fromkeys(v for v in getlist("opt_out") if v))
    if any(v not in OPT_OUTS for v in opt_out):
        issues.append(Issue(N_("Unknown kind of message to opt out of"), expression="opt_out"))
    prefs = Preferences(
        channel=channel,
        time_of_day=_time(form.get("time_of_day", ""), "time_of_day",
                          N_("Time of day: enter a time such as 18:30"), issues),
        quiet_start=_time(form.get("quiet_start", ""), "quiet_start",
                          N_("Quiet hours start: enter a time such as 18:30"), issues),
        quiet_end=_time(form.get("quiet_end", ""), "quiet_end",
                        N_("Quiet hours end: enter a time such as 18:30"), issues),
        opt_out=opt_out,
        timezone=zone,
        extra_opt_out=current.extra_opt_out,
    )
    if bool(prefs.quiet_start) != bool(prefs.quiet_end):
        issues.append(
            Issue(
                N_("Give both the start and the end of your quiet hours, or neither"),
                expression="quiet_end" if prefs.quiet_start else "quiet_start",
            )
        )
    if issues:
        raise InvalidInput("Some preferences need fixing", issues=issues)
    return prefs
