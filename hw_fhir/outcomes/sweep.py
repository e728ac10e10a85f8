"""Catch-up scoring: re-score the QuestionnaireResponses written since the last sweep.

Every path scores a response when it is written (the ``response_completed`` event, the
/fhir writes). When that failed or never ran — the store was down, an expression was
broken and has been fixed since, the process died between the write and the scoring,
a writer that does not score at all — :func:`rescore_changes` catches up. The worker
runs it (``response_rescoring`` in :mod:`hw_fhir.default_worker`).

It reads the store's write sequence (:mod:`hw_fhir.sync.changes`) after a cursor, the
high-water mark ``outcomes:rescore`` in the ``sync_cursor`` table, up to a barrier
below which every write has committed (so a write that commits late is read on the
next sweep, never skipped), and records the scores of each response written there
with :func:`~.record.record_scores`. Recording is idempotent (deterministic
Observation ids, amended in place; conditional creates of Flags and alerts), so a
response that was scored already writes nothing. Versions of a response the sweep
wrote itself (calculated items filled in) are skipped by the next sweep when no one
else wrote a response in between. The cursor moves only past responses whose
recording ended without an error: a store error stops the batch there, and the next
sweep starts again from that response. On its first run the sweep reads the whole
history once, in batches.

Several workers: on PostgreSQL the sweeping worker holds the cursor row (``SELECT …
FOR UPDATE SKIP LOCKED``) until it has stored the new position; another worker finds
it locked and skips its turn. SQLite has one worker (:func:`hw_fhir.worker.single_sqlite_worker`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from ..config import Settings
from ..errors import NotFound
from ..sync.changes import barrier, read_changes
from ..sync.tables import sync_cursor
from .record import SCORED_STATUSES, record_scores

__all__ = ["RESCORE_CURSOR", "RESCORE_BATCH", "RescoreRun", "rescore_changes"]

log = logging.getLogger("hw_fhir.outcomes")

#: The sweep's high-water mark: its name in ``sync_cursor`` (a ``resource_version.seq``).
RESCORE_CURSOR = "outcomes:rescore"
#: Response versions read per sweep.
RESCORE_BATCH = 200
_TYPE = "QuestionnaireResponse"
#: Statuses worth scoring again: scored ones, and retracted ones (their Observations retract).
_STATUSES = (*SCORED_STATUSES, "entered-in-error")


@dataclass(frozen=True)
class RescoreRun:
    """What one sweep did.

    ``rescored`` responses were scored again (completed, amended or retracted ones);
    ``caught_up`` of them had something written (Observations, a Flag...): they had
    been missed; ``raised`` Flags were newly raised; ``failed`` is True when a store
    error stopped the batch (it resumes there); ``more`` when more writes wait beyond
    this batch; ``skipped`` when another worker was sweeping.
    """

    rescored: int = 0
    caught_up: int = 0
    raised: int = 0
    failed: bool = False
    more: bool = False
    skipped: bool = False


def _ensure_cursor(store: Any) -> None:
    """Create the cursor at 0 (the beginning of the history) unless it exists."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
    with store.begin() as conn:
        conn.execute(insert(sync_cursor).values(name=RESCORE_CURSOR, seq=0, updated_at=0.0)
                     .on_conflict_do_nothing(index_elements=["name"]))


@contextmanager
def _claim(store: Any) -> Iterator[tuple[int | None, Connection | None]]:
    """Yield the cursor (None: another worker holds it) and the transaction holding it.

    On PostgreSQL the row stays locked until the block ends; SQLite, where writers
    share one lock, yields no transaction: the cursor is stored afterwards.
    """
    stmt = select(sync_cursor.c.seq).where(sync_cursor.c.name == RESCORE_CURSOR)
    if store.dialect != "postgresql":
        with store.engine.connect() as conn:
            value = conn.execute(stmt).scalar()
        yield int(value or 0), None
        return
    with store.begin() as conn:
        value = conn.execute(stmt.with_for_update(skip_locked=True)).scalar()
        yield (None if value is None else int(value)), conn


def _store_cursor(store: Any, conn: Connection | None, seq: int) -> None:
    stmt = (update(sync_cursor).where(sync_cursor.c.name == RESCORE_CURSOR)
            .values(seq=seq, updated_at=time.time()))
    if conn is not None:
        conn.execute(stmt)
        return
    with store.begin() as own:
        own.execute(stmt)


def _past_own_writes(store: Any, end: int, ours: set[tuple[str, int]]) -> int:
    """Move ``end`` past the response versions this sweep wrote, up to the first one it did not."""
    horizon = barrier(store).seq
    with store.engine.connect() as conn:
        later = read_changes(conn, after=end, upto=horizon, types=[_TYPE], limit=len(ours) + 1)
    for change in later:
        if (change.id, change.version_id) not in ours:
            return change.seq - 1
    return horizon


def rescore_changes(store: Any, *, settings: Settings | None = None, plugins: Any = None,
                    batch: int | None = None, now: datetime | None = None,
                    on_written: Callable[[Any, Any], None] | None = None) -> RescoreRun:
    """Score the responses written since the cursor (one batch) and move the cursor on.

    ``store`` is the :class:`~hw_fhir.store.SqlStore`; ``plugins`` the plugin manager
    told about newly raised Flags (``risk_raised``); ``batch`` how many response
    versions to read (:data:`RESCORE_BATCH`); ``now`` the time recorded on new Flags;
    ``on_written(response, recorded)`` is called for each response whose scoring wrote
    something (the worker audits those writes with it).
    """
    batch = batch or RESCORE_BATCH
    _ensure_cursor(store)
    with _claim(store) as (cursor, conn):
        if cursor is None:
            return RescoreRun(skipped=True)
        upto = barrier(store).seq
        if cursor >= upto:
            return RescoreRun()
        with store.engine.connect() as reader:
            changes = read_changes(reader, after=cursor, upto=upto, types=[_TYPE], limit=batch)
        more = len(changes) == batch
        end = changes[-1].seq if more else upto
        rescored = caught_up = raised = 0
        failed = False
        ours: set[tuple[str, int]] = set()
        done: set[str] = set()
        for change in changes:
            if change.deleted or change.id in done:
                continue
            try:
                response = store.read(_TYPE, change.id).resource
            except NotFound:  # deleted since (Gone is a NotFound)
                continue
            done.add(change.id)
            if response.get("status") not in _STATUSES:
                continue
            try:
                recorded = record_scores(store, response, settings=settings, plugins=plugins,
                                         now=now)
            except Exception as exc:  # noqa: BLE001 - stop here; the next sweep resumes here
                log.error("Re-scoring %s/%s failed (%s); the sweep resumes there next time",
                          _TYPE, change.id, type(exc).__name__)
                end, more, failed = change.seq - 1, False, True
                break
            rescored += 1
            caught_up += 1 if recorded.written else 0
            if recorded.written and on_written is not None:
                on_written(response, recorded)
            raised += len(recorded.raised)
            version = (recorded.response.get("meta") or {}).get("versionId")
            if version and version != (response.get("meta") or {}).get("versionId"):
                ours.add((change.id, int(version)))
        if ours and end == upto:
            end = _past_own_writes(store, end, ours)
        if end > cursor:
            _store_cursor(store, conn, end)
    return RescoreRun(rescored=rescored, caught_up=caught_up, raised=raised, failed=failed,
                      more=more)
