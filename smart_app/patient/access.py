"""Who the patient is in this browser: set by a secure link or a SMART patient launch.

The browser session (server-side) holds ``hw_patient``: the local Patient id and how
it was signed in (``link`` with the link's id, or ``smart``). Signing in and out rotates
the session id (:func:`smart_app.security.rotate_session`); a session a link opened
ends as soon as that link is revoked (checked on every request). Every patient page reads it through
:func:`current_patient`; a page asking for a Task first checks the Task is for that
patient (:func:`own_task`), so nobody reaches another patient's homework.
"""

from __future__ import annotations

import time
from typing import Any

from flask import session

from hw_fhir.errors import Forbidden, NotFound
from hw_fhir.i18n import N_
from hw_fhir.links import PatientLinks, patient_links

from ..security import rotate_session
from ..state import app_state
from .ratelimit import Limit, RateLimiter

__all__ = [
    "SESSION_KEY",
    "LINK_GUESSES",
    "BIRTH_DATE_GUESSES",
    "current_patient",
    "sign_in",
    "sign_out",
    "own_task",
    "NO_SUCH_HOMEWORK",
    "NOT_YOUR_HOMEWORK",
    "links",
    "limiter",
    "services",
]

SESSION_KEY = "hw_patient"
#: Bad link tokens one client address may try (per 10 minutes).
LINK_GUESSES = Limit("link", 20, 600)
#: Wrong birth dates one client address may give, across links (per 15 minutes).
BIRTH_DATE_GUESSES = Limit("dob", 8, 900)
#: What :func:`own_task` refuses with (the patient pages show them, translated).
NO_SUCH_HOMEWORK = N_("There is no such homework.")
NOT_YOUR_HOMEWORK = N_("This homework belongs to someone else.")


def services() -> Any:
    """Return the app's Services."""
    return app_state().services


def links() -> PatientLinks:
    """Return the secure link service."""
    found = app_state().patient_links
    return found if found is not None else patient_links(services())


def limiter() -> RateLimiter:
    """Return the app's rate limiter."""
    found = app_state().patient_limiter
    assert found is not None, "smart_app.patient.init_app builds it"
    return found


def current_patient() -> str | None:
    """Return ``Patient/<id>`` signed in in this browser session, or None."""
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict) or not data.get("patient"):
        return None
    if data.get("via") == "link" and not links().is_live(str(data.get("link") or "")):
        sign_out()  # the link that opened this session was revoked
        return None
    return f"Patient/{data['patient']}"


def sign_in(patient_id: str, *, via: str, launch: str | None = None,
            link: str | None = None) -> None:
    """Remember the patient in this browser session, under a new session id.

    The id changes unless this same patient was already signed in here (no privilege
    change; forms open in other tabs keep working).
    """
    before = session.get(SESSION_KEY)
    if not (isinstance(before, dict) and before.get("patient") == patient_id):
        rotate_session()
    session[SESSION_KEY] = {
        "patient": patient_id,
        "via": via,
        "at": int(time.time()),
        **({"launch": launch} if launch else {}),
        **({"link": link} if link else {}),
    }


def sign_out() -> None:
    """Forget the patient in this browser session (the session id changes)."""
    if SESSION_KEY in session:
        session.pop(SESSION_KEY, None)
        rotate_session()


def own_task(task_id: str, patient_ref: str) -> dict[str, Any]:
    """Return the Task if it is this patient's homework; NotFound or Forbidden otherwise."""
    try:
        task: dict[str, Any] = services().store.read("Task", task_id).resource
    except NotFound:
        raise NotFound(NO_SUCH_HOMEWORK) from None
    if (task.get("for") or {}).get("reference") != patient_ref:
        raise Forbidden(NOT_YOUR_HOMEWORK)
    return task
