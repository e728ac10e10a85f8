"""Built-in plugin: the worker's side of the audit trail (:mod:`hw_fhir.audit`).

* every reminder or alert sent or failed is an AuditEvent (type DICOM 110100
  Application Activity, subtype ``reminder-sent`` / ``reminder-failed``), with the
  patient, the Task and the Communication as entities — references only;
* the worker's other accesses, through :func:`record_worker` called where the work is
  done: records written back to an EHR (:mod:`hw_fhir.sync.outbox`) and Subscription
  notifications sent (:mod:`hw_fhir.sync.subscriptions`) — disclosures, type DICOM
  110106 Export with the receiving system as the destination agent — and, from the
  worker's jobs (:mod:`hw_fhir.default_worker`, not the web requests that call the same
  functions and are audited there), each patient's record it changes: overdue Tasks
  failed, Tasks materialized, pathway steps released, responses re-scored;
* the periodic job :func:`audit_upkeep` writes queued events and, once an hour (one
  worker), deletes those older than ``Settings.audit_retention_days``.
"""

from __future__ import annotations

from typing import Any

from .audit import HW_SUBTYPE, TYPE_APPLICATION, Access, prune, trail_for
from .hookspecs import hookimpl
from .lease import take_turn

__all__ = ["WORKER", "audit_upkeep", "reminder_sent", "reminder_failed", "register_worker_tasks",
           "patient_references", "record_worker", "scheduler_run", "responses_rescored"]

#: The agent of the worker's AuditEvents (its client id).
WORKER = "hw-fhir-worker"
#: Seconds between two retention sweeps.
PRUNE_EVERY_SECONDS = 3600


_PATIENT_KEYS = ("subject", "for", "patient")


def patient_references(*resources: Any) -> list[str]:
    """Return the ``Patient/<id>`` references of resources (``subject``, ``for``, ``patient``)."""
    out: list[str] = []
    for resource in resources:
        if not isinstance(resource, dict):
            continue
        for key in _PATIENT_KEYS:
            value = resource.get(key)
            ref = value.get("reference") if isinstance(value, dict) else None
            if isinstance(ref, str) and ref.startswith("Patient/") and ref not in out:
                out.append(ref)
    return out


def record_worker(store: Any, subtype: str, *, action: str, resources: Any = (),
                  what: Any = (), patients: Any = (), outcome: str = "0",
                  type: dict[str, str] = TYPE_APPLICATION, destination: str | None = None,
                  destination_address: str | None = None) -> None:
    """Queue one AuditEvent of the worker (agent :data:`WORKER`); references only.

    ``resources`` are stored resources: each is an entity (``Type/id``) and their
    patients (``subject``/``for``/``patient``) the patient entities; ``what`` and
    ``patients`` add references. The trail writes the event with its next batch.
    """
    refs = [f"{r['resourceType']}/{r['id']}" for r in resources
            if isinstance(r, dict) and r.get("resourceType") and r.get("id")]
    trail_for(store).record(Access(
        type=type, subtype=subtype, subtype_system=HW_SUBTYPE, action=action, outcome=outcome,
        client_id=WORKER, patients=tuple([*patients, *patient_references(*resources)]),
        what=tuple([*refs, *what]), destination=destination,
        destination_address=destination_address))


def scheduler_run(store: Any, run: Any) -> int:
    """Record the writes of one plan scheduler pass (:class:`hw_fhir.plans.SchedulerRun`).

    One AuditEvent per write: each overdue Task marked failed (``task-overdue``, U),
    the Tasks materialized for each plan in its one transaction (``tasks-materialized``,
    C, the CarePlan as an entity too), each CarePlan updated (``pathway-release`` when a
    step was released, else ``plan-advanced``; U). Return how many were queued.
    """
    count = 0
    for task in run.failed:
        record_worker(store, "task-overdue", action="U", resources=[task])
        count += 1
    by_plan: dict[str, list[Any]] = {}
    for task in run.created:
        plan = next((str(b.get("reference")) for b in task.get("basedOn") or []
                     if str(b.get("reference") or "").startswith("CarePlan/")), "")
        by_plan.setdefault(plan, []).append(task)
    for plan, tasks in by_plan.items():
        record_worker(store, "tasks-materialized", action="C", resources=tasks,
                      what=(plan,) if plan else ())
        count += 1
    released = {step.split("#")[0] for step in run.released}
    for plan in getattr(run, "plans", ()):
        ref = f"CarePlan/{plan['id']}"
        record_worker(store, "pathway-release" if ref in released else "plan-advanced",
                      action="U", resources=[plan])
        count += 1
    return count


def responses_rescored(store: Any) -> Any:
    """Return the callback of :func:`hw_fhir.outcomes.sweep.rescore_changes` that records
    each response whose catch-up scoring wrote something (``response-rescored``, U): the
    patient, the response and its score Observations, Flags and alerts as entities."""

    def written(response: Any, recorded: Any) -> None:
        resources = [recorded.response or response, *recorded.observations, *recorded.retracted,
                     *recorded.flags, *recorded.alerts]
        record_worker(store, "response-rescored", action="U", resources=resources)

    return written


def _reminder_access(communication: Any, request: Any, task: Any, *, subtype: str,
                     outcome: str) -> Access:
    patients: list[str] = []
    what: list[str] = []
    for resource in (task, request, communication):
        if not isinstance(resource, dict):
            continue
        if resource.get("id"):
            what.append(f"{resource.get('resourceType')}/{resource['id']}")
        for key in ("for", "subject"):
            ref = (resource.get(key) or {}).get("reference") if isinstance(resource.get(key), dict) else None
            if isinstance(ref, str) and ref.startswith("Patient/"):
                patients.append(ref)
    return Access(type=TYPE_APPLICATION, subtype=subtype, subtype_system=HW_SUBTYPE, action="E",
                  outcome=outcome, client_id=WORKER, patients=tuple(patients), what=tuple(what))


@hookimpl(tryfirst=True)
def reminder_sent(store: Any, communication: Any, request: Any, task: Any) -> None:
    """Record the reminder sent (the worker read the patient's Task and contact to send it)."""
    trail_for(store).record(_reminder_access(communication, request, task,
                                             subtype="reminder-sent", outcome="0"))


@hookimpl(tryfirst=True)
def reminder_failed(store: Any, communication: Any, request: Any, task: Any, permanent: bool) -> None:
    """Record the failed attempt (outcome 8 when permanent, 4 when it will be retried)."""
    trail_for(store).record(_reminder_access(communication, request, task, subtype="reminder-failed",
                                             outcome="8" if permanent else "4"))


def audit_upkeep(services: Any) -> int:
    """Write queued audit events; hourly (one worker) delete those past the retention."""
    done = trail_for(services.store).flush()
    days = services.settings.audit_retention_days
    if days and take_turn(services, "audit-retention", PRUNE_EVERY_SECONDS):
        done += prune(services.store, retention_days=days)
    return done


@hookimpl(tryfirst=True)
def register_worker_tasks() -> list[Any]:
    """Return the audit trail's periodic job."""
    return [audit_upkeep]
