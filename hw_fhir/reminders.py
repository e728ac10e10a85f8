"""Reminder rules: when a patient is reminded of homework, how, and what is recorded.

The plan (FHIR)
---------------
Each homework Task gets one ``CommunicationRequest`` (identifier
``http://hw-fhir.org/fhir/sid/reminder-plan|<task id>``): ``status`` ``active``,
``category`` ``reminder`` (system :data:`COMMUNICATION_CATEGORY_SYSTEM`), ``priority``
``routine``, ``subject`` and ``recipient`` the Patient, ``about`` → the Task,
``requester`` the Task's requester, ``medium`` the planned channel's medium,
``occurrencePeriod`` from the first to the last planned send, and ``payload`` a text
with **no clinical content** — it names the practice (``Settings.practice_name``),
says there is an activity, and carries the secure link (:mod:`hw_fhir.links`). The
plan ends ``completed`` when the Task is completed and ``revoked`` when it is
cancelled or failed; pending sends are cancelled at once.

Every send attempt is one ``Communication``: ``identifier``
``http://hw-fhir.org/fhir/sid/communication-attempt|<idempotency key>`` (plus the
channel's own id, e.g. the SMS vendor's message sid) and an ``id`` derived from that
key (:func:`resource_id`, so recording an attempt twice stores it once), ``basedOn`` and ``partOf`` →
the CommunicationRequest, ``status`` (``completed``; ``in-progress`` while a channel
waits for its delivery callback; ``not-done`` with ``statusReason`` when it failed),
``category``, ``medium``, ``subject``, ``recipient``, ``about`` → the Task (for risk
alerts: the Flag and the QuestionnaireResponse), ``sent`` and ``payload`` (the text
sent). ``Communication?about=Task/<id>`` is the reminder history of a Task.

When (per Task)
---------------
* ``assigned`` — when the Task's window opens (at once for a one-off assignment);
* ``before-due`` — at the patient's preferred time of day on the due day (the day
  before when that time is after the due time), else ``before_due_hours`` before due;
* ``overdue`` — one nudge after the due time (at the preferred time of day, else
  ``overdue_after_hours`` later) while the Task can still be completed (before due +
  ``Settings.overdue_grace_hours``).

Every send time is moved out of the patient's quiet hours, in the patient's time zone
(DST-safe: wall-clock times are converted with :mod:`zoneinfo`; a time that does not
exist on a spring-forward day moves forward). Sends closer than ``min_gap_minutes``
collapse into one. At most ``max_per_day`` reminders per patient and local day; one
over the limit moves to the next day when that is still useful, else it is skipped.
Nothing is sent once the Task is ``completed``, ``cancelled`` or ``failed``, nor on a
channel the patient opted out of (SMS ``STOP`` opts out of ``sms``). Quiet hours and
preferences are read again at send time, so a change takes effect on the next reminder.

Patient preferences (written by the patient pages)
--------------------------------------------------
On ``Patient.extension``:

``http://hw-fhir.org/fhir/StructureDefinition/reminder-preferences`` (complex)
    ``channel`` (valueCode): preferred channel (``email``, ``sms``, a plugin's name);
    ``timeOfDay`` (valueTime): preferred local time for reminders;
    ``quietStart`` / ``quietEnd`` (valueTime): no reminders from start to end (may wrap
    midnight; default 21:00–08:00, :class:`ReminderPolicy`);
    ``optOut`` (valueCode, repeats): channels never to use.
``http://hl7.org/fhir/StructureDefinition/timezone`` (valueCode)
    IANA time zone (default UTC).

A Task's ``reminder-channel`` extension (:data:`hw_fhir.assignment.EXT_REMINDER_CHANNEL`)
chooses its channel; ``none`` turns its reminders off.

Tuning (config file table ``[reminders]``): every field of :class:`ReminderPolicy`.

Sending and never sending twice
-------------------------------
Work is queued in ``reminder_job`` (:mod:`hw_fhir.reminder_tables`). A worker claims a
batch of due rows (``batch``; ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, one
statement) under a lease and reads the batch's Tasks, Patients and plans at once. It
checks each Task and the patient's preferences again, counts the reminders against
the daily limit (per-patient lock) and stores their links in one transaction
committed before anything is sent, then sends the messages one at a time, recording
each attempt's Communication and its row's new state in a transaction committed
before the next send starts (a channel whose receiver de-duplicates by key,
``deduplicates = True`` — webhook, EHR inbox — is recorded with the batch instead:
a repeat is harmless there). The idempotency key of an attempt is
``<job id>#<attempt>``: a worker that dies between a send and that commit leaves that
one row ``sending`` (the batch's unstarted rows too, but those were never sent); when
its lease runs out another worker sends it again **with the same key**, so a crash
repeats at most the one message in flight, and a channel that de-duplicates by key
delivers it once (each channel states its guarantee: :mod:`hw_fhir.channels`). A batch still
sending half a lease after its claim gives back the jobs it has not started, so the
lease of a live worker runs out only if one send takes that long. Transient failures
retry with exponential backoff (``Retry-After`` honoured) and a new key, up to
``max_tries``; a permanent failure tries the patient's other channels, then is
recorded (``not-done`` Communication with ``statusReason``) and listed by
:func:`failures` (``hw-fhir reminders failures``). Risk alerts retry until delivered.
A failure that waits for a fix on our side — ``HW_FHIR_BASE_URL`` unset, the chosen
channel not installed, no contact point — is a :class:`~hw_fhir.errors.HeldDeliveryError`:
never final, retried every :data:`HELD_RETRY_SECONDS`, at once when a worker starts
and by ``hw-fhir reminders retry`` (:mod:`hw_fhir.reminder_retry`); only a permanent
refusal by the recipient's channel (or the patient opting out) ends a reminder.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta, timezone
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, bindparam, insert, or_, select, text, union_all, update

from .assignment import EXT_REMINDER_CHANNEL, OPEN_STATUSES
from .channels.base import Delivery, Message
from .errors import (
    DeliveryError,
    HeldDeliveryError,
    HwFhirError,
    NotFound,
    PermanentDeliveryError,
    TransientDeliveryError,
    VersionConflict,
)
from .i18n import N_, patient_language, supported, translator
from .links import IssuedLink, patient_links
from .models import validate
from .reminder_tables import patient_link, reminder_job, reminder_state

__all__ = [
    "REMINDER_PREFERENCES_URL",
    "TIMEZONE_URL",
    "COMMUNICATION_CATEGORY_SYSTEM",
    "REMINDER_PLAN_SYSTEM",
    "ATTEMPT_SYSTEM",
    "ReminderPreferences",
    "ReminderPolicy",
    "ReminderRun",
    "HELD_PREFIX",
    "HELD_RETRY_SECONDS",
    "preferences",
    "local_moment",
    "reminder_times",
    "default_message",
    "enqueue_plan",
    "stop_task_reminders",
    "enqueue_alert",
    "discover_tasks",
    "discover_alerts",
    "claim_jobs",
    "process_job",
    "run_reminders",
    "update_delivery_status",
    "opt_out",
    "failures",
    "now_text",
    "resource_id",
]

log = logging.getLogger("hw_fhir.reminders")

STRUCTURE_BASE = "http://hw-fhir.org/fhir/StructureDefinition"
REMINDER_PREFERENCES_URL = f"{STRUCTURE_BASE}/reminder-preferences"
TIMEZONE_URL = "http://hl7.org/fhir/StructureDefinition/timezone"
COMMUNICATION_CATEGORY_SYSTEM = "http://hw-fhir.org/fhir/CodeSystem/communication-category"
REMINDER_PLAN_SYSTEM = "http://hw-fhir.org/fhir/sid/reminder-plan"
ATTEMPT_SYSTEM = "http://hw-fhir.org/fhir/sid/communication-attempt"
_SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
_DISCOVERY_KEY = "task-discovery-cursor"
_REMINDER_CATEGORY = {"coding": [{"system": COMMUNICATION_CATEGORY_SYSTEM, "code": "reminder",
                                  "display": "Homework reminder"}]}
_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


# -- time ---------------------------------------------------------------------------------


def now_text(moment: datetime | None = None) -> str:
    """Return a moment as the fixed-width UTC text the job table orders by."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime(_FMT)


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _fhir(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_moment(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Return the UTC instant of a local wall-clock time; a time skipped by DST moves forward."""
    naive = datetime.combine(day, at)
    for fold in (0, 1):
        candidate = naive.replace(tzinfo=zone, fold=fold)
        utc = candidate.astimezone(timezone.utc)
        if utc.astimezone(zone).replace(tzinfo=None) == naive:
            return utc
    # the wall-clock time does not exist (spring forward): fold=0 reads it with the
    # offset before the gap, which lands as far after the gap as it was into it
    return naive.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)


def _parse_time(value: Any) -> time | None:
    if not isinstance(value, str):
        return None
    try:
        return time.fromisoformat(value)
    except ValueError:
        return None


# -- preferences and policy ---------------------------------------------------------------


@dataclass(frozen=True)
class ReminderPolicy:
    """How reminders are scheduled and retried (config table ``[reminders]``)."""

    before_due_hours: float = 3.0
    overdue_after_hours: float = 2.0
    max_per_day: int = 2
    min_gap_minutes: int = 60
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    max_tries: int = 6
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 3600.0
    alert_retry_cap_seconds: float = 900.0
    lease_seconds: int = 120
    batch: int = 20
    discovery_batch: int = 500
    discovery_lag_seconds: float = 30.0
    grace_hours: int = 24

    @classmethod
    def from_settings(cls, settings: Any) -> "ReminderPolicy":
        """Read the ``[reminders]`` table of the config file (and ``overdue_grace_hours``)."""
        raw = dict(((getattr(settings, "extra", None) or {}).get("reminders") or {}))
        values: dict[str, Any] = {"grace_hours": getattr(settings, "overdue_grace_hours", 24)}
        kinds = {f.name: f.type for f in fields(cls)}
        for key, value in raw.items():
            name = key.replace("-", "_")
            if name not in kinds:
                continue
            default = getattr(cls, name)
            if isinstance(default, time):
                values[name] = _parse_time(value) or default
            elif isinstance(default, bool):
                values[name] = bool(value)
            elif isinstance(default, int):
                values[name] = int(value)
            else:
                values[name] = float(value)
        return cls(**values)


@dataclass(frozen=True)
class ReminderPreferences:
    """A patient's reminder preferences (see the module docs for the extension)."""

    channel: str | None = None
    time_of_day: time | None = None
    quiet_start: time | None = None
    quiet_end: time | None = None
    timezone: str = "UTC"
    opt_out: frozenset[str] = frozenset()

    @property
    def zone(self) -> ZoneInfo:
        """The patient's time zone."""
        return _zone(self.timezone)

    def _quiet(self) -> tuple[time, time] | None:
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return None
        return self.quiet_start, self.quiet_end

    def in_quiet_hours(self, moment: datetime) -> bool:
        """Tell whether a moment falls in the patient's quiet hours (local time)."""
        quiet = self._quiet()
        if quiet is None:
            return False
        start, end = quiet
        local = moment.astimezone(self.zone).time().replace(tzinfo=None)
        if start < end:
            return start <= local < end
        return local >= start or local < end

    def next_allowed(self, moment: datetime) -> datetime:
        """Return the moment itself, or the end of the quiet hours it falls in."""
        if not self.in_quiet_hours(moment):
            return moment
        start, end = self._quiet()  # type: ignore[misc]
        local = moment.astimezone(self.zone)
        day = local.date()
        if start > end and local.time().replace(tzinfo=None) >= start:
            day += timedelta(days=1)
        return local_moment(day, end, self.zone)

    def previous_allowed(self, moment: datetime) -> datetime:
        """Return the moment itself, or just before the start of the quiet hours it falls in."""
        if not self.in_quiet_hours(moment):
            return moment
        start, end = self._quiet()  # type: ignore[misc]
        local = moment.astimezone(self.zone)
        day = local.date()
        if start > end and local.time().replace(tzinfo=None) < end:
            day -= timedelta(days=1)
        return local_moment(day, start, self.zone) - timedelta(minutes=1)


def _sub_values(ext: Mapping[str, Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for sub in ext.get("extension") or []:
        for key, value in sub.items():
            if key.startswith("value"):
                out.setdefault(str(sub.get("url")), []).append(value)
    return out


def preferences(patient: Mapping[str, Any] | None,
                policy: ReminderPolicy | None = None) -> ReminderPreferences:
    """Read a Patient's reminder preferences (policy defaults for missing quiet hours)."""
    policy = policy or ReminderPolicy()
    prefs: dict[str, Any] = {"quiet_start": policy.quiet_start, "quiet_end": policy.quiet_end}
    for ext in (patient or {}).get("extension") or []:
        if ext.get("url") == TIMEZONE_URL and isinstance(ext.get("valueCode"), str):
            prefs["timezone"] = ext["valueCode"]
        if ext.get("url") != REMINDER_PREFERENCES_URL:
            continue
        subs = _sub_values(ext)
        if subs.get("channel"):
            prefs["channel"] = str(subs["channel"][0])
        if subs.get("timeOfDay"):
            prefs["time_of_day"] = _parse_time(subs["timeOfDay"][0])
        start = _parse_time((subs.get("quietStart") or [None])[0])
        end = _parse_time((subs.get("quietEnd") or [None])[0])
        if start is not None and end is not None:
            prefs["quiet_start"], prefs["quiet_end"] = start, end
        prefs["opt_out"] = frozenset(str(v) for v in subs.get("optOut", []))
    return ReminderPreferences(**prefs)


# -- when ---------------------------------------------------------------------------------


def _task_window(task: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    period = (task.get("restriction") or {}).get("period") or {}
    opens = period.get("start") or task.get("authoredOn")
    due = period.get("end")
    return (_parse(opens) if opens else None), (_parse(due) if due else None)


def reminder_times(task: Mapping[str, Any], prefs: ReminderPreferences, policy: ReminderPolicy,
                   *, now: datetime) -> list[tuple[str, datetime, datetime]]:
    """Return the planned sends of a Task: (purpose, when, deadline), in time order.

    ``deadline`` is the moment after which the send is pointless (it is skipped).
    """
    opens, due = _task_window(task)
    gap = timedelta(minutes=policy.min_gap_minutes)
    end_of_grace = due + timedelta(hours=policy.grace_hours) if due else None
    planned: list[tuple[str, datetime, datetime]] = []
    first = prefs.next_allowed(max(now, opens or now))
    if due is None:
        return [("assigned", first, first + timedelta(days=1))]
    if first < due:
        planned.append(("assigned", first, due))
    before = _before_due(due, prefs, policy)
    if before is not None and before > max(now, opens or now):
        planned.append(("before-due", before, due))
    overdue = _overdue(due, prefs, policy)
    if end_of_grace is not None and overdue < end_of_grace and overdue > now:
        planned.append(("overdue", overdue, end_of_grace))
    planned.sort(key=lambda p: p[1])
    kept: list[tuple[str, datetime, datetime]] = []
    for item in planned:
        if kept and item[1] - kept[-1][1] < gap:
            continue
        kept.append(item)
    return kept


def _before_due(due: datetime, prefs: ReminderPreferences, policy: ReminderPolicy) -> datetime | None:
    zone = prefs.zone
    if prefs.time_of_day is not None:
        local_due = due.astimezone(zone)
        for back in (0, 1):
            candidate = local_moment(local_due.date() - timedelta(days=back), prefs.time_of_day, zone)
            if candidate < due and not prefs.in_quiet_hours(candidate):
                return candidate
    candidate = prefs.previous_allowed(due - timedelta(hours=policy.before_due_hours))
    return candidate if candidate < due else None


def _overdue(due: datetime, prefs: ReminderPreferences, policy: ReminderPolicy) -> datetime:
    zone = prefs.zone
    if prefs.time_of_day is not None:
        local_due = due.astimezone(zone)
        for ahead in (0, 1):
            candidate = local_moment(local_due.date() + timedelta(days=ahead), prefs.time_of_day, zone)
            if candidate > due + timedelta(minutes=30):
                return prefs.next_allowed(candidate)
    return prefs.next_allowed(due + timedelta(hours=policy.overdue_after_hours))


# -- what ---------------------------------------------------------------------------------


_TEXTS = {
    "assigned": (N_("A new activity from {practice}"),
                 N_("Hello, {practice} has shared an activity with you. Open it here: {link}")),
    "before-due": (N_("Reminder from {practice}"),
                   N_("Reminder from {practice}: you have an activity to complete. Open it here: "
                      "{link}")),
    "overdue": (N_("Your activity is still open"),
                N_("{practice}: your activity is still open and you can still complete it here: "
                   "{link}")),
    "risk-alert": ("Urgent: a safety alert needs your review",
                   "A patient's recent response in hw-fhir raised a safety alert. Open hw-fhir "
                   "from your EHR to review it now.{link_line}"),
}


def default_message(*, kind: str, purpose: str, channel: str, to: str | None, recipient: str,
                    practice: str, link: str | None, idempotency_key: str,
                    about: Iterable[str] = (), language: str | None = None) -> Message:
    """Return the built-in message: the practice, that there is an activity, the link.

    ``language`` (a patient's, see :func:`hw_fhir.i18n.patient_language`) picks the
    translation of the patient texts; clinician alerts stay in the default language.
    """
    subject, body = _TEXTS.get(purpose, _TEXTS["before-due"])
    _ = translator(language)
    link_line = f" {link}" if link else ""
    fill = {"practice": practice, "link": link or "", "link_line": link_line}
    return Message(
        kind=kind, purpose=purpose, channel=channel, to=to, recipient=recipient,
        subject=_sentence(_(subject).format(**fill)), text=_sentence(_(body).format(**fill)),
        link=link,
        idempotency_key=idempotency_key, priority="stat" if kind == "alert" else "routine",
        about=tuple(about), headers={"Content-Language": supported(language)},
    )


def _sentence(text: str) -> str:
    """Start with a capital: a practice name such as "your care team" may open the text."""
    return text[:1].upper() + text[1:]


# -- queue helpers ------------------------------------------------------------------------


def _engine_store(store: Any) -> bool:
    return hasattr(store, "engine") and hasattr(store, "begin")


def _insert_ignore(conn: Any, rows: list[dict[str, Any]]) -> int:
    """Insert job rows, skipping ids already queued; return how many were new."""
    if not rows:
        return 0
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        make: Any = pg_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        make = sqlite_insert
    else:  # pragma: no cover - other databases: one by one
        done = 0
        for row in rows:
            if conn.execute(select(reminder_job.c.id).where(reminder_job.c.id == row["id"])).first():
                continue
            conn.execute(insert(reminder_job).values(**row))
            done += 1
        return done
    # one cached statement, sent as multi-row VALUES batches ("insertmanyvalues"); RETURNING
    # gives the exact number of new rows
    stmt = (make(reminder_job).on_conflict_do_nothing(index_elements=["id"])
            .returning(reminder_job.c.id))
    return len(conn.execute(stmt, rows).fetchall())


#: ``due_at`` of jobs to do as soon as possible (plans, alerts, closing): before anything else.
ASAP = "0001-01-01T00:00:00.000000Z"


def _job(id: str, *, kind: str, purpose: str, due: datetime | None, now: datetime,
         task_id: str | None = None, request_id: str | None = None,
         patient_id: str | None = None) -> dict[str, Any]:
    stamp = now_text(now)
    return dict(id=id, kind=kind, purpose=purpose, task_id=task_id, request_id=request_id,
                patient_id=patient_id, due_at=ASAP if due is None else now_text(due),
                status="pending", attempt=1,
                tries=0, channel=None, failed_channels=None, lease_until=None, worker=None,
                counted_at=None, last_error=None, communication_id=None, created_at=stamp,
                updated_at=stamp)


def _ref_id(reference: str | None, resource_type: str) -> str | None:
    if not reference:
        return None
    prefix = f"{resource_type}/"
    return reference[len(prefix):] if reference.startswith(prefix) else None


def _is_homework(task: Mapping[str, Any]) -> bool:
    return any(c.get("system") == _SDC_TEMP and c.get("code") == "complete-questionnaire"
               for c in (task.get("code") or {}).get("coding") or [])


def enqueue_plan(store: Any, task: Mapping[str, Any], *, now: datetime | None = None,
                 conn: Any = None) -> bool:
    """Queue the planning of a homework Task's reminders (idempotent); return True if new."""
    if not _engine_store(store) or not _is_homework(task) or task.get("status") not in OPEN_STATUSES:
        return False
    moment = now or datetime.now(timezone.utc)
    row = _job(f"plan/{task['id']}", kind="plan", purpose="plan", due=None, now=moment,
               task_id=task["id"], patient_id=_ref_id((task.get("for") or {}).get("reference"),
                                                      "Patient"))
    if conn is not None:
        return _insert_ignore(conn, [row]) > 0
    with store.begin() as own:
        return _insert_ignore(own, [row]) > 0


def stop_task_reminders(store: Any, task: Mapping[str, Any], *, now: datetime | None = None) -> int:
    """Cancel a closed Task's pending reminders and queue closing its plan; return how many."""
    if not _engine_store(store) or task.get("status") in OPEN_STATUSES:
        return 0
    moment = now or datetime.now(timezone.utc)
    with store.begin() as conn:
        done = conn.execute(
            update(reminder_job)
            .where(reminder_job.c.task_id == task["id"], reminder_job.c.kind.in_(("reminder", "plan")),
                   reminder_job.c.status == "pending")
            .values(status="cancelled", updated_at=now_text(moment),
                    last_error=f"Task {task.get('status')}"))
        _insert_ignore(conn, [_job(f"close/{task['id']}", kind="close", purpose="close",
                                   due=None, now=moment, task_id=task["id"])])
    return int(done.rowcount or 0)


def enqueue_alert(store: Any, request: Mapping[str, Any], *, now: datetime | None = None,
                  conn: Any = None, level: int = 0) -> bool:
    """Queue delivery of a clinician risk alert (CommunicationRequest); return True if new.

    ``level`` is the position of the recipient in the alert's escalation path
    (:mod:`hw_fhir.outcomes.escalation`): each level is its own job.
    """
    if not _engine_store(store) or request.get("status") != "active":
        return False
    moment = now or datetime.now(timezone.utc)
    job_id = f"alert/{request['id']}" + (f"/{level}" if level else "")
    row = _job(job_id, kind="alert", purpose="risk-alert", due=None, now=moment,
               request_id=request["id"],
               patient_id=_ref_id((request.get("subject") or {}).get("reference"), "Patient"))
    if conn is not None:
        return _insert_ignore(conn, [row]) > 0
    with store.begin() as own:
        return _insert_ignore(own, [row]) > 0


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
            if task.get("status") not in OPEN_STATUSES or not _is_homework(task):
                continue
            rows.append(_job(f"plan/{task['id']}", kind="plan", purpose="plan", due=None,
                             now=moment, task_id=task["id"],
                             patient_id=_ref_id((task.get("for") or {}).get("reference"), "Patient")))
        queued = _insert_ignore(conn, rows)
        if page.matches and last == cursor and page.has_more:
            log.warning("More than %d Tasks share lastUpdated %s; raise discovery_batch", batch, last)
        _set_state(conn, _DISCOVERY_KEY, last)
    return bool(page.has_more and last != cursor), queued


def _store_instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ensure_state(conn: Any, key: str) -> None:
    from sqlalchemy.dialects.postgresql import insert as pg_insert

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
        rows = [_job(f"alert/{r['id']}", kind="alert", purpose="risk-alert", due=None, now=moment,
                     request_id=r["id"],
                     patient_id=_ref_id((r.get("subject") or {}).get("reference"), "Patient"))
                for r in page.resources]
        if rows:
            with store.begin() as conn:
                queued += _insert_ignore(conn, rows)
        if not page.has_more or not page.matches:
            return queued
        offset += len(page.matches)


# -- claiming -----------------------------------------------------------------------------


def claim_jobs(store: Any, *, worker: str, limit: int, lease_seconds: int,
               now: datetime | None = None) -> list[Any]:
    """Claim up to ``limit`` due jobs (and jobs whose worker's lease ran out) for ``worker``.

    One statement. PostgreSQL: the due rows and the expired leases are each read in
    ``due_at`` order from the ``(status, due_at)`` index, ``FOR UPDATE SKIP LOCKED``
    (so concurrent workers never claim the same row, and a claim reads ``limit`` rows
    however long the backlog), then updated with ``RETURNING``. SQLite: the claim runs
    in a ``BEGIN IMMEDIATE`` transaction. Return the claimed rows, the oldest due first.
    """
    moment = now or datetime.now(timezone.utc)
    stamp = now_text(moment)
    lease = now_text(moment + timedelta(seconds=lease_seconds))
    j = reminder_job.c
    pending = and_(j.status == "pending", j.due_at <= stamp)
    expired = and_(j.status == "sending", j.lease_until < stamp)
    claim = update(reminder_job).values(status="sending", lease_until=lease, worker=worker,
                                        updated_at=stamp)
    with store.begin() as conn:
        if conn.dialect.name == "postgresql":
            # each part materialized: its locking scan runs once, whatever the plan
            parts = [select(j.id, j.due_at).where(cond).order_by(j.due_at).limit(limit)
                     .with_for_update(skip_locked=True).cte(name).prefix_with("MATERIALIZED")
                     for name, cond in (("due", pending), ("expired", expired))]
            both = union_all(*(select(part.c.id, part.c.due_at) for part in parts)).subquery()
            chosen = select(both.c.id).order_by(both.c.due_at).limit(limit).subquery("chosen")
            claim = claim.where(j.id == chosen.c.id)
        else:
            claim = claim.where(j.id.in_(select(j.id).where(or_(pending, expired))
                                         .order_by(j.due_at).limit(limit).scalar_subquery()))
        claimed = conn.execute(claim.returning(*reminder_job.c)).fetchall()
    return sorted(claimed, key=lambda row: (row.due_at, row.id))


def _finish_all(conn: Any, worker: str, now: datetime,
                updates: Iterable[tuple[Any, Mapping[str, Any]]]) -> int:
    """Update claimed jobs this worker still holds; return how many it updated.

    One ``executemany`` per set of changed columns. The lease ends unless the values
    set ``lease_until``.
    """
    j = reminder_job.c
    stamp = now_text(now)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for job, values in updates:
        row = {"lease_until": None, **values, "updated_at": stamp}
        groups.setdefault(tuple(sorted(row)), []).append(
            {"job_id": job.id, **{f"new_{k}": v for k, v in row.items()}})
    done = 0
    for columns, params in groups.items():
        stmt = (update(reminder_job)
                .where(j.id == bindparam("job_id"), j.status == "sending", j.worker == worker)
                .values({column: bindparam(f"new_{column}") for column in columns}))
        done += max(conn.execute(stmt, params).rowcount, 0)
    return done


# -- processing ---------------------------------------------------------------------------


@dataclass
class ReminderRun:
    """What one pass over the queue did."""

    claimed: int = 0
    planned: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    deferred: int = 0
    closed: int = 0
    #: jobs given back unstarted (their batch ran past half its lease, or their patient
    #: opted out of a channel meanwhile): claimed again and checked afresh
    released: int = 0

    @property
    def work(self) -> int:
        """How many jobs this pass dealt with."""
        return self.claimed

    def add(self, outcome: str) -> None:
        """Count one job's outcome."""
        setattr(self, outcome, getattr(self, outcome) + 1)


@dataclass
class _Write:
    """A claimed job's new state (and its attempt's Communication), committed with its batch."""

    job: Any
    values: dict[str, Any]
    communication: dict[str, Any] | None = None
    #: called with the stored Communication (or None) once committed: announcements
    after: list[Callable[[dict[str, Any] | None], None]] = field(default_factory=list)


@dataclass
class _Context:
    """One claimed batch: its settings, the resources it read, the writes it will commit."""

    services: Any
    policy: ReminderPolicy
    channels: dict[str, Any]
    worker: str
    now: datetime
    #: when the batch was claimed (monotonic seconds)
    claimed_at: float = field(default_factory=lambda: monotonic())
    #: Tasks, Patients and CommunicationRequests read for this batch (None: not there)
    resources: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    #: patients who opted out of a channel during this batch (their next reminders are rechecked)
    opted_out: set[str | None] = field(default_factory=set)
    writes: list[_Write] = field(default_factory=list)

    @property
    def store(self) -> Any:
        return self.services.store

    @property
    def pm(self) -> Any:
        return self.services.plugins


def _read(ctx: _Context, resource_type: str, rid: str | None) -> dict[str, Any] | None:
    """Return a resource as read for this batch (once), or None when it is not there."""
    if not rid:
        return None
    key = (resource_type, rid)
    if key not in ctx.resources:
        try:
            ctx.resources[key] = ctx.store.read(resource_type, rid).resource
        except NotFound:
            ctx.resources[key] = None
    return ctx.resources[key]


#: Ids per ``_id`` search when a batch reads its resources.
_READ_CHUNK = 200


def _prefetch(ctx: _Context, jobs: list[Any]) -> None:
    """Read the Tasks, Patients and reminder plans of a batch: one search per type."""
    wanted: dict[str, dict[str, None]] = {"Task": {}, "Patient": {}, "CommunicationRequest": {}}
    for job in jobs:
        if job.kind in ("plan", "reminder", "close") and job.task_id:
            wanted["Task"][job.task_id] = None
        if job.kind in ("plan", "reminder") and job.patient_id:
            wanted["Patient"][job.patient_id] = None
        if job.kind in ("reminder", "alert") and job.request_id:
            wanted["CommunicationRequest"][job.request_id] = None
    for resource_type, ids in wanted.items():
        ctx.resources.update(_read_many(ctx.store, resource_type, list(ids)))


def _read_many(reader: Any, resource_type: str,
               ids: list[str]) -> dict[tuple[str, str], dict[str, Any] | None]:
    """Return resources by ``(type, id)`` (None: not there or deleted) with ``_id`` searches."""
    out: dict[tuple[str, str], dict[str, Any] | None] = {}
    for start in range(0, len(ids), _READ_CHUNK):
        chunk = ids[start:start + _READ_CHUNK]
        page = reader.search(resource_type, [("_id", ",".join(chunk)), ("_count", str(len(chunk))),
                                             ("_total", "none")])
        found = {stored.id: stored.resource for stored in page.matches}
        out.update(((resource_type, rid), found.get(rid)) for rid in chunk)
    return out


def _later(ctx: _Context, job: Any, *, communication: dict[str, Any] | None = None,
           after: Iterable[Callable[[dict[str, Any] | None], None]] = (), **values: Any) -> None:
    """Queue a job's new state (and its attempt's Communication) for the batch's commit."""
    ctx.writes.append(_Write(job, values, communication, list(after)))


def process_job(ctx: _Context, job: Any) -> str:
    """Do one claimed job and commit what it did; return its outcome (``sent``, ``retried``...)."""
    return _process_batch(ctx, [job])[0]


def _process_batch(ctx: _Context, jobs: list[Any]) -> list[str]:
    """Do a claimed batch; return each job's outcome, in order.

    The batch's resources are read at once, its plans stored in one transaction, its
    reminders counted against the daily limit and given links in one transaction
    before anything is sent; after the sends, every job's new state and every
    attempt's Communication are committed in one transaction, then announced.
    """
    try:
        _prefetch(ctx, jobs)
    except Exception:  # noqa: BLE001 - then each job reads what it needs itself
        log.warning("Reading the batch's resources at once failed", exc_info=True)
    outcomes: dict[str, str] = {}
    single = {"alert": _send_alert, "close": _close}
    for job in jobs:  # alerts first: they are urgent (and rare)
        if job.kind not in ("plan", "reminder"):
            outcomes[job.id] = _guarded(ctx, job, single.get(job.kind, _unknown_kind))
            _flush(ctx)  # recorded before the next send: a crash repeats only this one
    outcomes.update(_plan_all(ctx, [job for job in jobs if job.kind == "plan"]))
    outcomes.update(_send_all(ctx, [job for job in jobs if job.kind == "reminder"]))
    _flush(ctx)
    return [outcomes[job.id] for job in jobs]


def _guarded(ctx: _Context, job: Any, step: Callable[[_Context, Any], str]) -> str:
    """Run one job's step; an error retries the job later (one bad job must not stop the others)."""
    try:
        return step(ctx, job)
    except Exception as exc:  # noqa: BLE001
        return _retry_later(ctx, job, exc)


def _retry_later(ctx: _Context, job: Any, exc: Exception) -> str:
    message = exc.message if isinstance(exc, HwFhirError) else f"{type(exc).__name__}: {exc}"
    log.warning("Job %s: %s; retried later", job.id, message,
                exc_info=not isinstance(exc, HwFhirError))
    if any(write.job.id == job.id for write in ctx.writes):
        return "retried"  # its outcome is already queued (e.g. a send recorded): keep that
    _later(ctx, job, status="pending",
           due_at=now_text(ctx.now + timedelta(seconds=ctx.policy.retry_base_seconds)),
           last_error=message[:1000], tries=job.tries + 1)
    return "retried"


def _unknown_kind(ctx: _Context, job: Any) -> str:
    _later(ctx, job, status="failed", last_error=f"unknown job kind {job.kind!r}")
    return "failed"


def _flush(ctx: _Context) -> None:
    """Commit the batch's queued writes in one transaction, then announce them.

    If that fails (one bad record), each write is committed alone; one that still
    fails leaves its job claimed, so it is done again — with the same idempotency
    key — once the lease runs out.
    """
    writes, ctx.writes = ctx.writes, []
    if not writes:
        return
    try:
        stored = _commit(ctx, writes)
    except Exception:  # noqa: BLE001
        log.warning("Committing a batch of %d jobs failed; committing them one by one",
                    len(writes), exc_info=True)
        stored = {}
        for write in writes:
            try:
                stored.update(_commit(ctx, [write]))
            except Exception:  # noqa: BLE001
                log.exception("Job %s could not be recorded; it is done again when its lease "
                              "runs out", write.job.id)
    for write in writes:
        if id(write) not in stored:
            continue
        for announce in write.after:
            try:
                announce(stored[id(write)])
            except Exception:  # noqa: BLE001 - after a send, nothing may cause a resend
                log.exception("After recording job %s", write.job.id)


def _commit(ctx: _Context, writes: list[_Write]) -> dict[int, dict[str, Any] | None]:
    """Store the writes' Communications and jobs' states in one transaction (by ``id(write)``)."""
    ids = {id(w): resource_id("attempt", w.communication["identifier"][0]["value"])
           for w in writes if w.communication is not None}
    comms = [dict(w.communication, id=ids[id(w)]) for w in writes if w.communication is not None]
    with ctx.store.unit_of_work() as unit:
        stored = _put_all(unit, comms)
        out = {id(w): stored[ids[id(w)]] if id(w) in ids else None for w in writes}
        updates = []
        for write in writes:
            comm = out[id(write)]
            values = dict(write.values, communication_id=comm["id"]) if comm else write.values
            updates.append((write.job, values))
        done = _finish_all(unit.conn, ctx.worker, ctx.now, updates)
    if done < len(updates):
        log.warning("%d of %d jobs were reclaimed by another worker while this one worked on them",
                    len(updates) - done, len(updates))
    return out


def _put_all(unit: Any, resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Store resources under their (stable) ids unless already there; return the stored ones by id.

    One ``_id`` search per type finds those an interrupted run already stored; the
    others' versions are looked up together before they are written.
    """
    out: dict[str, dict[str, Any]] = {}
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    for resource_type, items in by_type.items():
        found = _read_many(unit, resource_type, [r["id"] for r in items])
        unit.preload([key for key, resource in found.items() if resource is None])
        for resource in items:
            out[resource["id"]] = (found[(resource_type, resource["id"])]
                                   or unit.update(validate(resource)).resource)
    return out


# -- planning -----------------------------------------------------------------------------


@dataclass
class _Planned:
    job: Any
    task: dict[str, Any]
    patient_id: str | None
    times: list[tuple[str, datetime, datetime]]
    channel: str | None
    language: str | None = None


def _plan_all(ctx: _Context, jobs: list[Any]) -> dict[str, str]:
    """Plan a batch's Tasks: check each, then store every plan in one transaction."""
    outcomes: dict[str, str] = {}
    planned: list[_Planned] = []
    for job in jobs:
        try:
            checked = _plan_check(ctx, job)
        except Exception as exc:  # noqa: BLE001
            outcomes[job.id] = _retry_later(ctx, job, exc)
            continue
        if isinstance(checked, str):
            outcomes[job.id] = checked
        else:
            planned.append(checked)
    if not planned:
        return outcomes
    try:
        _store_plans(ctx, planned)
    except Exception as exc:  # noqa: BLE001 - one bad plan must not stop the others
        if len(planned) == 1:
            outcomes[planned[0].job.id] = _retry_later(ctx, planned[0].job, exc)
            return outcomes
        log.warning("Storing %d plans together failed; storing them one by one", len(planned),
                    exc_info=True)
        for item in planned:
            try:
                _store_plans(ctx, [item])
            except Exception as one:  # noqa: BLE001
                outcomes[item.job.id] = _retry_later(ctx, item.job, one)
    for item in planned:
        outcomes.setdefault(item.job.id, "planned")
    return outcomes


def _plan_check(ctx: _Context, job: Any) -> str | _Planned:
    """Return what to plan for a job's Task, or the outcome when there is nothing to plan."""
    task = _read(ctx, "Task", job.task_id)
    if task is None or task.get("status") not in OPEN_STATUSES or not _is_homework(task):
        _later(ctx, job, status="skipped", last_error="Task not open")
        return "skipped"
    chosen = _task_channel(task)
    if chosen == "none":
        _later(ctx, job, status="skipped", last_error="reminders off")
        return "skipped"
    patient_id = _ref_id((task.get("for") or {}).get("reference"), "Patient")
    patient = _read(ctx, "Patient", patient_id)
    prefs = preferences(patient, ctx.policy)
    times = reminder_times(task, prefs, ctx.policy, now=ctx.now)
    if not times:
        _later(ctx, job, status="skipped", last_error="nothing to send")
        return "skipped"
    return _Planned(job, task, patient_id, times, chosen or prefs.channel,
                    patient_language(patient))


def _store_plans(ctx: _Context, items: list[_Planned]) -> None:
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
        stored = _put_all(unit, requests)
        rows, done = [], []
        for item, request in zip(items, requests):
            request_id = stored[request["id"]]["id"]
            task_id = item.task["id"]
            rows += [_job(f"reminder/{task_id}/{purpose}", kind="reminder", purpose=purpose,
                          due=when, now=ctx.now, task_id=task_id, request_id=request_id,
                          patient_id=item.patient_id)
                     for purpose, when, _deadline in item.times]
            done.append((item.job, {"status": "sent", "request_id": request_id}))
        _insert_ignore(unit.conn, rows)
        _finish_all(unit.conn, ctx.worker, ctx.now, done)


def _task_channel(task: Mapping[str, Any]) -> str | None:
    for ext in task.get("extension") or []:
        if ext.get("url") == EXT_REMINDER_CHANNEL and ext.get("valueCode"):
            return str(ext["valueCode"])
    return None


def _plan_request(task: Mapping[str, Any], patient_id: str | None,
                  times: list[tuple[str, datetime, datetime]], text_: str, ctx: _Context,
                  channel: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "identifier": [{"system": REMINDER_PLAN_SYSTEM, "value": task["id"]}],
        "status": "active",
        "category": [_REMINDER_CATEGORY],
        "priority": "routine",
        "subject": {"reference": f"Patient/{patient_id}"},
        "about": [{"reference": f"Task/{task['id']}"}],
        "payload": [{"contentString": text_}],
        "occurrencePeriod": {"start": _fhir(times[0][1]), "end": _fhir(times[-1][1])},
        "authoredOn": _fhir(ctx.now),
        "recipient": [{"reference": f"Patient/{patient_id}"}],
    }
    if channel is not None:
        request["medium"] = [channel.medium]
    if (task.get("requester") or {}).get("reference"):
        request["requester"] = {"reference": task["requester"]["reference"]}
    return request


def _close(ctx: _Context, job: Any) -> str:
    task = _read(ctx, "Task", job.task_id)
    if task is not None and task.get("status") not in OPEN_STATUSES:
        _close_request(ctx.store, task)
    _later(ctx, job, status="sent")
    return "closed"


def _close_request(store: Any, task: Mapping[str, Any]) -> None:
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


def _key(job: Any) -> str:
    return f"{job.id}#{job.attempt}"


_ID_NAMESPACE = uuid.UUID("6f0c5c1e-4b1d-5a9e-9c3e-2f6a3c1b7d10")


def resource_id(kind: str, key: str) -> str:
    """Return the stable id of the resource recording ``key`` (a plan's Task id, an attempt key).

    Writing it with a PUT by this id makes recording idempotent: a worker that redoes
    an interrupted job finds the resource instead of creating a second one.
    """
    return str(uuid.uuid5(_ID_NAMESPACE, f"{kind}:{key}"))


# -- sending ------------------------------------------------------------------------------


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


def _send_all(ctx: _Context, jobs: list[Any]) -> dict[str, str]:
    """Check a batch's reminders, count and link them in one transaction, then send each.

    A batch still sending half a lease after its claim gives back the jobs it has not
    started (``released``), so no other worker takes them over while this one works;
    so does a reminder whose patient opted out of a channel meanwhile (checked again).
    """
    outcomes: dict[str, str] = {}
    ready: list[_Ready] = []
    for job in jobs:
        try:
            checked = _check_reminder(ctx, job)
        except Exception as exc:  # noqa: BLE001
            outcomes[job.id] = _retry_later(ctx, job, exc)
            continue
        if isinstance(checked, str):
            outcomes[job.id] = checked
        else:
            ready.append(checked)
    if ready:
        try:
            ready = _prepare_sends(ctx, ready, outcomes)
        except Exception as exc:  # noqa: BLE001 - nothing was sent: all are tried again
            for item in ready:
                outcomes[item.job.id] = _retry_later(ctx, item.job, exc)
            ready = []
    for n, item in enumerate(ready):
        if monotonic() - ctx.claimed_at > ctx.policy.lease_seconds / 2:
            log.info("Batch ran past half its lease: %d reminders given back", len(ready) - n)
            for rest in ready[n:]:
                outcomes[rest.job.id] = _give_back(ctx, rest.job)
            break
        if item.job.patient_id in ctx.opted_out:  # checked before the opt-out: check again
            outcomes[item.job.id] = _give_back(ctx, item.job)
            continue
        outcomes[item.job.id] = _guarded(ctx, item.job, lambda c, _job, it=item: _send_ready(c, it))
        # a send on a channel without de-duplication (email, SMS...) is recorded
        # (Communication + job state) before the next one starts: a worker killed mid-batch
        # repeats at most the one message it had in flight. Channels whose receiver
        # de-duplicates by key (``deduplicates = True``) are recorded with the batch.
        if not getattr(item.channel, "deduplicates", False):
            _flush(ctx)
    return outcomes


def _give_back(ctx: _Context, job: Any) -> str:
    """Return an unstarted job to the queue as it was (due now, counted again when claimed)."""
    _later(ctx, job, status="pending", counted_at=None)
    return "released"


def _check_reminder(ctx: _Context, job: Any) -> str | _Ready:
    """Check a reminder against its Task, plan and the patient's preferences (read at send time)."""
    task = _read(ctx, "Task", job.task_id)
    if task is None or task.get("status") not in OPEN_STATUSES:
        if task is not None:
            _close_request(ctx.store, task)
        _later(ctx, job, status="cancelled",
               last_error=f"Task {task.get('status') if task else 'deleted'}")
        return "cancelled"
    request = _read(ctx, "CommunicationRequest", job.request_id)
    if request is None or request.get("status") != "active":
        _later(ctx, job, status="cancelled", last_error="plan not active")
        return "cancelled"
    patient = _read(ctx, "Patient", job.patient_id)
    prefs = preferences(patient, ctx.policy)
    _, due = _task_window(task)
    deadline = _deadline(job.purpose, due, ctx.policy)
    if _task_channel(task) == "none":
        _later(ctx, job, status="skipped", last_error="reminders off")
        return "skipped"
    if deadline is not None and ctx.now >= deadline:
        _later(ctx, job, status="skipped",
               last_error=f"too late: not sent before {_fhir(deadline)}")
        return "skipped"
    if prefs.in_quiet_hours(ctx.now):
        return _defer(ctx, job, prefs.next_allowed(ctx.now), deadline, "quiet hours")
    available = _available(ctx, patient, prefs, job)
    if not available or patient is None:
        if prefs.opt_out:  # the patient's own choice: final
            return _fail(ctx, job, request, task, patient,
                         PermanentDeliveryError("opted out of every channel"), None)
        return _fail(ctx, job, request, task, patient, HeldDeliveryError(
            "no channel can reach this patient: add an email address or mobile number in the "
            "EHR, or install the channel chosen"), None)
    return _Ready(job, task, request, patient, prefs, deadline, available)


def _prepare_sends(ctx: _Context, ready: list[_Ready], outcomes: dict[str, str]) -> list[_Ready]:
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
                outcomes[item.job.id] = _retry_later(ctx, item.job, exc)
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


def _admit_today(ctx: _Context, conn: Any, ready: list[_Ready]) -> set[str]:
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
    for start in range(0, len(patients), _READ_CHUNK):
        for row in conn.execute(select(j.patient_id, j.counted_at).where(
                j.patient_id.in_(patients[start:start + _READ_CHUNK]), j.kind == "reminder",
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


def _choose_channel(ctx: _Context, item: _Ready) -> str | None:
    """Set the reminder's channel; return the outcome when it cannot be sent."""
    settings = ctx.services.settings
    job = item.job
    name = ctx.pm.hook.channel_for(recipient=item.patient, task=item.task, request=item.request,
                                   channels=item.available, preferences=item.prefs,
                                   settings=settings)
    channel = item.available.get(name or "")
    if channel is None:
        return _fail(ctx, job, item.request, item.task, item.patient, HeldDeliveryError(
            f"the {name!r} channel is not installed or cannot reach this patient"), None)
    if not settings.base_url:
        return _fail(ctx, job, item.request, item.task, item.patient, HeldDeliveryError(
            "HW_FHIR_BASE_URL is not set: reminder links need the app's public address"), channel)
    item.channel = channel
    return None


def _send_ready(ctx: _Context, item: _Ready) -> str:
    settings = ctx.services.settings
    job, channel = item.job, item.channel
    assert item.link is not None
    message = default_message(kind="reminder", purpose=job.purpose, channel=channel.name,
                              to=channel.address(item.patient),
                              recipient=f"Patient/{job.patient_id}",
                              practice=settings.practice_name, link=item.link.url,
                              idempotency_key=_key(job), about=(f"Task/{item.task['id']}",),
                              language=patient_language(item.patient))
    ctx.pm.hook.prepare_message(message=message, recipient=item.patient, task=item.task,
                                request=item.request, settings=settings)
    return _deliver(ctx, job, channel, message, item.request, item.task, item.patient)


def _deadline(purpose: str, due: datetime | None, policy: ReminderPolicy) -> datetime | None:
    if due is None:
        return None
    if purpose == "overdue":
        return due + timedelta(hours=policy.grace_hours)
    return due


def _defer(ctx: _Context, job: Any, when: datetime, deadline: datetime | None, why: str) -> str:
    if deadline is not None and when >= deadline:
        _later(ctx, job, status="skipped",
               last_error=f"{why}: no time left before {_fhir(deadline)}")
        return "skipped"
    _later(ctx, job, status="pending", due_at=now_text(when), last_error=why, counted_at=None)
    return "deferred"


def _available(ctx: _Context, recipient: Mapping[str, Any] | None, prefs: ReminderPreferences | None,
               job: Any) -> dict[str, Any]:
    if recipient is None:
        return {}
    failed = set((job.failed_channels or "").split(",")) - {""}
    out = {}
    for name, channel in ctx.channels.items():
        if name in failed or (prefs is not None and name in prefs.opt_out):
            continue
        try:
            if channel.address(recipient):
                out[name] = channel
        except Exception:  # noqa: BLE001 - a broken plugin channel must not stop reminders
            log.exception("Channel %s failed to find an address", name)
    return out


def _communication(job: Any, message: Message, request: Mapping[str, Any], channel: Any,
                   status: str, now: datetime, *, delivery: Delivery | None = None,
                   reason: str | None = None) -> dict[str, Any]:
    identifiers = [{"system": ATTEMPT_SYSTEM, "value": message.idempotency_key}]
    if delivery is not None and delivery.vendor_id and delivery.vendor_system:
        identifiers.append({"system": delivery.vendor_system, "value": delivery.vendor_id})
    comm: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": identifiers,
        "basedOn": [{"reference": f"CommunicationRequest/{request['id']}"}],
        "partOf": [{"reference": f"CommunicationRequest/{request['id']}"}],
        "status": status,
        "category": request.get("category") or [_REMINDER_CATEGORY],
        "priority": request.get("priority", "routine"),
        "subject": request.get("subject"),
        "about": [{"reference": ref} for ref in message.about],
        "recipient": [{"reference": message.recipient}] if message.recipient else None,
        "payload": [{"contentString": message.text}],
    }
    if channel is not None:
        comm["medium"] = [channel.medium]
    if status != "not-done":
        comm["sent"] = _fhir(now)
    if reason:
        comm["statusReason"] = {"text": reason[:500]}
    return {k: v for k, v in comm.items() if v not in (None, [], {})}


def _deliver(ctx: _Context, job: Any, channel: Any, message: Message, request: dict[str, Any],
             task: dict[str, Any] | None, recipient: dict[str, Any] | None) -> str:
    """Send one message; queue its Communication and the job's new state for the batch's commit."""
    try:
        delivery = channel.send(message)
    except DeliveryError as exc:
        return _fail(ctx, job, request, task, recipient, exc, channel, message)
    except Exception as exc:  # noqa: BLE001 - a plugin channel's bug is a transient failure
        log.exception("Channel %s raised", channel.name)
        return _fail(ctx, job, request, task, recipient,
                     TransientDeliveryError(f"{type(exc).__name__}: {exc}", maybe_sent=True),
                     channel, message)
    status = delivery.status if delivery.status in ("completed", "in-progress") else "completed"
    comm = _communication(job, message, request, channel, status, ctx.now, delivery=delivery)
    after: list[Callable[[dict[str, Any] | None], None]] = []
    if job.kind == "alert":
        after.append(lambda _stored: _complete_alert(ctx.store, request))
    after.append(lambda stored: _notify(ctx, "reminder_sent", store=ctx.store, communication=stored,
                                        request=request, task=task, message=message))
    _later(ctx, job, communication=comm, after=after, status="sent", channel=channel.name,
           last_error=None)
    return "sent"


def _fail(ctx: _Context, job: Any, request: dict[str, Any], task: dict[str, Any] | None,
          recipient: dict[str, Any] | None, error: DeliveryError, channel: Any,
          message: Message | None = None) -> str:
    """Record a failed attempt; retry with backoff, another channel, or give up."""
    alert = job.kind == "alert"
    if getattr(error, "opt_out", False) and channel is not None and job.patient_id and not alert:
        opt_out(ctx.services, job.patient_id, channel.name)  # e.g. the number replied STOP
        ctx.resources.pop(("Patient", job.patient_id), None)
        ctx.opted_out.add(job.patient_id)
    failed = [c for c in (job.failed_channels or "").split(",") if c]
    if error.permanent and channel is not None:
        failed.append(channel.name)
    others = bool(error.permanent and channel is not None and recipient is not None and
                  set(_available(ctx, recipient, None if alert else preferences(recipient, ctx.policy),
                                 job)) - set(failed))
    give_up = error.permanent and not others
    held = getattr(error, "held", False)  # waits for a fix: never final
    if not error.permanent and not alert and not held and job.tries + 1 >= ctx.policy.max_tries:
        give_up = True
    values: dict[str, Any] = {"last_error": (HELD_PREFIX if held else "") + error.message[:1000],
                              "tries": job.tries + 1,
                              "failed_channels": ",".join(failed) or None}
    if give_up and alert:  # an alert is never given up: the next person is told
        give_up = False
        values.update(_escalated(ctx, job, request, error))
    elif give_up:
        values["status"] = "failed"
    else:
        values.update(status="pending", due_at=now_text(ctx.now + _backoff(ctx.policy, job, error)))

    def announce(stored: dict[str, Any] | None) -> None:
        _notify(ctx, "reminder_failed", store=ctx.store, communication=stored, request=request,
                task=task, error=error, permanent=give_up)

    if error.maybe_sent and not give_up:
        _later(ctx, job, after=[announce], **values)  # same attempt key next time
    else:
        values["attempt"] = job.attempt + 1
        msg = message or default_message(
            kind=job.kind, purpose=job.purpose, channel=channel.name if channel else "", to=None,
            recipient=(_alert_recipient(ctx, request, job) or "") if alert else
            _recipient_ref(job, request), practice=ctx.services.settings.practice_name,
            link=None, idempotency_key=_key(job),
            about=tuple(a.get("reference") for a in request.get("about") or []))
        comm = _communication(job, msg, request, channel, "not-done", ctx.now, reason=error.message)
        _later(ctx, job, communication=comm, after=[announce], **values)
    if give_up:
        log.warning("%s %s failed for good: %s", job.kind, job.id, error.message)
        return "failed"
    return "retried"


def _escalated(ctx: _Context, job: Any, request: Mapping[str, Any],
               error: DeliveryError) -> dict[str, Any]:
    """Escalate an alert no channel delivered; return the job's new state."""
    from .outcomes.escalation import escalate

    if request.get("id") and escalate(ctx.services, request["id"], now=ctx.now,
                                      reason=f"could not be delivered: {error.message}"):
        return {"status": "escalated"}
    # the chain is exhausted: try everyone's channels again later; it stays on screen meanwhile
    return {"status": "pending", "failed_channels": None,
            "due_at": now_text(ctx.now + timedelta(seconds=ctx.policy.alert_retry_cap_seconds))}


def _recipient_ref(job: Any, request: Mapping[str, Any]) -> str:
    for recipient in request.get("recipient") or []:
        if recipient.get("reference"):
            return str(recipient["reference"])
    return f"Patient/{job.patient_id}"


def _backoff(policy: ReminderPolicy, job: Any, error: DeliveryError) -> timedelta:
    cap = policy.alert_retry_cap_seconds if job.kind == "alert" else policy.retry_cap_seconds
    if error.permanent:  # an alert trying its next channel: at once
        return timedelta(seconds=0)
    if getattr(error, "held", False):  # again in a while; at once when a worker starts
        return timedelta(seconds=min(cap, HELD_RETRY_SECONDS))
    delay = min(cap, policy.retry_base_seconds * (2 ** job.tries)) * random.uniform(0.8, 1.2)
    return timedelta(seconds=max(delay, error.retry_after or 0))


def _notify(ctx: _Context, hook: str, **kwargs: Any) -> None:
    from .plugins import call_each

    try:
        call_each(ctx.pm, hook, **kwargs)
    except Exception:  # noqa: BLE001 - after a send, a listener's error must not cause a resend
        log.exception("A %s listener failed", hook)


def _send_alert(ctx: _Context, job: Any) -> str:
    settings = ctx.services.settings
    request = _read(ctx, "CommunicationRequest", job.request_id)
    if request is None or request.get("status") != "active":
        _later(ctx, job, status="cancelled", last_error="alert not active")
        return "cancelled"
    recipient_ref = _alert_recipient(ctx, request, job)
    if recipient_ref is None:
        return _fail(ctx, job, request, None, None, PermanentDeliveryError(
            "the alert names no clinician and the patient has no general practitioner"), None)
    resource_type, _, rid = recipient_ref.partition("/")
    known = resource_type in ("Practitioner", "PractitionerRole", "Patient")
    recipient = _read(ctx, resource_type, rid) if known else None
    from .outcomes.escalation import restrict_to_contact_channel

    available = restrict_to_contact_channel(recipient_ref, _available(ctx, recipient, None, job),
                                            settings)
    if not available:
        return _fail(ctx, job, request, None, recipient, PermanentDeliveryError(
            f"no channel can reach {recipient_ref} (add an email address or configure the EHR inbox)"),
            None)
    name = ctx.pm.hook.channel_for(recipient=recipient, task=None, request=request,
                                   channels=available, preferences=None, settings=settings)
    channel = available.get(name or "") or next(iter(available.values()))
    link = f"{settings.base_url.rstrip('/')}/" if settings.base_url else None
    message = default_message(
        kind="alert", purpose="risk-alert", channel=channel.name, to=channel.address(recipient),
        recipient=recipient_ref, practice=settings.practice_name, link=link,
        idempotency_key=_key(job),
        about=tuple(a.get("reference") for a in request.get("about") or [] if a.get("reference")))
    ctx.pm.hook.prepare_message(message=message, recipient=recipient, task=None, request=request,
                                settings=settings)
    return _deliver(ctx, job, channel, message, request, None, recipient)


def _alert_recipient(ctx: _Context, request: Mapping[str, Any], job: Any = None) -> str | None:
    """Return the clinician an alert job goes to: the recipient of its escalation level
    (``alert/<id>/<level>``; the first recipient for ``alert/<id>``), else the patient's GP."""
    level = int(job.id.split("/")[2]) if job is not None and job.id.count("/") == 2 else 0
    told = [str(r.get("reference") or "") for r in request.get("recipient") or []]
    told = [ref for ref in told if ref.startswith(("Practitioner/", "PractitionerRole/"))]
    if told:
        return told[min(level, len(told) - 1)]
    patient = _read(ctx, "Patient", _ref_id((request.get("subject") or {}).get("reference"),
                                            "Patient"))
    for gp in (patient or {}).get("generalPractitioner") or []:
        ref = str(gp.get("reference") or "")
        if ref.startswith(("Practitioner/", "PractitionerRole/")):
            return ref
    return None


def _complete_alert(store: Any, request: Mapping[str, Any]) -> None:
    for _ in range(3):
        try:
            current = store.read("CommunicationRequest", request["id"])
            if current.resource.get("status") != "active":
                return
            store.update(dict(current.resource, status="completed"), if_match=current.version_id)
            return
        except VersionConflict:
            continue
        except NotFound:
            return


# -- the pass -----------------------------------------------------------------------------


def run_reminders(services: Any, *, worker: str | None = None, now: datetime | None = None,
                  limit: int | None = None, discover: bool = True) -> ReminderRun:
    """Queue what is new, then claim and process due batches until none is due (or ``limit``)."""
    policy = ReminderPolicy.from_settings(services.settings)
    name = worker or f"worker-{uuid.uuid4().hex[:8]}"
    from .plugins import channels as registered

    run = ReminderRun()
    if discover:
        discover_tasks(services, now=now)
        discover_alerts(services, now=now)
    chans = registered(services.plugins, services.settings, services.store)
    while limit is None or run.claimed < limit:
        moment = now or datetime.now(timezone.utc)
        take = policy.batch if limit is None else min(policy.batch, limit - run.claimed)
        jobs = claim_jobs(services.store, worker=name, limit=take,
                          lease_seconds=policy.lease_seconds, now=moment)
        if not jobs:
            return run
        ctx = _Context(services=services, policy=policy, channels=chans, worker=name, now=moment)
        run.claimed += len(jobs)
        for outcome in _process_batch(ctx, jobs):
            run.add(outcome)
    return run


# -- callbacks, opt-out, failures ---------------------------------------------------------

#: ``last_error`` prefix of a job held for a fix on our side (:class:`HeldDeliveryError`).
HELD_PREFIX = "held: "
#: Seconds between two attempts of a held job (:mod:`hw_fhir.reminder_retry` retries at once).
HELD_RETRY_SECONDS = 900.0


_RANK = {"preparation": 0, "in-progress": 1, "on-hold": 1, "completed": 2, "not-done": 2,
         "stopped": 2, "entered-in-error": 3, "unknown": 1}


def update_delivery_status(services: Any, *, vendor_system: str, vendor_id: str, status: str,
                           reason: str | None = None,
                           received: datetime | None = None) -> dict[str, Any] | None:
    """Apply a channel's delivery callback to the Communication it names; return it (or None).

    ``status`` is a Communication status (``completed`` delivered, ``not-done``
    undelivered, ``in-progress`` still on its way). A callback arriving out of order
    never moves a Communication back (delivered then "sent" stays delivered).
    Announces ``delivery_status_changed``.
    """
    store = services.store
    for _ in range(3):
        page = store.search("Communication", [("identifier", f"{vendor_system}|{vendor_id}")])
        if not page.matches:
            return None
        stored = page.matches[0]
        comm = stored.resource
        previous = comm.get("status", "unknown")
        if previous == status or _RANK.get(status, 0) < _RANK.get(previous, 0):
            return dict(comm)
        changed = dict(comm, status=status)
        if status == "completed":
            changed["received"] = _fhir(received or datetime.now(timezone.utc))
        if reason:
            changed["statusReason"] = {"text": reason[:500]}
        try:
            new = store.update(changed, if_match=stored.version_id).resource
        except VersionConflict:
            continue
        from .plugins import call_each

        call_each(services.plugins, "delivery_status_changed", store=store, communication=new,
                  previous_status=previous)
        return dict(new)
    return None


def opt_out(services: Any, patient_id: str, channel: str) -> bool:
    """Record that a patient opted out of a channel (e.g. replied STOP); True if it changed."""
    store = services.store
    for _ in range(5):
        stored = store.read("Patient", patient_id)
        patient = stored.resource
        extensions = list(patient.get("extension") or [])
        prefs = next((e for e in extensions if e.get("url") == REMINDER_PREFERENCES_URL), None)
        if prefs is None:
            prefs = {"url": REMINDER_PREFERENCES_URL, "extension": []}
            extensions.append(prefs)
        if any(s.get("url") == "optOut" and s.get("valueCode") == channel
               for s in prefs.get("extension") or []):
            return False
        index = extensions.index(prefs)
        extensions[index] = dict(prefs, extension=[*(prefs.get("extension") or []),
                                                   {"url": "optOut", "valueCode": channel}])
        try:
            store.update(dict(patient, extension=extensions), if_match=stored.version_id)
            return True
        except VersionConflict:
            continue
    raise VersionConflict(f"Patient/{patient_id} kept changing; opt-out not recorded")


def failures(services: Any, *, limit: int = 100) -> list[dict[str, Any]]:
    """Return the reminders and alerts that failed for good, newest first."""
    j = reminder_job.c
    with services.store.engine.connect() as conn:
        rows = conn.execute(select(reminder_job).where(j.status == "failed")
                            .order_by(j.updated_at.desc()).limit(limit)).fetchall()
    return [{"id": r.id, "kind": r.kind, "task": r.task_id, "request": r.request_id,
             "patient": r.patient_id, "error": r.last_error, "tries": r.tries,
             "communication": r.communication_id, "at": r.updated_at} for r in rows]

