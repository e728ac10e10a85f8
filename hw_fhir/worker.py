"""The worker: runs every plugin's periodic jobs in a loop (``hw-fhir worker``).

Each cycle runs the jobs of ``register_worker_tasks`` in order — built in: the
reminder queue (:func:`hw_fhir.reminders.run_reminders`: discover new Tasks and
alerts, plan, send), the plan scheduler (:func:`hw_fhir.plans.run_scheduler`:
overdue → failed, pathway release, materializing Tasks ahead) and catch-up scoring
(:func:`hw_fhir.outcomes.sweep.rescore_changes`: responses written since the last
sweep whose scoring failed or never ran). Other subsystems (EHR
write-back outbox, bulk export, subscription delivery) add theirs the same way. When
a whole cycle did nothing the worker sleeps ``poll_seconds``.

Every cycle writes the worker heartbeat (:mod:`hw_fhir.heartbeat`: clinician pages
warn when no worker ran for five minutes); at start the worker makes every held
reminder due at once (:func:`hw_fhir.reminders.retry.release_held`: a setting may just
have been fixed).

Scaling: on PostgreSQL run as many workers as you like, on as many machines; they
share the queue through ``SELECT … FOR UPDATE SKIP LOCKED`` and never send twice. On
SQLite only one worker may run: a second one stops with a clear error (an exclusive
lock on ``<database>.worker.lock``). SIGTERM/SIGINT finish the current job and stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audit import trail_for
from .errors import ConfigurationError
from .heartbeat import beat
from .plugins import worker_tasks
from .reminders.retry import release_held

__all__ = ["Worker", "CycleReport", "worker_name", "single_sqlite_worker", "start_worker_thread"]

log = logging.getLogger("hw_fhir.worker")

#: Seconds between two heartbeats of one worker (clinician pages warn after 5 minutes).
BEAT_EVERY_SECONDS = 30.0


def worker_name() -> str:
    """Return a unique name for this worker process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class CycleReport:
    """What one cycle did: work done per job, and the jobs that failed."""

    work: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All work done in the cycle."""
        return sum(self.work.values())


@contextlib.contextmanager
def single_sqlite_worker(services: Any) -> Iterator[None]:
    """Hold the one-worker lock of a SQLite database (no-op on other databases)."""
    store = services.store
    if getattr(store, "dialect", "") != "sqlite":
        yield
        return
    import fcntl  # lazy: POSIX only, needed only for the SQLite one-worker lock

    database = store.engine.url.database or ""
    path = Path(f"{database}.worker.lock") if database and database != ":memory:" else None
    if path is None:
        yield
        return
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigurationError(
                "Another worker is already running on this SQLite database; SQLite supports one "
                "worker (use PostgreSQL to run several).") from None
        yield
    finally:
        handle.close()


class Worker:
    """Run the periodic jobs of all plugins, once or until stopped."""

    def __init__(self, services: Any, *, name: str | None = None, poll_seconds: float = 5.0) -> None:
        self.services = services
        self.name = name or worker_name()
        self.poll_seconds = poll_seconds
        self.stopping = threading.Event()
        services.worker_name = self.name
        self.jobs = worker_tasks(services.plugins, services.settings, services=services)
        # the worker's AuditEvents follow HW_FHIR_AUDIT like the web layer's
        trail_for(services.store, enabled=getattr(services.settings, "audit", True))
        self._last_beat: float | None = None

    def run_once(self) -> CycleReport:
        """Run every job once; return what each did (a failing job is logged, the rest run)."""
        work: dict[str, int] = {}
        errors: dict[str, str] = {}
        for job in self.jobs:
            label = str(getattr(job, "__qualname__", None) or getattr(job, "__name__", repr(job)))
            if self.stopping.is_set():
                break
            try:
                work[label] = int(job(self.services) or 0)
            except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the worker
                log.exception("Worker job %s failed", label)
                errors[label] = f"{type(exc).__name__}: {exc}"
        self.beat()
        return CycleReport(work=work, errors=errors)

    def beat(self) -> None:
        """Write the heartbeat (at most every :data:`BEAT_EVERY_SECONDS`)."""
        moment = time.monotonic()
        if self._last_beat is not None and moment - self._last_beat < BEAT_EVERY_SECONDS:
            return
        try:
            beat(self.services.store, self.name)
            self._last_beat = moment
        except Exception:  # noqa: BLE001 - the heartbeat must not stop the worker
            log.exception("Worker %s could not write its heartbeat", self.name)

    def run(self, *, cycles: int | None = None, until_idle: bool = False) -> int:
        """Run cycles until stopped (or ``cycles`` done, or a cycle did nothing); return the work."""
        done = 0
        count = 0
        with single_sqlite_worker(self.services):
            held = release_held(self.services.store)
            if held:
                log.info("Worker %s: %d held reminders are due again", self.name, held)
            while not self.stopping.is_set():
                report = self.run_once()
                done += report.total
                count += 1
                if cycles is not None and count >= cycles:
                    break
                if report.total == 0:
                    if until_idle:
                        break
                    self.stopping.wait(self.poll_seconds)
        return done

    def install_signal_handlers(self) -> None:
        """Stop gracefully on SIGTERM and SIGINT (finish the current job first)."""
        def stop(signum: int, _frame: Any) -> None:
            log.info("Worker %s stopping (signal %d)", self.name, signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def start_worker_thread(services: Any, *, poll_seconds: float = 2.0) -> Worker:
    """Run a :class:`Worker` in a daemon thread of this process (``hw-fhir demo``); return it.

    The same loop as ``hw-fhir worker``; ``worker.stopping.set()`` stops it. When it
    cannot start (another worker holds a SQLite database), the reason is logged and
    the thread ends.
    """
    worker = Worker(services, poll_seconds=poll_seconds)

    def loop() -> None:
        try:
            worker.run()
        except ConfigurationError as exc:
            log.error("The in-process worker did not start: %s", exc.message)

    threading.Thread(target=loop, name=f"hw-fhir-worker-{worker.name}", daemon=True).start()
    return worker
