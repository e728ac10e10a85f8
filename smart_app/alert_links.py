"""``/alerts/<flag id>``: the link of a risk-alert email, to where the alert is acknowledged.

The URL carries only the Flag's opaque id (no name, no MRN, no patient id). Opening it:

* in a browser session with an open clinician launch (the one named by ``?launch=``, else
  the newest): the dashboard of the Flag's patient at that flag (``#flag-<id>``), when the
  launch may open that patient; a readable 403 when it may not;
* with no launch: the link is remembered in the (server-side) session and a standalone
  SMART launch starts against the EHR (the sandbox's, or the only registered one); the
  callback comes back here with the new launch (:func:`smart_app.launch.after_launch`).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, redirect, render_template, session, url_for

from hw_fhir.errors import NotFound

from .clinician.base import panel_access
from .fhir_api import fhir_base
from .launch import AFTER_LAUNCH_KEY, LAUNCH_ARG, current_launch, launcher
from .security import session_id
from .state import app_state

__all__ = ["bp"]

bp = Blueprint("alert_links", __name__)

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _error(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("launch/error.html", title=title, message=message, hint=None), status


def _clinician_launch() -> Any:
    """The launch named in the URL, else this session's newest one; clinician launches only."""
    active = current_launch()
    if active is None and getattr(session, "sid", None):
        for launch_id in launcher().launches.list_for_session(session.sid):
            active = launcher().get(launch_id, session.sid)
            if active is not None and active.context.local_practitioner:
                break
            active = None
    if active is None or not active.context.local_practitioner \
            or active.context.user_type != "Practitioner":
        return None
    return active


def _launch_iss() -> str | None:
    """Whom to sign in with: the sandbox EHR when it runs, else the only registered EHR."""
    if app_state().sandbox is not None:
        return fhir_base()
    registered = list(launcher().registry)
    return registered[0].iss if len(registered) == 1 else None


@bp.get("/alerts/<flag_id>")
def open_alert(flag_id: str) -> Any:
    """Open the dashboard where this risk flag is acknowledged (signing in first if needed)."""
    if not _FHIR_ID.match(flag_id):
        return _error(404, "No such alert", "This alert link is not valid.")
    active = _clinician_launch()
    if active is None:
        iss = _launch_iss()
        if iss is None:
            return _error(401, "Open hw-fhir from your EHR",
                          "Sign in to hw-fhir from your EHR, then open this link again: the "
                          "alert is on the patient's dashboard.")
        session_id()  # the session must exist to remember the link
        session[AFTER_LAUNCH_KEY] = url_for("alert_links.open_alert", flag_id=flag_id)
        return redirect(url_for("launch.launch", iss=iss))
    store = app_state().services.store
    try:
        flag = store.read("Flag", flag_id).resource
    except NotFound:
        flag = None
    subject = str(((flag or {}).get("subject") or {}).get("reference") or "")
    if not subject.startswith("Patient/"):
        return _error(404, "No such alert", "This alert is not here any more.")
    pid = subject.split("/", 1)[1]
    ctx = active.context
    if pid != ctx.local_patient and not panel_access(ctx.scope):  # as the clinician pages decide
        return _error(403, "This alert is about another patient",
                      "Your launch is open for another patient. Open hw-fhir from the chart of "
                      "the patient the alert is about; it is on top of their dashboard.")
    target = url_for("clinician.dashboard", pid=pid, **{LAUNCH_ARG: active.id})
    return redirect(f"{target}#flag-{flag_id}")
