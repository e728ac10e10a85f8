"""Warm a server's per-process caches once, in the process the server forks its workers from.

A worker forked from the server process inherits that process's memory, so whatever the
server built before the fork is there in every worker without being built again: the
first page a worker serves then costs what a later one does. :func:`warm_up` builds the
caches the pages fill on first use and which do not depend on whose data is shown:

* every template, loaded into the Jinja environment (from ``<instance>/jinja-cache``
  once a server has compiled it);
* the lookups every request makes (the browser session, the launch, the patient link),
  run for ids no one has: compiled, finding nothing (no request is sent: a refused request
  would be audited as a failed access);
* the SQL of the pages' reads, compiled by SQLAlchemy into the engine's statement cache
  (keyed by the statement's shape, not its values): the reads of the clinician pages
  (dashboard, panel, session prep, flags) and of the patient's pages (to-do list,
  progress) run once for a patient and a practitioner hw-fhir never creates
  (:data:`NOBODY`): they find nothing, show nothing and write nothing. Shapes that
  depend on what is found (a search driven by another filter when the patient has many
  Tasks, the reads that follow up on found resources) are compiled on first use;
* the FHIRPath expressions (scores) of every stored Questionnaire, parsed once
  (:func:`hw_fhir.scoring.sdc.check_expressions`; ANTLR builds its prediction tables
  on the first parses): the response review and the scoring of a submitted form use them.

What holds operating-system resources is not kept: the connections the warm-up opened
are closed (``store.dispose()``) before the server forks, and each worker opens its own
(:meth:`hw_fhir.services.Services.after_fork`). :func:`prepare_for_fork` warms, closes
and then freezes the start-up heap (:func:`gc.freeze`), as ``hw-fhir serve`` does.
"""

from __future__ import annotations

import gc
import logging
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hw_fhir import review
from hw_fhir.adherence import patient_adherence
from hw_fhir.flag_history import acknowledged_flags
from hw_fhir.heartbeat import worker_silence
from hw_fhir.links import patient_links
from hw_fhir.messages import thread
from hw_fhir.outcomes import measure_history
from hw_fhir.outcomes.escalation import undelivered_alerts
from hw_fhir.reminders.retry import reminder_problems
from hw_fhir.scoring.sdc import check_expressions
from hw_fhir.store.base import iter_all

from .patient.todo import patient_tasks, todo_list
from .state import app_state, services

__all__ = ["NOBODY", "NO_PRACTITIONER", "freeze_startup_heap", "prepare_for_fork",
           "warm_expressions", "warm_templates", "warm_up"]

log = logging.getLogger("smart_app.warmup")

#: The patient id the warm-up reads for: one hw-fhir never creates, so the reads find
#: nothing (and if a client created it, they read it and throw it away).
NOBODY = "hw-fhir-warm-up"
#: The practitioner the panel is warmed for.
NO_PRACTITIONER = f"Practitioner/{NOBODY}"


def warm_templates(app: Any) -> int:
    """Load every template into the app's Jinja environment; return how many."""
    env = app.jinja_env
    names = [n for n in env.list_templates() if n.endswith((".html", ".txt", ".xml", ".js"))]
    if env.cache is not None and getattr(env.cache, "capacity", len(names)) < len(names):
        return 0  # they would push each other out: leave it to first use
    for name in names:
        env.get_template(name)
    return len(names)


#: At most this many Questionnaires' expressions are parsed (the parse cache holds 1 024).
MAX_QUESTIONNAIRES = 200


def _warm_lookups(app: Any) -> None:
    """Look up a browser session, a launch and a patient link no one has (finds nothing)."""
    sessions = getattr(app.session_interface, "store", None)  # the server-side sessions
    if sessions is not None:
        sessions.load(NOBODY)
    launcher = app_state(app).launcher
    if launcher is not None:
        launcher.launches.get(NOBODY, NOBODY)
    patient_links(services(app)).is_live(NOBODY)


def warm_expressions(store: Any, limit: int = MAX_QUESTIONNAIRES) -> int:
    """Parse the FHIRPath expressions of the stored Questionnaires; return how many were read."""
    count = 0
    for questionnaire in iter_all(store, "Questionnaire", []):
        check_expressions(questionnaire)
        count += 1
        if count >= limit:
            break
    return count


def _warm_reads(app: Any) -> None:
    """Run the pages' reads once for :data:`NOBODY` (finds nothing, writes nothing)."""
    svc = services(app)
    store = svc.store
    now = datetime.now(timezone.utc)
    patient = f"Patient/{NOBODY}"
    # what every clinician page shows (the worker banner, undelivered reminders and alerts,
    # the message thread) and the patient session's link check
    worker_silence(store, now=now)
    reminder_problems(store, patients=[NOBODY], limit=20)
    undelivered_alerts(store, patient=NOBODY)
    thread(store, NOBODY)
    review.patient_dashboard(store, NOBODY, now=now)
    review.session_prep(store, NOBODY, now=now)
    review.panel(store, NO_PRACTITIONER, now=now)
    acknowledged_flags(store, NOBODY)
    patient_adherence(store, patient, now=now)
    for key in ("phq-9", "gad-7"):
        measure_history(store, patient, key)
    todo_list(store, patient_tasks(store, patient, now=now), now=now, zone=ZoneInfo("UTC"))


def warm_up(app: Any) -> None:
    """Fill the caches a worker would fill on its first pages (see the module doc).

    A store without an SQL engine (a remote FHIR server) has no statement cache to fill;
    a failing read is logged and the server starts anyway (the caches fill on first use).
    """
    warm_templates(app)
    store = services(app).store
    if getattr(store, "engine", None) is None:
        return
    try:
        _warm_lookups(app)
        with app.app_context():
            _warm_reads(app)
        warm_expressions(store)
    except Exception:  # noqa: BLE001 - a warm-up is an optimisation: never a reason not to start
        log.exception("warming the page reads failed; the first pages fill the caches")


def freeze_startup_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's sight.

    The app, its templates and the FHIR models are a few hundred thousand objects that
    live as long as the process; without this every full collection walks them again,
    which a page reading 1 000 Tasks triggers (about a third of its time). Done once in
    the server process before the server forks its workers (they inherit it).
    """
    gc.collect()
    gc.freeze()


def prepare_for_fork(app: Any) -> None:
    """Warm the caches, close the store's connections, freeze the heap: before workers fork.

    ``hw-fhir serve`` and ``hw-fhir demo`` run it in the server process just before
    the server forks its workers; the page benchmark runs it before it forks its cold workers.
    """
    warm_up(app)
    services(app).store.dispose()  # the warm-up's connections: no worker inherits a socket
    freeze_startup_heap()
