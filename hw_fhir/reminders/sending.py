"""Sending a batch's reminders and alerts: check each again, count and link them, send one by one.

The checks (Task still open, plan active, quiet hours, the patient's channels and
opt-outs, read again at send time), the daily limit (per-patient lock) and the links
are done in one transaction committed before anything is sent; each send on a
channel without de-duplication is then recorded before the next one starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import select, text, update

from ..assignment import OPEN_STATUSES
from ..errors import HeldDeliveryError, PermanentDeliveryError
from ..i18n import patient_language
from ..links import IssuedLink, patient_links
from ..outcomes.escalation import restrict_to_contact_channel
from .alerts import alert_link, alert_recipient
from .batch import (
    READ_CHUNK,
    BatchContext,
    check_each,
    flush,
    guarded,
    read_resource,
    record_later,
    retry_later,
)
from .clock import fhir_instant, local_moment, now_text
from .delivery import available_channels, deliver, fail_attempt
from .planning import close_request, task_channel
from .preferences import ReminderPreferences, preferences
from .queue import attempt_key
from .tables import reminder_job
from .texts import default_message
from .timing import send_deadline, task_window

__all__ = ["send_all", "send_alert"]

log = logging.getLogger("hw_fhir.reminders")


@dataclass
class _Ready:
    """A reminder that passed its checks; ``channel`` and ``link`` are chosen before sending."""

    job: Any
    task: dict[str, Any]
    request: dict[str, Any]
    patient: dict[str, Any]
    prefs: ReminderPreferences
    deadline: datetime | None
    available: dict[str, Any]
    channel: Any = None
    link: IssuedLink | None = None


def send_all(ctx: BatchContext, jobs: list[Any]) -> dict[str, str]:
    """Check a batch's reminders, count and link them in one transaction, then send each.

    A batch still sending half a lease after its claim gives back the jobs it has not
    started (``released``), so no other worker takes them over while this one works;
    so does a reminder whose patient opted out of a channel meanwhile (checked again).
    """
    outcomes, ready = check_each(ctx, jobs, _check_reminder)
    if ready:
        try:
            ready = _prepare_sends(ctx, ready, outcomes)
        except Exception as exc:  # noqa: BLE001 - nothing was sent: all are tried again
            for item in ready:
                outcomes[item.job.id] = retry_later(ctx, item.job, exc)
            ready = []
    for n, item in enumerate(ready):
        if ctx.past_half_lease():
            log.info("Batch ran past half its lease: %d reminders given back", len(ready) - n)
            for rest in ready[n:]:
                outcomes[rest.job.id] = _give_back(ctx, rest.job)
            break
        if item.job.patient_id in ctx.opted_out:  # checked before the opt-out: check again
            outcomes[item.job.id] = _give_back(ctx, item.job)
            continue
        outcomes[item.job.id] = guarded(ctx, item.job, lambda c, _job, it=item: _send_ready(c, it))
        # a send on a channel without de-duplication (email, SMS...) is recorded
        # (Communication + job state) before the next one starts: a worker killed mid-batch
        # repeats at most the one message it had in flight. Channels whose receiver
        # de-duplicates by key (``deduplicates = True``) are recorded with the batch.
        if not getattr(item.channel, "deduplicates", False):
            flush(ctx)
    return outcomes


def _give_back(ctx: BatchContext, job: Any) -> str:
    """Return an unstarted job to the queue as it was (due now, counted again when claimed)."""
    record_later(ctx, job, status="pending", counted_at=None)
    return "released"


def _check_reminder(ctx: BatchContext, job: Any) -> str | _Ready:
    """Check a reminder against its Task, plan and the patient's preferences (read at send time)."""
    task = read_resource(ctx, "Task", job.task_id)
    if task is None or task.get("status") not in OPEN_STATUSES:
        if task is not None:
            close_request(ctx.store, task)
        record_later(ctx, job, status="cancelled",
                     last_error=f"Task {task.get('status') if task else 'deleted'}")
        return "cancelled"
    request = read_resource(ctx, "CommunicationRequest", job.request_id)
    if request is None or request.get("status") != "active":
        record_later(ctx, job, status="cancelled", last_error="plan not active")
        return "cancelled"
    patient = read_resource(ctx, "Patient", job.patient_id)
    prefs = preferences(patient, ctx.policy)
    _, due = task_window(task)
    deadline = send_deadline(job.purpose, due, ctx.policy)
    if task_channel(task) == "none":
        record_later(ctx, job, status="skipped", last_error="reminders off")
        return "skipped"
    if deadline is not None and ctx.now >= deadline:
        record_later(ctx, job, status="skipped",
                     last_error=f"too late: not sent before {fhir_instant(deadline)}")
        return "skipped"
    if prefs.in_quiet_hours(ctx.now):
        return _defer(ctx, job, prefs.next_allowed(ctx.now), deadline, "quiet hours")
    available = available_channels(ctx, patient, prefs, job)
    if not available or patient is None:
        if prefs.opt_out:  # the patient's own choice: final
            return fail_attempt(ctx, job, request, task, patient,
                                PermanentDeliveryError("opted out of every channel"), None)
        return fail_attempt(ctx, job, request, task, patient, HeldDeliveryError(
            "no channel can reach this patient: add an email address or mobile number in the "
            "EHR, or install the channel chosen"), None)
    return _Ready(job, task, request, patient, prefs, deadline, available)


def _prepare_sends(ctx: BatchContext, ready: list[_Ready], outcomes: dict[str, str]) -> list[_Ready]:
    """Count reminders against the daily limit, choose channels and links; return those to send.

    One transaction, committed before anything is sent: the counts are then seen by
    every other worker, and every link sent is stored.
    """
    go: list[_Ready] = []
    with ctx.store.begin() as conn:
        admitted = _admit_today(ctx, conn, ready)
        for item in ready:
            if item.job.id not in admitted:
                zone = item.prefs.zone
                day = ctx.now.astimezone(zone).date() + timedelta(days=1)
                at = item.prefs.time_of_day or item.prefs.quiet_end or time(9, 0)
                outcomes[item.job.id] = _defer(ctx, item.job,
                                               item.prefs.next_allowed(local_moment(day, at, zone)),
                                               item.deadline, "daily limit reached")
                continue
            try:
                failed = _choose_channel(ctx, item)
            except Exception as exc:  # noqa: BLE001
                outcomes[item.job.id] = retry_later(ctx, item.job, exc)
                continue
            if failed:
                outcomes[item.job.id] = failed
            else:
                go.append(item)
        if go:
            links = patient_links(ctx.services).links_for(
                [(item.task["id"], item.job.patient_id) for item in go], conn=conn,
                now=ctx.now.timestamp())
            for item in go:
                item.link = links[(item.task["id"], item.job.patient_id)]
    return go


def _admit_today(ctx: BatchContext, conn: Any, ready: list[_Ready]) -> set[str]:
    """Count reminders towards their patients' daily limit; return the ids of those admitted.

    On PostgreSQL each patient's count is taken under an advisory lock (all of a
    batch's patients locked in one order, so two workers cannot deadlock).
    """
    limit = ctx.policy.max_per_day
    admitted = {item.job.id for item in ready if limit <= 0 or item.job.counted_at}
    todo = [item for item in ready if item.job.id not in admitted]
    if not todo:
        return admitted
    windows: dict[str, tuple[str, str]] = {}
    for item in todo:
        if item.job.patient_id not in windows:
            zone = item.prefs.zone
            day = ctx.now.astimezone(zone).date()
            start = local_moment(day, time(0), zone)
            end = local_moment(day + timedelta(days=1), time(0), zone)
            windows[item.job.patient_id] = (now_text(start), now_text(end))
    patients = sorted(windows)
    if conn.dialect.name == "postgresql":
        conn.execute(text(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtext(k) AS h "
            "FROM unnest(CAST(:keys AS text[])) AS k ORDER BY h) AS locks"),
            {"keys": [f"reminder-patient/{p}" for p in patients]})
    j = reminder_job.c
    low = min(start for start, _ in windows.values())
    high = max(end for _, end in windows.values())
    counts: dict[str, int] = dict.fromkeys(patients, 0)
    for start in range(0, len(patients), READ_CHUNK):
        for row in conn.execute(select(j.patient_id, j.counted_at).where(
                j.patient_id.in_(patients[start:start + READ_CHUNK]), j.kind == "reminder",
                j.counted_at >= low, j.counted_at < high)):
            first, end = windows[row.patient_id]
            if first <= row.counted_at < end:
                counts[row.patient_id] += 1
    counted = []
    for item in todo:
        if counts[item.job.patient_id] < limit:
            counts[item.job.patient_id] += 1
            counted.append(item.job.id)
    if counted:
        stamp = now_text(ctx.now)
        conn.execute(update(reminder_job)
                     .where(j.id.in_(counted), j.status == "sending", j.worker == ctx.worker)
                     .values(counted_at=stamp, updated_at=stamp))
    return admitted | set(counted)


def _choose_channel(ctx: BatchContext, item: _Ready) -> str | None:
    """Set the reminder's channel; return the outcome when it cannot be sent."""
    settings = ctx.services.settings
    job = item.job
    name = ctx.pm.hook.channel_for(recipient=item.patient, task=item.task, request=item.request,
                                   communication_request=item.request,
                                   channels=item.available, preferences=item.prefs,
                                   settings=settings, services=ctx.services)
    channel = item.available.get(name or "")
    if channel is None:
        return fail_attempt(ctx, job, item.request, item.task, item.patient, HeldDeliveryError(
            f"the {name!r} channel is not installed or cannot reach this patient"), None)
    if not settings.base_url:
        return fail_attempt(ctx, job, item.request, item.task, item.patient, HeldDeliveryError(
            "HW_FHIR_BASE_URL is not set: reminder links need the app's public address"), channel)
    item.channel = channel
    return None


def _send_ready(ctx: BatchContext, item: _Ready) -> str:
    settings = ctx.services.settings
    job, channel = item.job, item.channel
    assert item.link is not None
    message = default_message(kind="reminder", purpose=job.purpose, channel=channel.name,
                              to=channel.address(item.patient),
                              recipient=f"Patient/{job.patient_id}",
                              practice=settings.practice_name, link=item.link.url,
                              idempotency_key=attempt_key(job), about=(f"Task/{item.task['id']}",),
                              language=patient_language(item.patient))
    ctx.pm.hook.prepare_message(message=message, recipient=item.patient, task=item.task,
                                request=item.request, communication_request=item.request,
                                settings=settings, services=ctx.services)
    return deliver(ctx, job, channel, message, item.request, item.task, item.patient)


def _defer(ctx: BatchContext, job: Any, when: datetime, deadline: datetime | None, why: str) -> str:
    if deadline is not None and when >= deadline:
        record_later(ctx, job, status="skipped",
                     last_error=f"{why}: no time left before {fhir_instant(deadline)}")
        return "skipped"
    record_later(ctx, job, status="pending", due_at=now_text(when), last_error=why, counted_at=None)
    return "deferred"


def send_alert(ctx: BatchContext, job: Any) -> str:
    settings = ctx.services.settings
    request = read_resource(ctx, "CommunicationRequest", job.request_id)
    if request is None or request.get("status") != "active":
        record_later(ctx, job, status="cancelled", last_error="alert not active")
        return "cancelled"
    recipient_ref = alert_recipient(ctx, request, job)
    if recipient_ref is None:
        return fail_attempt(ctx, job, request, None, None, PermanentDeliveryError(
            "the alert names no clinician and the patient has no general practitioner"), None)
    resource_type, _, rid = recipient_ref.partition("/")
    known = resource_type in ("Practitioner", "PractitionerRole", "Patient")
    recipient = read_resource(ctx, resource_type, rid) if known else None
    available = restrict_to_contact_channel(recipient_ref, available_channels(ctx, recipient, None, job),
                                            settings)
    if not available:
        return fail_attempt(ctx, job, request, None, recipient, PermanentDeliveryError(
            f"no channel can reach {recipient_ref} (add an email address or configure the EHR inbox)"),
            None)
    name = ctx.pm.hook.channel_for(recipient=recipient, task=None, request=request,
                                   communication_request=request, channels=available,
                                   preferences=None, settings=settings, services=ctx.services)
    channel = available.get(name or "") or next(iter(available.values()))
    link = alert_link(settings.base_url, request)
    message = default_message(
        kind="alert", purpose="risk-alert", channel=channel.name, to=channel.address(recipient),
        recipient=recipient_ref, practice=settings.practice_name, link=link,
        idempotency_key=attempt_key(job),
        about=tuple(a.get("reference") for a in request.get("about") or [] if a.get("reference")))
    ctx.pm.hook.prepare_message(message=message, recipient=recipient, task=None, request=request,
                                communication_request=request, settings=settings,
                                services=ctx.services)
    return deliver(ctx, job, channel, message, request, None, recipient)
