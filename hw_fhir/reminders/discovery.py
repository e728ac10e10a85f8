"""Finding work for the queue: open homework Tasks written by any path, and active risk alerts."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ..assignment import OPEN_STATUSES
from .policy import ReminderPolicy
from .queue import insert_jobs, is_homework_task, job_row, reference_id
from .records import COMMUNICATION_CATEGORY_SYSTEM
from .tables import reminder_state

__all__ = ["discover_tasks", "discover_alerts"]

log = logging.getLogger("hw_fhir.reminders")

_DISCOVERY_KEY = "task-discovery-cursor"


def discover_tasks(services: Any, *, now: datetime | None = None, limit: int | None = None,
                   pages: int = 20) -> int:
    """Queue planning for open homework Tasks written since the last sweep (any path, e.g. /fhir).

    One worker at a time advances the cursor (``FOR UPDATE SKIP LOCKED`` on PostgreSQL);
    Tasks newer than ``discovery_lag_seconds`` wait for the next sweep so that a write
    committed late is not skipped. Reads at most ``pages`` pages. Return how many plans
    were queued.
    """
    queued = 0
    for _ in range(pages):
        more, count = _discover_page(services, now=now, limit=limit)
        queued += count
        if not more:
            break
    return queued


def _discover_page(services: Any, *, now: datetime | None, limit: int | None) -> tuple[bool, int]:
    store = services.store
    policy = ReminderPolicy.from_settings(services.settings)
    moment = now or datetime.now(timezone.utc)
    horizon = moment - timedelta(seconds=policy.discovery_lag_seconds)
    batch = limit or policy.discovery_batch
    with store.begin() as conn:
        stmt = select(reminder_state.c.value).where(reminder_state.c.key == _DISCOVERY_KEY)
        if conn.dialect.name == "postgresql":
            _ensure_state(conn, _DISCOVERY_KEY)
            row = conn.execute(stmt.with_for_update(skip_locked=True)).first()
            if row is None:
                return False, 0  # another worker is sweeping
        else:
            row = conn.execute(stmt).first()
        cursor = row.value if row is not None else ""
        # by _lastUpdated alone (one index range); code and status are checked here
        params = [("_lastUpdated", f"le{_store_instant(horizon)}"),
                  ("_sort", "_lastUpdated"), ("_count", str(batch))]
        if cursor:
            params.append(("_lastUpdated", f"ge{cursor}"))
        page = store.search("Task", params)
        rows = []
        last = cursor
        for stored in page.matches:
            task = stored.resource
            last = max(last, stored.last_updated)
            if task.get("status") not in OPEN_STATUSES or not is_homework_task(task):
                continue
            rows.append(job_row(f"plan/{task['id']}", kind="plan", purpose="plan", due=None,
                                now=moment, task_id=task["id"],
                                patient_id=reference_id((task.get("for") or {}).get("reference"), "Patient")))
        queued = insert_jobs(conn, rows)
        if page.matches and last == cursor and page.has_more:
            log.warning("More than %d Tasks share lastUpdated %s; raise discovery_batch", batch, last)
        _set_state(conn, _DISCOVERY_KEY, last)
    return bool(page.has_more and last != cursor), queued


def _store_instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ensure_state(conn: Any, key: str) -> None:
    conn.execute(pg_insert(reminder_state).values(key=key, value="")
                 .on_conflict_do_nothing(index_elements=["key"]))


def _set_state(conn: Any, key: str, value: str) -> None:
    done = conn.execute(update(reminder_state).where(reminder_state.c.key == key).values(value=value))
    if not done.rowcount:
        conn.execute(insert(reminder_state).values(key=key, value=value))


def discover_alerts(services: Any, *, now: datetime | None = None) -> int:
    """Queue delivery of every active risk-alert CommunicationRequest not queued yet."""
    store = services.store
    moment = now or datetime.now(timezone.utc)
    params = [("category", f"{COMMUNICATION_CATEGORY_SYSTEM}|risk-alert"), ("status", "active"),
              ("_sort", "_id"), ("_count", "200")]
    queued = 0
    offset = 0
    while True:
        page = store.search("CommunicationRequest", [*params, ("_offset", str(offset))])
        rows = [job_row(f"alert/{r['id']}", kind="alert", purpose="risk-alert", due=None, now=moment,
                        request_id=r["id"],
                        patient_id=reference_id((r.get("subject") or {}).get("reference"), "Patient"))
                for r in page.resources]
        if rows:
            with store.begin() as conn:
                queued += insert_jobs(conn, rows)
        if not page.has_more or not page.matches:
            return queued
        offset += len(page.matches)
