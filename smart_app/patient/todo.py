"""The patient's to-do list: open homework by when it is due, and what was done lately.

No web framework here: :func:`patient_tasks` reads the Tasks, :func:`todo_list` sorts
them into sections in the patient's time zone, with the clinician's instructions,
rationale, example and wording for each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hw_fhir.assignment import (
    COMPLETE_QUESTIONNAIRE,
    OPEN_STATUSES,
    SDC_TEMP_SYSTEM,
    HomeworkDetails,
    instant,
    parse_instant,
    task_canonical,
    task_due,
)
from hw_fhir.errors import HwFhirError
from hw_fhir.i18n import N_, date_text, time_text, translator
from hw_fhir.library import resolve_questionnaire
from hw_fhir.store.base import Store, iter_all
from hw_fhir.translation import original_language, translation_of

__all__ = [
    "TodoItem",
    "TodoList",
    "TIMEZONE_EXTENSION",
    "patient_zone",
    "patient_tasks",
    "todo_list",
    "activity_title",
    "titled",
    "due_text",
    "wording_text",
]

TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"
_CODE = (SDC_TEMP_SYSTEM, COMPLETE_QUESTIONNAIRE)
_OPEN = ",".join(sorted(OPEN_STATUSES - {"on-hold"}))
#: Done items stay on the list this long, at most this many.
DONE_DAYS = 7
DONE_SHOWN = 10
#: The clinician's usual words for homework, translated for the patient (others shown as typed).
WORDINGS = (N_("homework"), N_("home practice"), N_("skills practice"), N_("practice"),
            N_("projects"), N_("activities"))


@dataclass(frozen=True)
class TodoItem:
    """One homework Task as the patient sees it."""

    task_id: str
    title: str
    wording: str
    instructions: str
    rationale: str
    example: str
    status: str
    due: datetime | None
    due_text: str
    overdue: bool
    opens: datetime | None
    available: bool
    draft: bool
    done_at: datetime | None = None
    #: The title's language when it is not the patient's (the activity is not translated).
    title_lang: str | None = None


@dataclass(frozen=True)
class TodoList:
    """Sections of the to-do list, each sorted by due time."""

    overdue: tuple[TodoItem, ...]
    today: tuple[TodoItem, ...]
    week: tuple[TodoItem, ...]
    later: tuple[TodoItem, ...]
    done: tuple[TodoItem, ...]

    @property
    def open_count(self) -> int:
        """How many items are still to do (overdue, today, this week)."""
        return len(self.overdue) + len(self.today) + len(self.week)

    @property
    def wording(self) -> str:
        """The word the clinician uses for homework (the most common one on the list)."""
        words = [
            i.wording for i in (*self.overdue, *self.today, *self.week, *self.later, *self.done)
        ]
        return max(set(words), key=words.count) if words else "homework"


def wording_text(wording: str, language: str | None) -> str:
    """Return the clinician's word for homework in the patient's language when it is a known one."""
    return translator(language)(wording) if wording in WORDINGS else wording


def patient_zone(patient: Mapping[str, Any] | None) -> tzinfo:
    """Return the patient's time zone (Patient ``timezone`` extension), UTC when unknown."""
    for ext in (patient or {}).get("extension") or []:
        if ext.get("url") == TIMEZONE_EXTENSION and ext.get("valueCode"):
            try:
                return ZoneInfo(str(ext["valueCode"]))
            except (ZoneInfoNotFoundError, ValueError):
                break
    return timezone.utc


def _homework(task: Mapping[str, Any]) -> bool:
    codes = (task.get("code") or {}).get("coding") or []
    return any((c.get("system"), c.get("code")) == _CODE for c in codes)


def patient_tasks(store: Store, patient_ref: str, *, now: datetime) -> list[dict[str, Any]]:
    """Return the patient's open homework Tasks and those completed in the last days.

    The homework code is checked here rather than searched: a token search on
    ``Task.code`` is far slower than on ``status`` in the SqlStore.
    """
    tasks = iter_all(store, "Task", [("patient", patient_ref), ("status", _OPEN)])
    since = instant(now - timedelta(days=DONE_DAYS))
    done = store.search("Task", [("patient", patient_ref), ("status", "completed"),
                                 ("_lastUpdated", f"ge{since}"), ("_sort", "-_lastUpdated"),
                                 ("_count", str(DONE_SHOWN * 3)), ("_total", "none")])
    tasks += done.resources
    return [t for t in tasks if _homework(t)]


def activity_title(
    store: Store, task: Mapping[str, Any], cache: dict[str, Any], language: str | None = None
) -> str:
    """Return the title of the activity a Task asks for, in ``language`` when translated."""
    return titled(store, task, cache, language)[0]


def titled(
    store: Store, task: Mapping[str, Any], cache: dict[str, Any], language: str | None = None
) -> tuple[str, str | None]:
    """Return an activity's title and, when it is not in ``language``, the language it is in."""
    ref = task_canonical(task) or ""
    if ref not in cache:
        _ = translator(language)
        try:
            questionnaire = resolve_questionnaire(store, ref)
        except HwFhirError:
            cache[ref] = (_("Activity"), None)
            return cache[ref]
        original = original_language(questionnaire)
        translated = translation_of(questionnaire, "title", language) if language else None
        plain = questionnaire.get("title") or questionnaire.get("name")
        if translated or not plain:
            cache[ref] = (str(translated or _("Activity")), None)
        else:
            cache[ref] = (str(plain), None if original == (language or original) else original)
    return cache[ref]  # type: ignore[no-any-return]


def due_text(due: datetime | None, now: datetime, zone: tzinfo, language: str | None = None) -> str:
    """Say when something is due, in the patient's words, language and time zone."""
    _ = translator(language)
    if due is None:
        return _("Any time")
    local, today = due.astimezone(zone), now.astimezone(zone).date()
    clock = time_text(local, language, zone)
    days = (local.date() - today).days
    if days == 0:
        return _("Today, %(time)s") % {"time": clock}
    if days == 1:
        return _("Tomorrow, %(time)s") % {"time": clock}
    if days == -1:
        return _("Yesterday, %(time)s") % {"time": clock}
    if 1 < days < 7:
        day = date_text(local, language, zone, "EEEE")
        return _("%(day)s, %(time)s") % {"day": day, "time": clock}
    day = date_text(local, language, zone, "EEE d MMM")
    return _("%(day)s, %(time)s") % {"day": day, "time": clock}


def _item(
    store: Store, task: Mapping[str, Any], now: datetime, zone: tzinfo, titles: dict[str, Any],
    language: str | None = None,
) -> TodoItem:
    details = HomeworkDetails.from_task(task)
    due = task_due(task)
    start = ((task.get("restriction") or {}).get("period") or {}).get("start")
    opens = parse_instant(start) if start else None
    end = (task.get("executionPeriod") or {}).get("end")
    status = str(task.get("status"))
    title, title_lang = titled(store, task, titles, language)
    return TodoItem(
        task_id=str(task["id"]),
        title=title,
        title_lang=title_lang,
        wording=wording_text(details.wording, language),
        instructions=details.instructions,
        rationale=details.rationale,
        example=details.example,
        status=status,
        due=due,
        due_text=due_text(due, now, zone, language),
        overdue=status in OPEN_STATUSES and due is not None and due <= now,
        opens=opens,
        available=opens is None or opens <= now or status == "in-progress",
        draft=status == "in-progress",
        done_at=parse_instant(end).astimezone(zone) if end else None,
    )


def todo_list(
    store: Store, tasks: Iterable[Mapping[str, Any]], *, now: datetime, zone: tzinfo,
    language: str | None = None,
) -> TodoList:
    """Sort Tasks into overdue, today, this week, later and done (newest first).

    ``language`` (the patient's) picks activity titles' translations and the due texts' words.
    """
    titles: dict[str, Any] = {}
    sections: dict[str, list[TodoItem]] = {
        k: [] for k in ("overdue", "today", "week", "later", "done")
    }
    today = now.astimezone(zone).date()
    for task in tasks:
        item = _item(store, task, now, zone, titles, language)
        if item.status == "completed":
            sections["done"].append(item)
        elif item.status not in OPEN_STATUSES or item.status == "on-hold":
            continue
        elif item.overdue:
            sections["overdue"].append(item)
        elif item.due is None or item.due.astimezone(zone).date() == today:
            sections["today"].append(item)
        elif (item.due.astimezone(zone).date() - today).days < 7:
            sections["week"].append(item)
        else:
            sections["later"].append(item)
    far = datetime.max.replace(tzinfo=timezone.utc)
    for key in ("overdue", "today", "week", "later"):
        sections[key].sort(key=lambda i: (i.due or far, i.title))
    sections["done"].sort(key=lambda i: i.done_at or now, reverse=True)
    del sections["done"][DONE_SHOWN:]
    return TodoList(**{k: tuple(v) for k, v in sections.items()})
