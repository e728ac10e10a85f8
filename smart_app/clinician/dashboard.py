"""The patient dashboard, the panel, and acknowledging risk flags (views only)."""

from __future__ import annotations

from typing import Any

from flask import g, render_template, request
from markupsafe import Markup

from hw_fhir import outcomes, review, sharing
from hw_fhir.flag_history import acknowledged_flags
from hw_fhir.errors import HwFhirError, VersionConflict

from .assign import quick_picks
from .base import bp, clinician, go, load_clinician, now, page, patient_or_404, store

__all__ = ["index", "dashboard", "panel", "share_scores", "acknowledge_flag", "landing"]


@bp.get("/")
def index() -> Any:
    """Open the patient in context, else the clinician's panel."""
    who = clinician()
    if who.patient_id:
        return go("clinician.dashboard", pid=who.patient_id)
    return go("clinician.panel")


def _dashboard_context(pid: str) -> dict[str, Any]:
    patient = patient_or_404(pid)
    dash = review.patient_dashboard(store(), pid, now=now(), zone=review.patient_zone(patient))
    fresh = not dash.assignments and not dash.responses and not dash.adherence.assigned
    return {
        "patient": patient,
        "dash": dash,
        "quick": quick_picks() if fresh else [],
        "scores_shared": review.scores_shared(patient),
        "acknowledged": acknowledged_flags(store(), pid),
    }


@bp.get("/patients/<pid>")
def dashboard(pid: str) -> Any:
    """Show a patient's dashboard."""
    return page("clinician/dashboard.html", nav_active="dashboard", **_dashboard_context(pid))


@bp.get("/panel")
def panel() -> Any:
    """Show the clinician's patients, those needing attention first."""
    who = clinician()
    if not who.user_access:
        return page(
            "clinician/error.html",
            403,
            title="The panel is not available",
            message="Your EHR granted access to this patient only. Open other patients' "
            "charts in your EHR.",
        )
    return page(
        "clinician/panel.html",
        nav_active="panel",
        entries=review.panel(store(), who.practitioner, now=now()),
    )


@bp.post("/patients/<pid>/share-scores")
def share_scores(pid: str) -> Any:
    """Show the patient their measure scores and trend (or stop showing them)."""
    patient_or_404(pid)
    choice = request.form.get("share")
    if choice not in ("yes", "no"):
        return page(
            "clinician/error.html",
            400,
            title="Nothing was changed",
            message="Choose whether the patient should see their scores.",
        )
    try:
        sharing.share_scores(store(), pid, choice == "yes")
    except VersionConflict:
        return page(
            "clinician/error.html",
            409,
            title="Nothing was changed",
            message="The patient's record changed meanwhile. Open the dashboard again and "
            "make your choice there.",
        )
    notice = "scores-shared" if choice == "yes" else "scores-private"
    return go("clinician.dashboard", pid=pid, notice=notice)


@bp.post("/patients/<pid>/flags/<flag_id>/acknowledge")
def acknowledge_flag(pid: str, flag_id: str) -> Any:
    """Acknowledge a risk flag (with an optional note): the Flag ends, its alerts close."""
    patient_or_404(pid)
    flag = store().read("Flag", flag_id).resource
    if (flag.get("subject") or {}).get("reference") != f"Patient/{pid}":
        return page(
            "clinician/error.html",
            404,
            title="Not found",
            message="This flag is not about this patient.",
        )
    outcomes.acknowledge_flag(
        store(), flag_id, clinician().practitioner, request.form.get("note") or None, now=now()
    )
    return go("clinician.dashboard", pid=pid, notice="flag-acknowledged")


def landing() -> Markup:
    """Return the dashboard (patient in context) or the panel, for the launch landing page."""
    try:
        g.clinician = g.get("clinician") or load_clinician()
    except HwFhirError as exc:
        return Markup(render_template("clinician/_landing_error.html", message=exc.message))
    who = clinician()
    if who.patient_id:
        context = _dashboard_context(who.patient_id)
        return Markup(
            render_template(
                "clinician/_dashboard.html",
                clin=who,
                nav_active="dashboard",
                zone=review.patient_zone(context["patient"]),
                **context,
            )
        )
    entries = review.panel(store(), who.practitioner, now=now()) if who.user_access else []
    return Markup(
        render_template(
            "clinician/_panel.html", clin=who, patient=None, nav_active="panel", entries=entries
        )
    )
