"""What the patient pages say when a request fails, in the patient's language.

An error's own message is shown (translated) only when it is one written for patients
(:data:`ERROR_MESSAGES`, each defined where it is raised); otherwise the page says the
words of the HTTP status (:data:`STATUS_WORDS`): a store's or a framework's diagnostics,
in English, are for the log and developers. Every word here is in the message catalog
(``tests/test_patient_error_words.py`` walks them all).
"""

from __future__ import annotations

from flask_babel import gettext as _

from hw_fhir import messages
from hw_fhir.i18n import N_
from hw_fhir.links import LINK_MESSAGES

from ..security import CSRF_EXPIRED
from . import access

__all__ = ["ERROR_TITLES", "DEFAULT_TITLE", "FORM_EXPIRED_TITLE", "STATUS_WORDS", "DEFAULT_WORDS",
           "NOTE_TOO_LONG", "ERROR_MESSAGES", "LINK_TITLES", "TOO_MANY_TEXT", "error_text",
           "error_words"]

#: Titles of the patient pages' error pages, by HTTP status (else :data:`DEFAULT_TITLE`).
ERROR_TITLES: dict[int, str] = {
    400: N_("That could not be read"),
    401: N_("Please open your link again"),
    403: N_("This page is not available to you"),
    404: N_("We could not find that"),
    409: N_("Something changed"),
    410: N_("This is no longer here"),
    412: N_("Something changed"),
    413: N_("That is too much at once"),
    422: N_("That could not be done"),
    429: N_("Too many attempts"),
}
DEFAULT_TITLE = N_("Something is not right")
FORM_EXPIRED_TITLE = N_("This form has expired")
#: What the patient pages say when a request fails, by HTTP status (else :data:`DEFAULT_WORDS`),
#: unless the error's own message is one of :data:`ERROR_MESSAGES`: what else an error says
#: (a store's or a framework's diagnostics, in English) is for the log and developers.
STATUS_WORDS: dict[int, str] = {
    400: N_("Something you sent could not be read. Go back, reload the page and try again."),
    401: N_("For your privacy, this page needs the secure link from your latest reminder, "
            "or sign in through your patient portal."),
    403: N_("This page is not available to you. Go back to your list."),
    404: N_("It may have been removed, or the address is not complete. Go back to your list."),
    409: N_("Something changed meanwhile. Reload the page and try again."),
    410: N_("It may have been removed, or the address is not complete. Go back to your list."),
    412: N_("Something changed meanwhile. Reload the page and try again."),
    413: N_("What you sent is too large. Make it shorter and try again."),
    422: N_("That could not be done. Reload the page and try again."),
    429: N_("Too many attempts at once. Wait a few minutes and try again."),
}
DEFAULT_WORDS = N_("Something went wrong on our side. Try again later.")
NOTE_TOO_LONG = N_("Your note is too long: keep it under 4000 characters.")
#: Errors' own messages the patient pages show (translated), each defined where it is raised.
ERROR_MESSAGES: frozenset[str] = frozenset({
    CSRF_EXPIRED,
    *LINK_MESSAGES,
    *messages.REFUSALS,
    access.NO_SUCH_HOMEWORK,
    access.NOT_YOUR_HOMEWORK,
    NOTE_TOO_LONG,
})
#: The secure link pages' titles, by :attr:`hw_fhir.errors.LinkError.reason`.
LINK_TITLES: dict[str, str] = {
    "expired": N_("This link has expired"),
    "revoked": N_("This link no longer works"),
    "tampered": N_("This link does not work"),
    "wrong-patient": N_("This link is for someone else"),
}
TOO_MANY_TEXT = N_("For your safety this has been paused. Wait 15 minutes and try again, or ask "
                   "your care team for a new link.")


def error_text(status: int, message: str | None) -> str:
    """Return what a patient's error page says (translated): the error's own message when it
    is one written for patients (:data:`ERROR_MESSAGES`), else the words of its status."""
    if message in ERROR_MESSAGES:
        return _(message)
    return _(STATUS_WORDS.get(status, DEFAULT_WORDS))


def error_words(status: int, message: str | None) -> tuple[str, str]:
    """Return the title and text (translated) of a patient's error page."""
    title = FORM_EXPIRED_TITLE if message == CSRF_EXPIRED else ERROR_TITLES.get(status,
                                                                                DEFAULT_TITLE)
    return _(title), error_text(status, message)
