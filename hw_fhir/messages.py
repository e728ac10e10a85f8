"""Secure messages between a patient and their care team, as FHIR ``Communication``.

A message is a ``Communication``:

* ``status`` ``completed``; ``category``
  ``http://hw-fhir.org/fhir/CodeSystem/communication-category|secure-message``;
* ``subject`` the Patient; ``sender`` and ``recipient`` the Patient or a Practitioner;
* ``about`` → the Task when the message is about one assignment (none: a general message);
* ``inResponseTo`` → the Communication it answers;
* ``sent`` the instant; ``payload[0].contentString`` the text;
* ``identifier`` under :data:`MESSAGE_IDENTIFIER_SYSTEM` (reserved: only hw-fhir's own pages
  write messages; a Communication without it is never shown in a thread).

A clinician may turn messaging off for one patient: the Patient then carries
:data:`MESSAGING_EXTENSION` with ``valueBoolean`` false (written with If-Match, like
the share-scores setting). The patient can then read the thread but not write.

A new message queues a notification through the recipient's reminder channel that says
only that there is a new message and where to read it: no text, no names
(:data:`PATIENT_NOTICE`, :data:`CLINICIAN_NOTICE`); it is queued, retried and shown when
undelivered like a reminder (:func:`notify`, :mod:`hw_fhir.reminders.notices`). No web
framework here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import catalog
from .assignment import instant, parse_instant, reference
from .completion import task_questionnaire
from .errors import Forbidden, HwFhirError, InvalidInput, NotFound
from .i18n import N_
from .reminders.queue import enqueue_message, sent_channel
from .reminders.run import send_job_now
from .reminders.texts import CLINICIAN_MESSAGE_NOTICE, MESSAGE_SUBJECT, PATIENT_MESSAGE_NOTICE
from .store.base import Store, iter_all

__all__ = [
    "MESSAGE_CATEGORY_SYSTEM",
    "MESSAGE_CODE",
    "MESSAGING_EXTENSION",
    "MESSAGE_IDENTIFIER_SYSTEM",
    "MAX_LENGTH",
    "REFUSALS",
    "TextRefusal",
    "text_refusal",
    "PATIENT_NOTICE",
    "CLINICIAN_NOTICE",
    "SUBJECT",
    "ThreadMessage",
    "messaging_enabled",
    "set_messaging",
    "thread",
    "send_message",
    "care_team_recipient",
    "task_titles",
    "notify",
]

log = logging.getLogger("hw_fhir.messages")

MESSAGE_CATEGORY_SYSTEM = f"{catalog.CANONICAL_BASE}/CodeSystem/communication-category"
MESSAGE_CODE = "secure-message"
#: Identifier system of every message hw-fhir stores. Reserved (hw_fhir.smart.write_rules):
#: no /fhir client can add it, so nobody can plant a message in a thread under another's name.
MESSAGE_IDENTIFIER_SYSTEM = f"{catalog.CANONICAL_BASE}/sid/secure-message"
#: On the Patient (valueBoolean): false when the clinician turned messaging off.
MESSAGING_EXTENSION = f"{catalog.CANONICAL_BASE}/StructureDefinition/secure-messaging"
#: Longest message text accepted (characters).
MAX_LENGTH = 4000
#: The notification subject and texts: no content, no names (channels are not private).
SUBJECT = MESSAGE_SUBJECT
PATIENT_NOTICE = PATIENT_MESSAGE_NOTICE
CLINICIAN_NOTICE = CLINICIAN_MESSAGE_NOTICE
#: Why a message is refused, as a patient reads it (marked for the catalog; the patient's
#: Messages page translates them, and fills in ``_TOO_LONG``'s numbers after translating).
_EMPTY = N_("Write a message before sending it.")
_TOO_LONG = N_("A message can be at most %(max)s characters; this one has %(length)s. Shorten it "
               "or send it in two parts.")
_BAD_CHARACTERS = N_("The message contains characters that cannot be sent.")
_MESSAGING_OFF = N_("Messaging is turned off for this patient.")
_ANSWERED_GONE = N_("The message you are answering is not there any more.")
_NOT_THIS_THREAD = N_("You can only answer messages of this conversation.")
#: Every refusal of :func:`send_message` a patient can meet (the patient pages show these,
#: translated; ``tests/test_patient_error_words.py`` checks each has a translation).
REFUSALS = (_EMPTY, _TOO_LONG, _BAD_CHARACTERS, _MESSAGING_OFF, _ANSWERED_GONE, _NOT_THIS_THREAD)


@dataclass(frozen=True)
class ThreadMessage:
    """One message of a thread, as the pages show it."""

    id: str
    sent: datetime
    from_patient: bool
    sender_ref: str
    text: str
    task_id: str | None
    in_response_to: str | None


def messaging_enabled(patient: Mapping[str, Any] | None) -> bool:
    """Whether the patient may exchange messages (on unless a clinician turned it off)."""
    return not any(
        e.get("url") == MESSAGING_EXTENSION and e.get("valueBoolean") is False
        for e in (patient or {}).get("extension") or []
    )


def set_messaging(store: Store, patient: str, enabled: bool) -> dict[str, Any]:
    """Turn messaging on or off for a patient; return the stored Patient.

    Written with If-Match on the version read: a concurrent change of the Patient
    raises VersionConflict instead of being overwritten.
    """
    patient_ref = reference("Patient", patient)
    stored = store.read("Patient", patient_ref.split("/", 1)[1])
    resource = dict(stored.resource)
    extensions = [e for e in resource.get("extension") or [] if e.get("url") != MESSAGING_EXTENSION]
    extensions.append({"url": MESSAGING_EXTENSION, "valueBoolean": bool(enabled)})
    resource["extension"] = extensions
    return store.update(resource, if_match=stored.version_id).stored.resource


def _is_message(resource: Mapping[str, Any]) -> bool:
    if not any(i.get("system") == MESSAGE_IDENTIFIER_SYSTEM for i in resource.get("identifier") or []):
        return False
    return any(
        c.get("system") == MESSAGE_CATEGORY_SYSTEM and c.get("code") == MESSAGE_CODE
        for cat in resource.get("category") or [] for c in cat.get("coding") or []
    )


def _ref_id(value: Any, resource_type: str) -> str | None:
    text = str((value or {}).get("reference") or "")
    return text.split("/", 1)[1] if text.startswith(f"{resource_type}/") else None


def _messages(store: Store, patient_ref: str) -> list[dict[str, Any]]:
    found = iter_all(store, "Communication", [
        ("subject", patient_ref), ("category", f"{MESSAGE_CATEGORY_SYSTEM}|{MESSAGE_CODE}")])
    return [m for m in found if _is_message(m)
            and (m.get("subject") or {}).get("reference") == patient_ref]


def thread(store: Store, patient: str, *, task_id: str | None = None) -> list[ThreadMessage]:
    """Return a patient's messages, oldest first (only those about ``task_id`` when given)."""
    patient_ref = reference("Patient", patient)
    out: list[ThreadMessage] = []
    for m in _messages(store, patient_ref):
        sender = str((m.get("sender") or {}).get("reference") or "")
        about = next((_ref_id(a, "Task") for a in m.get("about") or [] if _ref_id(a, "Task")), None)
        if task_id is not None and about != task_id:
            continue
        reply = next((_ref_id(r, "Communication") for r in m.get("inResponseTo") or []), None)
        out.append(ThreadMessage(
            id=str(m["id"]), sent=parse_instant(str(m.get("sent"))),
            from_patient=sender == patient_ref, sender_ref=sender, text=str(((m.get("payload") or [{}])[0]).get("contentString") or ""),
            task_id=about, in_response_to=reply))
    out.sort(key=lambda t: (t.sent, t.id))
    return out


def task_titles(store: Store, thread: list[ThreadMessage] | tuple[ThreadMessage, ...]) -> dict[str, str]:
    """Return the activity title of each Task the messages are about (by Task id)."""
    titles: dict[str, str] = {}
    for task_id in {m.task_id for m in thread if m.task_id}:
        try:
            questionnaire = task_questionnaire(store, store.read("Task", task_id).resource)
        except HwFhirError:
            titles[task_id] = "an activity"
            continue
        titles[task_id] = str(questionnaire.get("title") or questionnaire.get("name") or "an activity")
    return titles


def care_team_recipient(store: Store, patient: Mapping[str, Any],
                        task: Mapping[str, Any] | None = None) -> str | None:
    """Return who a patient's message goes to: the Task's requester, the last clinician
    who wrote to the patient, else the patient's general practitioner."""
    if task is not None:
        requester = str((task.get("requester") or {}).get("reference") or "")
        if requester.startswith("Practitioner/"):
            return requester
    patient_ref = f"Patient/{patient['id']}"
    written = [m for m in _messages(store, patient_ref)
               if str((m.get("sender") or {}).get("reference") or "").startswith("Practitioner/")]
    if written:
        latest = max(written, key=lambda m: str(m.get("sent") or ""))
        return str(latest["sender"]["reference"])
    for gp in patient.get("generalPractitioner") or []:
        ref = str(gp.get("reference") or "")
        if ref.startswith("Practitioner/"):
            return ref
    return None


@dataclass(frozen=True)
class TextRefusal:
    """Why a message's text cannot be sent: a message of :data:`REFUSALS` and the values of
    its ``%(name)s`` placeholders (fill them in after translating the message)."""

    message: str
    values: Mapping[str, int]

    @property
    def text(self) -> str:
        """The refusal in English, its placeholders filled in."""
        return self.message % dict(self.values)


def _cleaned(text: str) -> str:
    return text.strip().replace("\r\n", "\n")


def text_refusal(text: Any) -> TextRefusal | None:
    """Return why a message's text cannot be sent (empty, too long, control characters),
    else None."""
    if not isinstance(text, str) or not text.strip():
        return TextRefusal(_EMPTY, {})
    cleaned = _cleaned(text)
    if len(cleaned) > MAX_LENGTH:
        return TextRefusal(_TOO_LONG, {"max": MAX_LENGTH, "length": len(cleaned)})
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in cleaned):
        return TextRefusal(_BAD_CHARACTERS, {})
    return None


def _clean_text(text: Any) -> str:
    refusal = text_refusal(text)
    if refusal is not None:
        raise InvalidInput(refusal.text)
    return _cleaned(text)


def send_message(store: Store, *, patient: str, sender: str, recipient: str, text: Any,
                 task_id: str | None = None, in_response_to: str | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """Store one message of a patient's thread; return the Communication.

    Refused (nothing stored) when the text is empty or too long, messaging is turned off
    for the patient, the Task is not the patient's, or the message answered is not in
    the patient's thread.
    """
    patient_ref = reference("Patient", patient)
    body = _clean_text(text)
    try:
        patient_resource = store.read("Patient", patient_ref.split("/", 1)[1]).resource
    except NotFound:
        raise NotFound("There is no such patient here.") from None
    if not messaging_enabled(patient_resource):
        raise Forbidden(_MESSAGING_OFF)
    if patient_ref not in (sender, recipient):
        raise Forbidden("A message must be from or to the patient of its thread.")
    moment = (now or datetime.now(timezone.utc))
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": MESSAGE_IDENTIFIER_SYSTEM,
                        "value": str(uuid.uuid4())}],
        "status": "completed",
        "category": [{"coding": [{"system": MESSAGE_CATEGORY_SYSTEM, "code": MESSAGE_CODE,
                                  "display": "Secure message"}]}],
        "subject": {"reference": patient_ref},
        "sender": {"reference": sender},
        "recipient": [{"reference": recipient}],
        "sent": instant(moment),
        "payload": [{"contentString": body}],
    }
    if task_id:
        try:
            task = store.read("Task", task_id).resource
        except NotFound:
            raise NotFound("There is no such homework.") from None
        if (task.get("for") or {}).get("reference") != patient_ref:
            raise Forbidden("This homework belongs to someone else.")
        resource["about"] = [{"reference": f"Task/{task_id}"}]
    if in_response_to:
        try:
            answered = store.read("Communication", in_response_to).resource
        except NotFound:
            raise NotFound(_ANSWERED_GONE) from None
        if not _is_message(answered) or (answered.get("subject") or {}).get("reference") != patient_ref:
            raise Forbidden(_NOT_THIS_THREAD)
        resource["inResponseTo"] = [{"reference": f"Communication/{in_response_to}"}]
    stored: dict[str, Any] = store.create(resource).resource
    return stored


def notify(services: Any, message: Mapping[str, Any], *, link: str | None = None,
           now: datetime | None = None) -> str | None:
    """Queue the notice of a new message to its recipient, and try to send it at once.

    The notice goes through the reminder queue (:mod:`hw_fhir.reminders.notices`): it
    says only that there is a message (and, for a patient, where to read it: the app's
    Messages page under ``HW_FHIR_BASE_URL``; ``link`` is no longer used). Quiet hours
    put it off until they end; a channel that is down retries; one that cannot be sent
    is shown with the undelivered reminders. Return the channel's name when it was sent
    now, else None (queued, put off, skipped, or already sent). Never undoes the message.
    """
    job_id = enqueue_message(services.store, message, now=now)
    if job_id is None:
        return None
    outcome = send_job_now(services, job_id, now=now)
    if outcome != "sent":
        log.info("Message notification %s: %s", message.get("id"), outcome or "not due")
        return None
    return sent_channel(services.store, job_id)
