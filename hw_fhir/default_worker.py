"""Built-in plugin: the worker's periodic jobs — reminder queue, plan scheduler, catch-up scoring.

Jobs shared by all workers take their turn with :func:`hw_fhir.lease.take_turn`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from .default_audit import responses_rescored, scheduler_run
from .hookspecs import hookimpl
from .lease import make_turn_due, take_turn
from .reminders.escalation import escalate_overdue
from .outcomes.sweep import rescore_changes
from .plans import run_scheduler
from .reminders import ReminderPolicy, run_reminders

__all__ = ["register_worker_tasks", "reminder_queue", "plan_scheduler", "response_rescoring",
           "alert_escalation", "statistics_upkeep"]

log = logging.getLogger("hw_fhir.worker")

#: Seconds between two scheduler passes (whichever worker takes the turn).
SCHEDULER_EVERY_SECONDS = 60
#: Seconds between two catch-up scoring sweeps (sooner while a backlog remains).
RESCORE_EVERY_SECONDS = 60
#: Seconds between two checks of the planner statistics (whichever worker takes the turn).
STATISTICS_EVERY_SECONDS = 300


def reminder_queue(services: Any) -> int:
    """Discover, plan and send due reminders and alerts (a bounded batch); return jobs done."""
    policy = ReminderPolicy.from_settings(services.settings)
    run = run_reminders(services, worker=services.worker_name, limit=policy.batch * 10)
    return run.work


def plan_scheduler(services: Any) -> int:
    """Once a minute (one worker): overdue Tasks fail, pathways advance, Tasks materialize."""
    if not take_turn(services, "plan-scheduler", SCHEDULER_EVERY_SECONDS):
        return 0
    run = run_scheduler(services.store, settings=services.settings, events=services.events)
    scheduler_run(services.store, run)  # here, not in plans: web requests audit their own writes
    return len(run.failed) + len(run.released) + len(run.completed_plans) + len(run.created)


def response_rescoring(services: Any) -> int:
    """Once a minute (one worker): score the responses written since the last sweep, if missed.

    :func:`hw_fhir.outcomes.sweep.rescore_changes` — one batch from a persisted cursor;
    a full batch makes the next turn due at once. Return how many responses were
    scored again.
    """
    if not take_turn(services, "response-rescoring", RESCORE_EVERY_SECONDS):
        return 0
    run = rescore_changes(services.store, settings=services.settings, plugins=services.plugins,
                          on_written=responses_rescored(services.store))
    if run.more:
        make_turn_due(services, "response-rescoring")
    return run.rescored


def alert_escalation(services: Any, *, now: datetime | None = None) -> int:
    """Escalate risk alerts still undelivered after ``safety_escalate_after_seconds``.

    :func:`hw_fhir.reminders.escalation.escalate_overdue`: the next person of each such
    alert's escalation path is told (finally the practice safety contact). One worker
    per turn, at most every tenth of the delay (and at least every minute). Return how
    many alerts escalated.
    """
    every = min(60.0, max(1.0, services.settings.safety_escalate_after_seconds / 10))
    if not take_turn(services, "alert-escalation", every, now=now):
        return 0
    return escalate_overdue(services, now=now)


def statistics_upkeep(services: Any) -> int:
    """Every five minutes (one worker): ANALYZE the store tables changed by more than a fraction.

    Catches what the web processes' own checks after their writes miss (on PostgreSQL the
    server counts every process's changes); see :mod:`hw_fhir.store.maintenance`. Return
    how many tables were analyzed.
    """
    statistics = getattr(services.store, "statistics", None)
    if statistics is None or not take_turn(services, "statistics", STATISTICS_EVERY_SECONDS):
        return 0
    return len(statistics.refresh())


@hookimpl(tryfirst=True)
def register_worker_tasks() -> list[Any]:  # tryfirst: the built-in jobs run first
    """Return the built-in periodic jobs."""
    return [reminder_queue, plan_scheduler, response_rescoring, alert_escalation,
            statistics_upkeep]
