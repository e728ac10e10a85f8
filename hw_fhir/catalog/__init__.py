"""The shipped activity library (Questionnaires) and pathway templates.

Activities
----------
Every activity is a FHIR R4 ``Questionnaire`` in ``questionnaires/<id>.json`` with
``url`` = ``http://hw-fhir.org/fhir/Questionnaire/<id>`` and ``version`` = ``1.0.0``.
Non-form activities (breathing, body scan, reading, audio, video) are Questionnaires
too: instructions and media as ``display`` items, then a short completion check-in.
Each one is tagged in ``useContext``; :func:`tags` reads the tags back:

==============  ==================================================  ========================
tag             useContext.code                                     value coding system
==============  ==================================================  ========================
problem-area    ``usage-context-type#focus`` (HL7)                  :data:`PROBLEM_AREA_SYSTEM`
modality        ``usage-context#modality`` (hw-fhir)                :data:`MODALITY_SYSTEM`
media           ``usage-context#media`` (hw-fhir)                   :data:`MEDIA_SYSTEM`
kind            ``usage-context#kind`` (hw-fhir)                    :data:`ACTIVITY_KIND_SYSTEM`
==============  ==================================================  ========================

One ``useContext`` entry carries one code; an activity with two problem areas has
two entries.

Pathway templates
-----------------
A pathway is an ordered list of activities, shipped as ``pathways/<id>.json``::

    {
      "id": "insomnia-4-weeks",                 # kebab-case, equals the file name
      "title": "Insomnia — sleep diary + stimulus control, 4 weeks",
      "description": "What the pathway is for, in one or two sentences.",
      "problemArea": "insomnia",                # a code of PROBLEM_AREA_SYSTEM
      "steps": [
        {
          "activity": "http://hw-fhir.org/fhir/Questionnaire/sleep-diary|1.0.0",
          "start": {"delayDays": 0},
          "schedule": {"frequency": "daily", "count": 28},
          "required": true,
          "instructions": "Shown to the patient with every occurrence.",
          "rationale": "Optional: why this step helps."
        }
      ]
    }

``activity``
    The Questionnaire's canonical ``url|version``.
``start``
    Exactly one of ``{"delayDays": N}``: released N days after the pathway starts
    (day 0 = the start day), or ``{"afterPrevious": true}``: released when the
    previous step has ended, i.e. its last occurrence is completed or its due window
    has passed. The first step cannot start ``afterPrevious``.
``schedule``
    ``frequency`` is one of ``once``, ``daily``, ``weekly``, ``every-n-days``.
    ``interval`` is required for ``every-n-days`` (every N >= 2 days) and optional for
    ``weekly`` (every N weeks, default 1); not allowed otherwise. ``daysOfWeek`` (FHIR
    codes ``mon`` ... ``sun``) is required with ``weekly`` and allowed only there.
    ``count`` is the number of occurrences: required for recurring schedules, ``1`` (or
    absent) for ``once``. These are the rules of :class:`hw_fhir.schedule.Schedule`;
    :func:`step_schedule` builds one for a step once its start date is known, and
    ``Schedule.to_fhir_timing()`` gives ``CarePlan.activity.detail.scheduledTiming``.
``required``
    Whether the step counts towards completing the pathway (default ``true``).
``instructions``, ``rationale``
    Optional plain text for the patient.

Unknown keys are rejected, so a misspelt key fails loudly. :func:`check_pathway`
applies these rules; :func:`load_pathways` runs it on every shipped file.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from datetime import date, time
from importlib import resources
from types import MappingProxyType
from typing import Any

from ..errors import InvalidInput, InvalidResource, Issue, NotFound
from ..models import validate
from ..schedule import DAYS_OF_WEEK, Schedule

__all__ = [
    "CANONICAL_BASE",
    "CODE_SYSTEM_BASE",
    "USAGE_CONTEXT_TYPE_SYSTEM",
    "USAGE_CONTEXT_SYSTEM",
    "PROBLEM_AREA_SYSTEM",
    "MODALITY_SYSTEM",
    "MEDIA_SYSTEM",
    "ACTIVITY_KIND_SYSTEM",
    "AMOUNT_DONE_SYSTEM",
    "NON_COMPLETION_REASON_SYSTEM",
    "ENGAGEMENT_CHECK_IN_URL",
    "PROBLEM_AREAS",
    "MODALITIES",
    "MEDIA_TYPES",
    "ACTIVITY_KINDS",
    "NON_COMPLETION_REASONS",
    "TAG_CATEGORIES",
    "TAG_SYSTEMS",
    "TAG_CONTEXT_CODES",
    "canonical",
    "tags",
    "load_questionnaires",
    "get_questionnaire",
    "check_pathway",
    "load_pathways",
    "get_pathway",
    "step_schedule",
]

CANONICAL_BASE = "http://hw-fhir.org/fhir"
CODE_SYSTEM_BASE = f"{CANONICAL_BASE}/CodeSystem"

#: HL7 usage-context-type (``focus`` is used for the problem area).
USAGE_CONTEXT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/usage-context-type"
#: hw-fhir usage-context codes: ``modality``, ``media``, ``kind``.
USAGE_CONTEXT_SYSTEM = f"{CODE_SYSTEM_BASE}/usage-context"
PROBLEM_AREA_SYSTEM = f"{CODE_SYSTEM_BASE}/problem-area"
MODALITY_SYSTEM = f"{CODE_SYSTEM_BASE}/modality"
MEDIA_SYSTEM = f"{CODE_SYSTEM_BASE}/media"
ACTIVITY_KIND_SYSTEM = f"{CODE_SYSTEM_BASE}/activity-kind"
#: Answer codes of ``amount-done`` in the engagement check-in.
AMOUNT_DONE_SYSTEM = f"{CODE_SYSTEM_BASE}/amount-done"
#: Answer codes of ``reason-not-done`` in the engagement check-in.
NON_COMPLETION_REASON_SYSTEM = f"{CODE_SYSTEM_BASE}/non-completion-reason"
#: The engagement check-in completed when homework is reviewed.
ENGAGEMENT_CHECK_IN_URL = f"{CANONICAL_BASE}/Questionnaire/engagement-check-in"

#: Problem-area codes and their displays.
PROBLEM_AREAS: Mapping[str, str] = MappingProxyType({
    "depression": "Depression",
    "anxiety": "Anxiety",
    "panic": "Panic",
    "ocd": "Obsessive-compulsive difficulties",
    "ptsd": "Trauma and PTSD",
    "insomnia": "Sleep and insomnia",
    "substance-use": "Substance use",
    "emotion-regulation": "Emotion regulation",
    "relationships": "Relationships",
    "general": "General",
})
#: Modality codes and their displays.
MODALITIES: Mapping[str, str] = MappingProxyType({
    "cbt": "Cognitive behavioral therapy",
    "dbt": "Dialectical behavior therapy",
    "ba": "Behavioral activation",
    "exposure": "Exposure therapy",
    "mindfulness": "Mindfulness",
    "act": "Acceptance and commitment therapy",
    "psychoeducation": "Psychoeducation",
    "mbc": "Measurement-based care",
})
#: Media-type codes and their displays.
MEDIA_TYPES: Mapping[str, str] = MappingProxyType({
    "form": "Form",
    "audio": "Audio",
    "video": "Video",
    "reading": "Reading",
    "practice": "Practice",
    "journal": "Journal",
})
#: Activity-kind codes and their displays.
ACTIVITY_KINDS: Mapping[str, str] = MappingProxyType({
    "self-monitoring": "Self-monitoring",
    "behavioral": "Behavioral",
    "skills-practice": "Skills practice",
    "psychoeducation": "Psychoeducation",
    "reflection": "Reflection and planning",
    "measure": "Measure",
    "check-in": "Check-in",
})
#: Reasons homework was not (fully) done, as offered in the engagement check-in.
NON_COMPLETION_REASONS: Mapping[str, str] = MappingProxyType({
    "negative-events": "Something difficult happened",
    "symptoms": "I felt too low, anxious or unwell",
    "lack-of-strategies": "I wasn't sure how to do it",
    "lack-of-time": "I didn't have the time",
    "too-difficult": "It felt too hard",
    "forgot": "I forgot",
    "did-it-in-my-head": "I did it in my head but didn't write it down",
    "other": "Something else",
})

#: Tag categories, in the order :func:`tags` returns them.
TAG_CATEGORIES: tuple[str, ...] = ("problem-area", "modality", "media", "kind")
#: Value coding system of each tag category.
TAG_SYSTEMS: Mapping[str, str] = MappingProxyType({
    "problem-area": PROBLEM_AREA_SYSTEM,
    "modality": MODALITY_SYSTEM,
    "media": MEDIA_SYSTEM,
    "kind": ACTIVITY_KIND_SYSTEM,
})
#: ``useContext.code`` (system, code) of each tag category.
TAG_CONTEXT_CODES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "problem-area": (USAGE_CONTEXT_TYPE_SYSTEM, "focus"),
    "modality": (USAGE_CONTEXT_SYSTEM, "modality"),
    "media": (USAGE_CONTEXT_SYSTEM, "media"),
    "kind": (USAGE_CONTEXT_SYSTEM, "kind"),
})

_CATEGORY_OF_SYSTEM = {system: category for category, system in TAG_SYSTEMS.items()}
_KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_PATHWAY_KEYS = frozenset({"id", "title", "description", "problemArea", "steps"})
_STEP_KEYS = frozenset({"activity", "start", "schedule", "required", "instructions", "rationale"})
_SCHEDULE_KEYS = frozenset({"frequency", "interval", "daysOfWeek", "count"})
#: Schedule field name -> pathway key, to point issues at the pathway file.
_SCHEDULE_FIELDS = {"days_of_week": "daysOfWeek", "frequency": "frequency",
                    "interval": "interval", "count": "count"}


def canonical(questionnaire: Mapping[str, Any]) -> str:
    """Return the ``url|version`` canonical reference of a Questionnaire."""
    url = questionnaire.get("url", "")
    version = questionnaire.get("version")
    return f"{url}|{version}" if version else str(url)


def tags(questionnaire: Mapping[str, Any]) -> dict[str, list[str]]:
    """Return the problem-area, modality, media and kind codes of a Questionnaire."""
    found: dict[str, list[str]] = {category: [] for category in TAG_CATEGORIES}
    for context in questionnaire.get("useContext") or []:
        concept = context.get("valueCodeableConcept") or {}
        for coding in concept.get("coding") or []:
            category = _CATEGORY_OF_SYSTEM.get(coding.get("system", ""))
            code = coding.get("code")
            if category and code and code not in found[category]:
                found[category].append(code)
    return found


def _read_json_dir(folder: str) -> list[tuple[str, Any]]:
    """Return (file name, parsed JSON) for every ``*.json`` in a catalog folder."""
    root = resources.files(__name__).joinpath(folder)
    entries = sorted(
        (p for p in root.iterdir() if p.name.endswith(".json") and p.is_file()),
        key=lambda p: p.name,
    )
    loaded = []
    for entry in entries:
        try:
            loaded.append((entry.name, json.loads(entry.read_text(encoding="utf-8"))))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"catalog/{folder}/{entry.name} is not valid JSON: {exc}") from None
    return loaded


@functools.cache
def _questionnaires() -> tuple[dict[str, Any], ...]:
    """Read and validate every shipped Questionnaire once."""
    loaded = []
    for name, data in _read_json_dir("questionnaires"):
        try:
            loaded.append(validate(data, resource_type="Questionnaire"))
        except InvalidResource as exc:
            raise InvalidResource(
                f"catalog/questionnaires/{name}: {exc.message}", issues=exc.issues, resource=data
            ) from None
    return tuple(sorted(loaded, key=lambda q: str(q.get("id", ""))))


@functools.cache
def _questionnaire_texts() -> tuple[str, ...]:
    """The shipped Questionnaires as JSON text, in :func:`_questionnaires` order.

    Callers get a fresh parse of this text (their own copy, which they may change):
    parsing is several times cheaper than ``copy.deepcopy`` of the same JSON.
    """
    return tuple(json.dumps(q, ensure_ascii=False) for q in _questionnaires())


def load_questionnaires() -> list[dict[str, Any]]:
    """Return every shipped Questionnaire, validated, sorted by id."""
    return [json.loads(text) for text in _questionnaire_texts()]


def get_questionnaire(ref: str) -> dict[str, Any]:
    """Return the shipped Questionnaire with this id, url or ``url|version``."""
    url, _, version = ref.partition("|")
    for index, questionnaire in enumerate(_questionnaires()):
        if ref == questionnaire.get("id") or (
            url == questionnaire.get("url") and version in ("", questionnaire.get("version"))
        ):
            return json.loads(_questionnaire_texts()[index])
    raise NotFound(f"No Questionnaire {ref!r} in the catalog")


def _issue(message: str, where: str) -> Issue:
    return Issue(message, code="invalid", expression=where)


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _text_issues(pathway: Mapping[str, Any]) -> list[Issue]:
    issues = []
    if not isinstance(pathway.get("id"), str) or not _KEBAB.match(pathway["id"]):
        issues.append(_issue("id must be a kebab-case string", "id"))
    for key in ("title", "description"):
        if not isinstance(pathway.get(key), str) or not pathway[key].strip():
            issues.append(_issue(f"{key} must be a non-empty string", key))
    if pathway.get("problemArea") not in PROBLEM_AREAS:
        issues.append(_issue(
            f"problemArea must be one of {', '.join(PROBLEM_AREAS)}", "problemArea"))
    for key in sorted(set(pathway) - _PATHWAY_KEYS):
        issues.append(_issue(f"unknown key {key!r}", key))
    return issues


def _start_issues(start: Any, index: int, where: str) -> list[Issue]:
    if not isinstance(start, dict) or len(start) != 1:
        return [_issue('start must be {"afterPrevious": true} or {"delayDays": N}', where)]
    if "afterPrevious" in start:
        if start["afterPrevious"] is not True:
            return [_issue("afterPrevious must be true", f"{where}.afterPrevious")]
        if index == 0:
            return [_issue("the first step cannot start afterPrevious", where)]
        return []
    if "delayDays" in start:
        if not _is_int(start["delayDays"], 0):
            return [_issue("delayDays must be an integer >= 0", f"{where}.delayDays")]
        return []
    return [_issue('start must be {"afterPrevious": true} or {"delayDays": N}', where)]


def _schedule_issues(schedule: Any, where: str) -> list[Issue]:
    if not isinstance(schedule, dict):
        return [_issue("schedule must be an object", where)]
    issues = [_issue(f"unknown key {key!r}", f"{where}.{key}")
              for key in sorted(set(schedule) - _SCHEDULE_KEYS)]
    days = schedule.get("daysOfWeek", [])
    if not isinstance(days, list) or len(set(map(str, days))) != len(days) or any(
        day not in DAYS_OF_WEEK for day in days
    ):
        issues.append(_issue(
            f"daysOfWeek must be distinct codes of {', '.join(DAYS_OF_WEEK)}",
            f"{where}.daysOfWeek"))
    frequency = schedule.get("frequency")
    if frequency not in ("once", None) and not _is_int(schedule.get("count"), 1):
        issues.append(_issue("a recurring schedule needs a count >= 1", f"{where}.count"))
    if "interval" in schedule and frequency not in ("weekly", "every-n-days"):
        issues.append(_issue(
            "interval is only allowed with weekly or every-n-days", f"{where}.interval"))
    if issues:
        return issues
    try:
        step_schedule({"schedule": schedule}, start=date(2000, 1, 3), timezone="UTC")
    except InvalidInput as exc:
        issues.extend(
            _issue(i.message, f"{where}.{_SCHEDULE_FIELDS.get(_field(i), _field(i))}")
            for i in exc.issues)
    return issues


def _field(issue: Issue) -> str:
    return (issue.expression or "").rpartition(".")[2]


def _step_issues(step: Any, index: int) -> list[Issue]:
    where = f"steps[{index}]"
    if not isinstance(step, dict):
        return [_issue("a step must be an object", where)]
    issues = [_issue(f"unknown key {key!r}", f"{where}.{key}")
              for key in sorted(set(step) - _STEP_KEYS)]
    url, bar, version = str(step.get("activity", "")).partition("|")
    if not isinstance(step.get("activity"), str) or not bar or not version or not (
        url.startswith("http://") or url.startswith("https://")
    ):
        issues.append(_issue("activity must be a canonical url|version", f"{where}.activity"))
    issues.extend(_start_issues(step.get("start"), index, f"{where}.start"))
    issues.extend(_schedule_issues(step.get("schedule"), f"{where}.schedule"))
    if "required" in step and not isinstance(step["required"], bool):
        issues.append(_issue("required must be true or false", f"{where}.required"))
    for key in ("instructions", "rationale"):
        if key in step and not isinstance(step[key], str):
            issues.append(_issue(f"{key} must be a string", f"{where}.{key}"))
    return issues


def check_pathway(pathway: Any) -> dict[str, Any]:
    """Check a pathway template and return a copy with defaults filled in.

    Raise :class:`InvalidInput` listing every problem found.
    """
    if not isinstance(pathway, dict):
        raise InvalidInput("A pathway must be a JSON object")
    issues = _text_issues(pathway)
    steps = pathway.get("steps")
    if not isinstance(steps, list) or not steps:
        issues.append(_issue("steps must be a non-empty list", "steps"))
        steps = []
    for index, step in enumerate(steps):
        issues.extend(_step_issues(step, index))
    if issues:
        raise InvalidInput(f"Invalid pathway {pathway.get('id')!r}", issues=issues)
    checked = copy.deepcopy(pathway)
    for step in checked["steps"]:
        step.setdefault("required", True)
    return checked


@functools.cache
def _pathways() -> tuple[dict[str, Any], ...]:
    """Read and check every shipped pathway template once."""
    loaded = []
    for name, data in _read_json_dir("pathways"):
        pathway = check_pathway(data)
        if f"{pathway['id']}.json" != name:
            raise InvalidInput(f"catalog/pathways/{name} has id {pathway['id']!r}")
        loaded.append(pathway)
    return tuple(sorted(loaded, key=lambda p: p["id"]))


def load_pathways() -> list[dict[str, Any]]:
    """Return every shipped pathway template, checked, sorted by id."""
    return copy.deepcopy(list(_pathways()))


def get_pathway(pathway_id: str) -> dict[str, Any]:
    """Return the shipped pathway template with this id."""
    for pathway in _pathways():
        if pathway["id"] == pathway_id:
            return copy.deepcopy(pathway)
    raise NotFound(f"No pathway {pathway_id!r} in the catalog")


def step_schedule(
    step: Mapping[str, Any], *, start: date, timezone: str, time_of_day: time | None = None
) -> Schedule:
    """Return the :class:`~hw_fhir.schedule.Schedule` of a pathway step released on ``start``.

    ``timezone`` is the patient's IANA zone; ``time_of_day`` the local due time
    (the schedule's default when None). Raise :class:`InvalidInput` for a bad schedule.
    """
    spec = step["schedule"]
    extra: dict[str, Any] = {} if time_of_day is None else {"time_of_day": time_of_day}
    return Schedule(
        frequency=spec.get("frequency"),
        start=start,
        timezone=timezone,
        interval=spec.get("interval", 1),
        days_of_week=tuple(spec.get("daysOfWeek", ())),
        count=spec.get("count"),
        **extra,
    )
