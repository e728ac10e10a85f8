"""The cross-worker lease: one worker takes the turn of a periodic job per period.

A turn is a row of ``reminder_state`` (``turn/<key>`` → the next due instant), taken
with one conditional UPDATE, so exactly one worker wins each period, on any number of
machines.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from .reminders.tables import reminder_state
from .reminders import now_text

__all__ = ["take_turn", "make_turn_due"]


def take_turn(services: Any, key: str, every_seconds: float, *, now: datetime | None = None) -> bool:
    """Take the turn for a periodic job shared by all workers; False if it is not due yet."""
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


def make_turn_due(services: Any, key: str) -> None:
    """Make a job's turn due at once (more work waits)."""
    with services.store.begin() as conn:
        conn.execute(update(reminder_state).where(reminder_state.c.key == f"turn/{key}")
                     .values(value=""))
