"""Planning a Task's reminders: its CommunicationRequest (the plan), link and reminder jobs; closing it.

The plan: ``status`` ``active``, ``category`` ``reminder``, ``priority`` ``routine``,
``subject`` and ``recipient`` the Patient, ``about`` → the Task, ``requester`` the
Task's requester, ``medium`` the planned channel's medium, ``occurrencePeriod`` from
the first to the last planned send, and ``payload`` the text with no clinical
content. The plan ends ``completed`` when the Task is completed and ``revoked`` when
it is cancelled or failed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert

from ..assignment import EXT_REMINDER_CHANNEL, OPEN_STATUSES
from ..errors import VersionConflict
from ..i18n import patient_language
from ..links import patient_links
from ..links.tables import patient_link
from .batch import BatchContext, check_each, put_all, read_resource, record_later, retry_later
from .clock import fhir_instant
from .preferences import preferences
from .queue import finish_jobs, insert_jobs, is_homework_task, job_row, reference_id
from .records import REMINDER_CATEGORY, REMINDER_PLAN_SYSTEM, resource_id
from .texts import default_message
from .timing import reminder_times

__all__ = ["plan_all", "task_channel", "close_plan", "close_request"]

log = logging.getLogger("hw_fhir.reminders")


@dataclass
class _Planned:
    job: Any
    task: dict[str, Any]
    patient_id: str | None
    times: list[tuple[str, datetime, datetime]]
    channel: str | None
    language: str | None = None


def plan_all(ctx: BatchContext, jobs: list[Any]) -> dict[str, str]:
    """Plan a batch's Tasks: check each, then store every plan in one transaction."""
    outcomes, planned = check_each(ctx, jobs, _plan_check)
    if not planned:
        return outcomes
    try:
        _store_plans(ctx, planned)
    except Exception as exc:  # noqa: BLE001 - one bad plan must not stop the others
        if len(planned) == 1:
            outcomes[planned[0].job.id] = retry_later(ctx, planned[0].job, exc)
            return outcomes
        log.warning("Storing %d plans together failed; storing them one by one", len(planned),
                    exc_info=True)
        for item in planned:
            try:
                _store_plans(ctx, [item])
            except Exception as one:  # noqa: BLE001
                outcomes[item.job.id] = retry_later(ctx, item.job, one)
    for item in planned:
        outcomes.setdefault(item.job.id, "planned")
    return outcomes


def _plan_check(ctx: BatchContext, job: Any) -> str | _Planned:
    """Return what to plan for a job's Task, or the outcome when there is nothing to plan."""
    task = read_resource(ctx, "Task", job.task_id)
    if task is None or task.get("status") not in OPEN_STATUSES or not is_homework_task(task):
        record_later(ctx, job, status="skipped", last_error="Task not open")
        return "skipped"
    chosen = task_channel(task)
    if chosen == "none":
        record_later(ctx, job, status="skipped", last_error="reminders off")
        return "skipped"
    patient_id = reference_id((task.get("for") or {}).get("reference"), "Patient")
    patient = read_resource(ctx, "Patient", patient_id)
    prefs = preferences(patient, ctx.policy)
    times = reminder_times(task, prefs, ctx.policy, now=ctx.now)
    if not times:
        record_later(ctx, job, status="skipped", last_error="nothing to send")
        return "skipped"
    return _Planned(job, task, patient_id, times, chosen or prefs.channel,
                    patient_language(patient))


def _store_plans(ctx: BatchContext, items: list[_Planned]) -> None:
    """Store plans (CommunicationRequest, link, reminder jobs) and finish their jobs together."""
    settings = ctx.services.settings
    links = patient_links(ctx.services)
    link_rows, requests = [], []
    for item in items:
        link = None
        if settings.base_url:
            row, link = links.new_link(item.task["id"], item.patient_id or "",
                                       now=ctx.now.timestamp())
            link_rows.append(row)
        message = default_message(kind="reminder", purpose="assigned", channel=item.channel or "",
                                  to=None, recipient=f"Patient/{item.patient_id}",
                                  practice=settings.practice_name,
                                  link=link.url if link else None, idempotency_key="",
                                  language=item.language)
        request = _plan_request(item.task, item.patient_id, item.times, message.text, ctx,
                                ctx.channels.get(item.channel or ""))
        request["id"] = resource_id("reminder-plan", item.task["id"])
        requests.append(request)
    with ctx.store.unit_of_work() as unit:
        if link_rows:
            unit.conn.execute(insert(patient_link), link_rows)
        stored = put_all(unit, requests)
        rows, done = [], []
        for item, request in zip(items, requests):
            request_id = stored[request["id"]]["id"]
            task_id = item.task["id"]
            rows += [job_row(f"reminder/{task_id}/{purpose}", kind="reminder", purpose=purpose,
                             due=when, now=ctx.now, task_id=task_id, request_id=request_id,
                             patient_id=item.patient_id)
                     for purpose, when, _deadline in item.times]
            done.append((item.job, {"status": "sent", "request_id": request_id}))
        insert_jobs(unit.conn, rows)
        finish_jobs(unit.conn, ctx.worker, ctx.now, done)


def task_channel(task: Mapping[str, Any]) -> str | None:
    for ext in task.get("extension") or []:
        if ext.get("url") == EXT_REMINDER_CHANNEL and ext.get("valueCode"):
            return str(ext["valueCode"])
    return None


def _plan_request(task: Mapping[str, Any], patient_id: str | None,
                  times: list[tuple[str, datetime, datetime]], text_: str, ctx: BatchContext,
                  channel: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "identifier": [{"system": REMINDER_PLAN_SYSTEM, "value": task["id"]}],
        "status": "active",
        "category": [REMINDER_CATEGORY],
        "priority": "routine",
        "subject": {"reference": f"Patient/{patient_id}"},
        "about": [{"reference": f"Task/{task['id']}"}],
        "payload": [{"contentString": text_}],
        "occurrencePeriod": {"start": fhir_instant(times[0][1]), "end": fhir_instant(times[-1][1])},
        "authoredOn": fhir_instant(ctx.now),
        "recipient": [{"reference": f"Patient/{patient_id}"}],
    }
    if channel is not None:
        request["medium"] = [channel.medium]
    if (task.get("requester") or {}).get("reference"):
        request["requester"] = {"reference": task["requester"]["reference"]}
    return request


def close_plan(ctx: BatchContext, job: Any) -> str:
    task = read_resource(ctx, "Task", job.task_id)
    if task is not None and task.get("status") not in OPEN_STATUSES:
        close_request(ctx.store, task)
    record_later(ctx, job, status="sent")
    return "closed"


def close_request(store: Any, task: Mapping[str, Any]) -> None:
    """End a Task's reminder plan: ``completed`` with the Task, else ``revoked``."""
    status = "completed" if task.get("status") == "completed" else "revoked"
    page = store.search("CommunicationRequest",
                        [("identifier", f"{REMINDER_PLAN_SYSTEM}|{task['id']}")])
    for stored in page.matches:
        request = stored.resource
        if request.get("status") != "active":
            continue
        try:
            store.update(dict(request, status=status), if_match=stored.version_id)
        except VersionConflict:
            log.info("Reminder plan %s changed meanwhile; closed next time", stored.id)
