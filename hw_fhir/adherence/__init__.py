"""Adherence and review: what was assigned, what was done, and why not — ready for the session.

Counting rules (for :class:`Adherence`), over homework Tasks (SDC ``complete-questionnaire``)
whose due time (``restriction.period.end``) falls in the period asked for:

``assigned``
    Tasks that are due by now, or already completed; cancelled Tasks never count.
``completed`` = ``on_time`` + ``late``
    ``late`` when submitted after the due time (businessStatus ``late``, or
    ``executionPeriod.end`` after the due time).
``missed``
    Tasks the overdue sweep closed (``failed``).
``overdue``
    Open Tasks past their due time, still inside the grace period (they may still be done).
``upcoming``
    Open Tasks not due yet (not part of ``assigned``).
``completion_rate``
    ``completed / assigned`` (None when nothing was assigned).
``current_streak``
    How many of the latest assigned Tasks, by due time, were completed in a row
    (Tasks still overdue neither count nor break the streak).

Engagement comes from the ``engagement-check-in`` Questionnaire's responses of the
patient (linkIds ``amount-done``, ``as-agreed``, ``difficulty``, ``helpfulness``,
``minutes-spent``, ``reason-not-done``, ``reason-other``); for a plan, the check-ins
``basedOn`` that plan.

The package, one concept a module: :mod:`.task_facts` (what is read of a Task, once per
version), :mod:`.periods` (period bounds), :mod:`.engagement` (check-ins),
:mod:`.counting` (:class:`Adherence` of a patient or plan), :mod:`.measures` (score
changes), :mod:`.session_summary` (:func:`since_last_session`), :mod:`.window` (the recent
window the clinician pages count over) and :mod:`.panel` (a clinician's panel).
"""

from __future__ import annotations

from .counting import Adherence, patient_adherence, plan_adherence, summarize_tasks
from .engagement import Engagement, check_ins_of, summarize_check_ins
from .measures import MeasureChange
from .panel import PanelRow, panel_summary
from .session_summary import DiscussionPoint, SessionSummary, TaskRow, since_last_session
from .task_facts import TaskFacts, clear_task_facts, patient_homework, task_facts
from .window import ADHERENCE_DAYS, AdherenceWindow, patient_recent_adherence, recent_adherence

__all__ = [
    "Engagement",
    "Adherence",
    "TaskRow",
    "MeasureChange",
    "DiscussionPoint",
    "SessionSummary",
    "PanelRow",
    "TaskFacts",
    "task_facts",
    "clear_task_facts",
    "summarize_tasks",
    "summarize_check_ins",
    "patient_adherence",
    "plan_adherence",
    "since_last_session",
    "patient_homework",
    "check_ins_of",
    "ADHERENCE_DAYS",
    "AdherenceWindow",
    "recent_adherence",
    "patient_recent_adherence",
    "panel_summary",
]
