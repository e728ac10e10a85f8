"""Built-in plugin: the worker's periodic jobs — reminder queue, plan scheduler, catch-up scoring."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from .hookspecs import hookimpl

__all__ = ["register_worker_tasks", "reminder_queue", "plan_scheduler", "response_rescoring",
           "alert_escalation", "statistics_upkeep", "take_turn"]

log = logging.getLogger("hw_fhir.worker")

#: Seconds between two scheduler passes (whichever worker takes the turn).
SCHEDULER_EVERY_SECONDS = 60
#: Seconds between two catch-up scoring sweeps (sooner while a backlog remains).
RESCORE_EVERY_SECONDS = 60
#: Seconds between two checks of the planner statistics (whichever worker takes the turn).
STATISTICS_EVERY_SECONDS = 300


def take_turn(services: Any, key: str, every_seconds: float, *, now: datetime | None = None) -> bool:
    """Take the turn for a periodic job shared by all workers; False if it is not due yet.

    The turn is a row of ``reminder_state`` (``turn/<key>`` → the next due instant),
    taken with one conditional UPDATE, so exactly one worker wins each period.
    """
    from .reminder_tables import reminder_state
    from .reminders import now_text

    moment = now or datetime.now(timezone.utc)
    name = f"turn/{key}"
    until = now_text(moment + timedelta(seconds=every_seconds))
    try:
        with services.store.begin() as conn:
            done = conn.execute(update(reminder_state)
                                .where(reminder_state.c.key == name,
                                       reminder_state.c.value <= now_text(moment))
                                .values(value=until))
            if done.rowcount:
                return True
            exists = conn.execute(reminder_state.select().where(reminder_state.c.key == name)).first()
            if exists is None:
                conn.execute(insert(reminder_state).values(key=name, value=until))
                return True
    except IntegrityError:  # another worker created the turn at the same moment
        return False
    return False


def reminder_queue(services: Any) -> int:
    """Discover, plan and send due reminders and alerts (a bounded batch); return jobs done."""
    from .reminders import ReminderPolicy, run_reminders

    policy = ReminderPolicy.from_settings(services.settings)
    run = run_reminders(services, worker=services.worker_name, limit=policy.batch * 10)
    return run.work


def plan_scheduler(services: Any) -> int:
    """Once a minute (one worker): overdue Tasks fail, pathways advance, Tasks materialize."""
    from .default_audit import scheduler_run
    from .plans import run_scheduler

    if not take_turn(services, "plan-scheduler", SCHEDULER_EVERY_SECONDS):
        return 0
    run = run_scheduler(services.store, settings=services.settings, events=services.events)
    scheduler_run(services.store, run)  # here, not in plans: web requests audit their own writes
    return len(run.failed) + len(run.released) + len(run.completed_plans) + len(run.created)


def _turn_due_now(services: Any, key: str) -> None:
    """Make a job's turn due at once (more work waits)."""
    from .reminder_tables import reminder_state

    with services.store.begin() as conn:
        conn.execute(update(reminder_state).where(reminder_state.c.key == f"turn/{key}")
                     .values(value=""))


def response_rescoring(services: Any) -> int:
    """Once a minute (one worker): score the responses written since the last sweep, if missed.

    :func:`hw_fhir.outcomes.sweep.rescore_changes` — one batch from a persisted cursor;
    a full batch makes the next turn due at once. Return how many responses were
    scored again.
    """
    from .default_audit import responses_rescored
    from .outcomes.sweep import rescore_changes

    if not take_turn(services, "response-rescoring", RESCORE_EVERY_SECONDS):
        return 0
    run = rescore_changes(services.store, settings=services.settings, plugins=services.plugins,
                          on_written=responses_rescored(services.store))
    if run.more:
        _turn_due_now(services, "response-rescoring")
    return run.rescored


def alert_escalation(services: Any, *, now: datetime | None = None) -> int:
    """Escalate risk alerts still undelivered after ``safety_escalate_after_seconds``.

    :func:`hw_fhir.outcomes.escalation.escalate_overdue`: the next person of each such
    alert's escalation path is told (finally the practice safety contact). One worker
    per turn, at most every tenth of the delay (and at least every minute). Return how
    many alerts escalated.
    """
    from .outcomes.escalation import escalate_overdue

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
def register_worker_tasks() -> list[Any]:
    """Return the built-in periodic jobs."""
    return [reminder_queue, plan_scheduler, response_rescoring, alert_escalation,
            statistics_upkeep]
