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
key (:func:`~hw_fhir.reminders.records.resource_id`, so recording an attempt twice stores
it once), ``basedOn`` and ``partOf`` →
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
Work is queued in ``reminder_job`` (:mod:`hw_fhir.reminders.tables`). A worker claims a
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
and by ``hw-fhir reminders retry`` (:mod:`hw_fhir.reminders.retry`); only a permanent
refusal by the recipient's channel (or the patient opting out) ends a reminder.

The package
-----------
:mod:`~hw_fhir.reminders.clock` (instants, zones), :mod:`~hw_fhir.reminders.policy`
(:class:`ReminderPolicy`), :mod:`~hw_fhir.reminders.preferences` (the patient's,
quiet hours, opt-out), :mod:`~hw_fhir.reminders.timing` (when), :mod:`~hw_fhir.reminders.texts`
(what), :mod:`~hw_fhir.reminders.records` (FHIR systems, stable ids),
:mod:`~hw_fhir.reminders.tables` and :mod:`~hw_fhir.reminders.queue` (the job queue,
claiming), :mod:`~hw_fhir.reminders.discovery` (finding new work),
:mod:`~hw_fhir.reminders.batch` (a claimed batch, its commit),
:mod:`~hw_fhir.reminders.planning`, :mod:`~hw_fhir.reminders.sending`,
:mod:`~hw_fhir.reminders.delivery` (one attempt), :mod:`~hw_fhir.reminders.alerts`,
:mod:`~hw_fhir.reminders.run` (one pass), :mod:`~hw_fhir.reminders.callbacks`
(delivery status) and :mod:`~hw_fhir.reminders.retry` (undelivered reminders).
"""

from __future__ import annotations

from .callbacks import update_delivery_status
from .clock import local_moment, now_text
from .discovery import discover_alerts, discover_tasks
from .escalation import escalate, escalate_overdue
from .policy import HELD_RETRY_SECONDS, ReminderPolicy
from .preferences import (
    REMINDER_PREFERENCES_URL,
    TIMEZONE_URL,
    ReminderPreferences,
    opt_out,
    preferences,
)
from .queue import HELD_PREFIX, claim_jobs, enqueue_alert, enqueue_plan, stop_task_reminders
from .records import (
    ATTEMPT_SYSTEM,
    COMMUNICATION_CATEGORY_SYSTEM,
    REMINDER_PLAN_SYSTEM,
    resource_id,
)
from .retry import (
    LEGACY_CONFIGURATION_FAILURES,
    ReminderProblem,
    failures,
    release_held,
    reminder_problems,
    retry_reminders,
)
from .run import ReminderRun, process_job, run_reminders
from .tables import reminder_job, reminder_state
from .texts import default_message
from .timing import reminder_times

__all__ = [
    "REMINDER_PREFERENCES_URL",
    "TIMEZONE_URL",
    "escalate",
    "escalate_overdue",
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
    "reminder_job",
    "reminder_state",
    "ReminderProblem",
    "reminder_problems",
    "retry_reminders",
    "release_held",
    "LEGACY_CONFIGURATION_FAILURES",
]
