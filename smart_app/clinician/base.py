"""The clinician blueprint's shared parts: who is signed in, which patient, pages, errors.

Every clinician page needs an active SMART launch of this browser session (``?launch=``)
whose user (``fhirUser``) is a Practitioner. A patient's pages are open for the patient
in the launch context, and for any patient when the EHR granted user-level access to
Patient records (``user/Patient.r``), as for the panel. Messages after a redirect travel
as a ``notice`` code in the URL, not in the session, so two tabs never see each other's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, g, redirect, render_template, request
from werkzeug.wrappers import Response

from hw_fhir.errors import Forbidden, HwFhirError, Issue, NotFound, Unauthorized
from hw_fhir.events import Events
from hw_fhir.review import patient_zone
from hw_fhir.smart.mirror import read_local
from hw_fhir.smart.scopes import ScopeSet
from hw_fhir.smart.sessions import Launch

from ..launch import current_launch, human_name, launch_url
from ..state import services
from .style import style_for

__all__ = [
    "bp",
    "Clinician",
    "FieldErrors",
    "NOTICES",
    "clinician",
    "load_clinician",
    "panel_access",
    "store",
    "events",
    "settings",
    "now",
    "patient_or_404",
    "clinician_zone",
    "page",
    "go",
    "field_errors",
]

bp = Blueprint("clinician", __name__, url_prefix="/clinician")

#: Messages shown after a redirect, by the ``notice`` code in the URL.
NOTICES = {
    "flag-acknowledged": "The risk flag is acknowledged and its alerts are closed.",
    "cancelled": "The assignment is cancelled; the patient will not be reminded of it again.",
    "stopped": "The plan is stopped. Work already done is kept.",
    "paused": "The plan is paused: no new homework and no reminders until you resume it.",
    "resumed": "The plan is running again.",
    "skipped": "The step is skipped; the next one is released when it is due.",
    "saved": "Your changes are saved.",
    "edited": "The assignment is updated. Work already done is unchanged.",
    "published": "The activity is published: you can assign it now.",
    "retired": "The activity is retired: it can no longer be assigned.",
    "cloned": "Your own copy is ready to edit. Publish it when it is ready to assign.",
    "new-version": "A new draft version is ready to edit.",
    "scores-shared": "The patient now sees their scores and trend on their progress page.",
    "scores-private": "Scores are no longer shown to the patient.",
    "message-sent": "Your message is sent. The patient is told there is a new message, "
    "without its text.",
    "messaging-on": "The patient can send you messages again.",
    "messaging-off": "Messaging is off for this patient: they can read earlier messages but "
    "not write.",
}


@dataclass(frozen=True)
class Clinician:
    """The signed-in clinician of the current launch."""

    launch: Launch
    practitioner: str
    resource: dict[str, Any] | None
    patient_id: str | None
    user_access: bool

    @property
    def name(self) -> str:
        """The clinician's display name."""
        return human_name(self.resource) or self.practitioner

    @property
    def practitioner_id(self) -> str:
        """The local Practitioner id."""
        return self.practitioner.split("/", 1)[1]


FieldErrors = dict[str, list[str]]


def store() -> Any:
    """Return the app's store."""
    return services().store


def settings() -> Any:
    """Return the app's settings."""
    return services().settings


def events() -> Events:
    """Return the domain event dispatcher (scoring, reminders and sync listen to it)."""
    return services().events


def now() -> datetime:
    """Return the current instant (UTC)."""
    return datetime.now(timezone.utc)


def clinician() -> Clinician:
    """Return the current clinician (set by the blueprint's before_request)."""
    return g.clinician  # type: ignore[no-any-return]


def load_clinician() -> Clinician:
    """Return the clinician of the current launch; Unauthorized/Forbidden when there is none."""
    active = current_launch()
    if active is None:
        raise Unauthorized(
            "Open hw-fhir from your EHR. A launch link only works in the browser "
            "session that started it, and launches expire after 12 hours."
        )
    ctx = active.context
    if ctx.user_type != "Practitioner" or not ctx.local_practitioner:
        raise Forbidden(
            "These pages are for clinicians. Your launch did not sign you in as a Practitioner."
        )
    return Clinician(
        launch=active,
        practitioner=f"Practitioner/{ctx.local_practitioner}",
        resource=read_local(store(), "Practitioner", ctx.local_practitioner),
        patient_id=ctx.local_patient,
        user_access=panel_access(ctx.scope),
    )


def panel_access(scope: str) -> bool:
    """May a launch with ``scope`` open any patient (user/system read of Patient), not only
    its own launch patient?"""
    granted = ScopeSet.parse(scope)
    return any(s.context in ("user", "system") for s in granted.covering("r", "Patient"))


@bp.before_request
def _require_clinician() -> None:
    g.clinician = load_clinician()


def clinician_zone() -> str:
    """The zone clinician pages show completion and risk times in: the Practitioner's own
    (``timezone`` extension), else the practice's (``HW_FHIR_PRACTICE_TIMEZONE``)."""
    own = patient_zone(clinician().resource, default="")
    return own or str(getattr(settings(), "practice_timezone", "UTC") or "UTC")


def patient_or_404(pid: str) -> dict[str, Any]:
    """Return the Patient ``pid`` if the clinician may open it (Forbidden/NotFound otherwise)."""
    who = clinician()
    if pid != who.patient_id and not who.user_access:
        raise Forbidden(
            "This launch is for another patient. Open this patient's chart in your EHR."
        )
    patient = read_local(store(), "Patient", pid)
    if patient is None:
        raise NotFound("There is no such patient here.")
    return patient


def _style() -> dict[str, str]:
    return style_for(clinician().launch.context.smart_style_url) if "clinician" in g else {}


@bp.app_context_processor
def _context() -> dict[str, Any]:
    if request.blueprint != "clinician" and request.endpoint != "launch.home":
        return {}
    extra: dict[str, Any] = {}
    if request.endpoint == "launch.home" and "clinician" not in g:
        try:
            g.clinician = load_clinician()
        except HwFhirError:
            return {}
        extra = {
            "clin": g.clinician,
            "nav_active": "dashboard" if g.clinician.patient_id else "panel",
        }
    return {
        "style_vars": _style() if "clinician" in g else style_for(None),
        "notice_text": NOTICES.get(request.args.get("notice", "")),
        "clin_zone": clinician_zone() if "clinician" in g else "UTC",
        **extra,
    }


def page(
    template: str, status: int = 200, *, patient: dict[str, Any] | None = None, **context: Any
) -> tuple[str, int]:
    """Render a clinician page (the patient, when given, gets the banner and the time zone)."""
    who = clinician()
    return render_template(
        template,
        clin=who,
        launch=who.launch,
        context=who.launch.context,
        patient=patient,
        practitioner=who.resource,
        zone=patient_zone(patient) if patient else "UTC",
        **context,
    ), status


def go(endpoint: str, *, notice: str | None = None, **values: Any) -> Response:
    """Redirect (303) to a clinician page of the same launch, with an optional notice."""
    if notice:
        values["notice"] = notice
    return redirect(launch_url(endpoint, **values), code=303)


def field_errors(
    exc: HwFhirError, fields: dict[str, str] | None = None, default: str = "_form"
) -> FieldErrors:
    """Group an error's issues by form field (``Schedule.until`` → ``until``)."""
    out: FieldErrors = {}
    aliases = fields or {}
    for issue in exc.issues or [Issue(exc.message)]:
        name = (issue.expression or "").split(".")[-1].split("[")[0] or default
        out.setdefault(aliases.get(name, name), []).append(issue.message)
    return out


@bp.errorhandler(HwFhirError)
def _error(exc: HwFhirError) -> Any:
    titles = {
        401: "Please open hw-fhir from your EHR",
        403: "This page is not available to you",
        404: "Not found",
        409: "Something changed meanwhile",
        412: "Something changed meanwhile",
        422: "That could not be done",
    }
    context: dict[str, Any] = {
        "title": titles.get(exc.status, "Something is not right"),
        "message": exc.message,
    }
    if "clinician" in g:
        return page("clinician/error.html", exc.status, **context)
    return render_template(
        "clinician/error.html", clin=None, style_vars=style_for(None), **context
    ), exc.status
