"""When a Task's reminders go out: its planned sends and the deadline of each.

* ``assigned`` — when the Task's window opens (at once for a one-off assignment);
* ``before-due`` — at the patient's preferred time of day on the due day (the day
  before when that time is after the due time), else ``before_due_hours`` before due;
* ``overdue`` — one nudge after the due time (at the preferred time of day, else
  ``overdue_after_hours`` later) while the Task can still be completed (before due +
  ``Settings.overdue_grace_hours``).

Every send time is moved out of the patient's quiet hours, in the patient's time zone.
Sends closer than ``min_gap_minutes`` collapse into one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .clock import local_moment, parse_instant
from .policy import ReminderPolicy
from .preferences import ReminderPreferences

__all__ = ["task_window", "reminder_times", "send_deadline"]


def task_window(task: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """Return when a Task opens (its period start, else authoredOn) and when it is due."""
    period = (task.get("restriction") or {}).get("period") or {}
    opens = period.get("start") or task.get("authoredOn")
    due = period.get("end")
    return (parse_instant(opens) if opens else None), (parse_instant(due) if due else None)


def reminder_times(task: Mapping[str, Any], prefs: ReminderPreferences, policy: ReminderPolicy,
                   *, now: datetime) -> list[tuple[str, datetime, datetime]]:
    """Return the planned sends of a Task: (purpose, when, deadline), in time order.

    ``deadline`` is the moment after which the send is pointless (it is skipped).
    """
    opens, due = task_window(task)
    gap = timedelta(minutes=policy.min_gap_minutes)
    end_of_grace = due + timedelta(hours=policy.grace_hours) if due else None
    planned: list[tuple[str, datetime, datetime]] = []
    first = prefs.next_allowed(max(now, opens or now))
    if due is None:
        return [("assigned", first, first + timedelta(days=1))]
    if first < due:
        planned.append(("assigned", first, due))
    before = _before_due(due, prefs, policy)
    if before is not None and before > max(now, opens or now):
        planned.append(("before-due", before, due))
    overdue = _overdue(due, prefs, policy)
    if end_of_grace is not None and overdue < end_of_grace and overdue > now:
        planned.append(("overdue", overdue, end_of_grace))
    planned.sort(key=lambda p: p[1])
    kept: list[tuple[str, datetime, datetime]] = []
    for item in planned:
        if kept and item[1] - kept[-1][1] < gap:
            continue
        kept.append(item)
    return kept


def _before_due(due: datetime, prefs: ReminderPreferences, policy: ReminderPolicy) -> datetime | None:
    zone = prefs.zone
    if prefs.time_of_day is not None:
        local_due = due.astimezone(zone)
        for back in (0, 1):
            candidate = local_moment(local_due.date() - timedelta(days=back), prefs.time_of_day, zone)
            if candidate < due and not prefs.in_quiet_hours(candidate):
                return candidate
    candidate = prefs.previous_allowed(due - timedelta(hours=policy.before_due_hours))
    return candidate if candidate < due else None


def _overdue(due: datetime, prefs: ReminderPreferences, policy: ReminderPolicy) -> datetime:
    zone = prefs.zone
    if prefs.time_of_day is not None:
        local_due = due.astimezone(zone)
        for ahead in (0, 1):
            candidate = local_moment(local_due.date() + timedelta(days=ahead), prefs.time_of_day, zone)
            if candidate > due + timedelta(minutes=30):
                return prefs.next_allowed(candidate)
    return prefs.next_allowed(due + timedelta(hours=policy.overdue_after_hours))




def send_deadline(purpose: str, due: datetime | None, policy: ReminderPolicy) -> datetime | None:
    """Return the moment after which a send of ``purpose`` is pointless (None: never)."""
    if due is None:
        return None
    if purpose == "overdue":
        return due + timedelta(hours=policy.grace_hours)
    return due
