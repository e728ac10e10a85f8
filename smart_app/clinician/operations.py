"""Operations on clinician pages: undelivered reminders (with Retry) and the worker banner.

Thin: the view models are :mod:`hw_fhir.reminders.retry` and :mod:`hw_fhir.heartbeat`.
The partials ``clinician/_reminder_problems.html`` (dashboard and panel) and
``clinician/_worker_banner.html`` (every clinician page) call the template globals
registered here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import request

from hw_fhir.errors import NotFound
from hw_fhir.heartbeat import WorkerSilence, worker_silence
from hw_fhir.reminders.retry import ReminderProblem, reminder_problems, retry_reminders

from ..state import app_state
from .base import bp, go, patient_or_404, store

__all__ = ["undelivered_reminders", "worker_banner", "retry_reminder", "panel_names"]

#: Seconds a process keeps the heartbeat it read (one small query per 15 s, not per page).
_BANNER_TTL = 15.0


@bp.app_template_global("undelivered_reminders")
def undelivered_reminders(patients: Iterable[str]) -> list[ReminderProblem]:
    """Return the undelivered reminders and alerts of these patients (ids or references)."""
    return reminder_problems(store(), patients=list(patients), limit=20)


@bp.app_template_global("worker_banner")
def worker_banner() -> WorkerSilence | None:
    """Return the workers' silence (no cycle for 5 minutes), or None when they run."""
    cache = app_state().worker_banner
    if cache.fresh():
        return cache.value  # type: ignore[no-any-return]
    value = worker_silence(store())
    cache.keep(value, _BANNER_TTL)
    return value


@bp.post("/patients/<pid>/reminders/retry")
def retry_reminder(pid: str) -> Any:
    """Queue one undelivered reminder of this patient again (the Retry button, field ``job``)."""
    patient_or_404(pid)
    job_id = request.form.get("job", "")
    problems = {p.id: p for p in reminder_problems(store(), patients=[pid], limit=200)}
    if job_id not in problems:
        raise NotFound("This reminder is not waiting for a retry any more.")
    retry_reminders(store(), ids=[job_id], patient=pid)
    back = "clinician.panel" if request.form.get("back") == "panel" else "clinician.dashboard"
    notice = "The reminder is queued again; the worker sends it within a minute."
    return go(back, notice=notice, **({} if back == "clinician.panel" else {"pid": pid}))


@bp.app_template_global("panel_names")
def panel_names(entries: Iterable[Any]) -> dict[str, str]:
    """Return patient id → name of the panel's entries (for the undelivered list)."""
    return {str(e.patient).removeprefix("Patient/"): e.name for e in entries if e.name}
