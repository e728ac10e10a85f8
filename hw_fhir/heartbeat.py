"""The workers' heartbeat: when did a worker last run a cycle?

Every worker cycle (``hw-fhir worker``, the demo's in-process worker) writes the
current instant and its name to ``reminder_state`` (key :data:`HEARTBEAT_KEY`): one
small UPDATE. Clinician pages read it (:func:`worker_silence`) and show a banner when
no worker has run for :data:`SILENT_AFTER` — reminders are not being sent then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from .reminders.tables import reminder_state
from .reminders import now_text

__all__ = ["HEARTBEAT_KEY", "SILENT_AFTER", "Heartbeat", "WorkerSilence", "beat", "last_beat", "worker_silence"]

HEARTBEAT_KEY = "worker/heartbeat"
#: No heartbeat for this long: the banner says reminders are not being sent.
SILENT_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Heartbeat:
    """The last worker cycle: when, and which worker."""

    at: datetime
    worker: str


def beat(store: Any, worker: str, *, now: datetime | None = None) -> None:
    """Record that ``worker`` ran a cycle now."""
    value = f"{now_text(now or datetime.now(timezone.utc))} {worker}"[:2000]
    s = reminder_state.c
    for _ in range(2):
        try:
            with store.begin() as conn:
                if not conn.execute(update(reminder_state).where(s.key == HEARTBEAT_KEY)
                                    .values(value=value)).rowcount:
                    conn.execute(insert(reminder_state).values(key=HEARTBEAT_KEY, value=value))
            return
        except IntegrityError:  # another worker wrote the first beat at the same moment
            continue


def last_beat(store: Any) -> Heartbeat | None:
    """Return the last heartbeat, or None when no worker ever ran."""
    with store.engine.connect() as conn:
        value = conn.execute(select(reminder_state.c.value)
                             .where(reminder_state.c.key == HEARTBEAT_KEY)).scalar()
    if not value:
        return None
    stamp, _, worker = str(value).partition(" ")
    try:
        at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return Heartbeat(at=at, worker=worker)


@dataclass(frozen=True)
class WorkerSilence:
    """No worker ran for :data:`SILENT_AFTER`: since when (None: never)."""

    last: Heartbeat | None


def worker_silence(store: Any, *, now: datetime | None = None) -> WorkerSilence | None:
    """Return None when a worker ran within :data:`SILENT_AFTER`, else the silence."""
    moment = now or datetime.now(timezone.utc)
    last = last_beat(store)
    if last is not None and moment - last.at <= SILENT_AFTER:
        return None
    return WorkerSilence(last=last)
