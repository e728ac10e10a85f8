"""The built-in reminder and alert texts: the practice, that there is an activity, the link.

A reminder's text carries **no clinical content**: it names the practice
(``Settings.practice_name``), says there is an activity, and carries the secure link
(:mod:`hw_fhir.links`). Patient texts are translated into the patient's language.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..channels.base import Message
from ..i18n import N_, practice_in, supported, translator

__all__ = ["default_message", "MESSAGE_SUBJECT", "PATIENT_MESSAGE_NOTICE",
           "CLINICIAN_MESSAGE_NOTICE", "MESSAGES_PATH"]

#: Secure-message notifications (:mod:`hw_fhir.reminders.notices`): no content, no names.
MESSAGE_SUBJECT = N_("You have a new message")
PATIENT_MESSAGE_NOTICE = N_("You have a new message from your care team. Read it here: {link}")
CLINICIAN_MESSAGE_NOTICE = "You have a new message from a patient. Open hw-fhir to read it."
#: Where a patient reads their messages (the app's ``/my/messages`` page).
MESSAGES_PATH = "/my/messages"

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
    "new-message": (MESSAGE_SUBJECT, PATIENT_MESSAGE_NOTICE),
    "new-message-clinician": (MESSAGE_SUBJECT, CLINICIAN_MESSAGE_NOTICE),
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
    fill = {"practice": practice_in(practice, language), "link": link or "",
            "link_line": link_line}
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
