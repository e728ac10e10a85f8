"""Schedule defaults that fit how an activity is used: event-driven logs are as-needed.

A thought record, an urge log or a distress-tolerance log is filled in when something
happens, not on a clock: "Every day" would tell the patient to produce one entry a day and
mark them as missing homework on calm days. These activities default to **once**, due
before the next session (about a week), with instructions that say "each time it happens".
Switching to a repeating schedule is one choice in the form (the number of times is ready).
A clinician's copy of one of them (``derivedFrom``) is treated like the original.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from .review import AssignDefaults

__all__ = ["AS_NEEDED", "is_as_needed", "tailored_defaults", "AS_NEEDED_INSTRUCTIONS"]

_LIBRARY = "http://hw-fhir.org/fhir/Questionnaire/"
#: Library activities filled in when something happens (canonical URLs, without version).
AS_NEEDED = frozenset(
    _LIBRARY + slug
    for slug in ("thought-record", "urge-log", "distress-tolerance-log",
                 "cognitive-distortion-tracker")
)
#: Added to the instructions of an as-needed activity.
AS_NEEDED_INSTRUCTIONS = ("Fill in an entry each time it happens, as soon as you can, until our "
                          "next session. There is no set number: some days may have none.")
#: Days until an as-needed activity is due: about the next weekly session.
AS_NEEDED_DAYS = 6


def _canonicals(questionnaire: Mapping[str, Any]) -> list[str]:
    found = [str(questionnaire.get("url") or "")]
    found += [str(c) for c in questionnaire.get("derivedFrom") or []]
    return [c.partition("|")[0] for c in found]


def is_as_needed(questionnaire: Mapping[str, Any]) -> bool:
    """Whether the activity is filled in when something happens (not on a schedule)."""
    return any(c in AS_NEEDED for c in _canonicals(questionnaire))


def tailored_defaults(defaults: AssignDefaults, questionnaire: Mapping[str, Any]) -> AssignDefaults:
    """Return the defaults with an as-needed schedule and wording for event-driven logs."""
    if not is_as_needed(questionnaire):
        return defaults
    offset = AS_NEEDED_DAYS - 1  # the library defaults start tomorrow
    instructions = " ".join(p for p in (defaults.instructions, AS_NEEDED_INSTRUCTIONS) if p)
    return replace(defaults, frequency="once", interval=1, count=None, until=None,
                   days_of_week=(), start=defaults.start + timedelta(days=offset),
                   instructions=instructions)
