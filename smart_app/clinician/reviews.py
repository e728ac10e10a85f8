"""Reviewing homework: one response, two side by side, and the session-prep page (views only)."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import request

from hw_fhir import outcomes, review
from hw_fhir.errors import InvalidInput, NotFound
from hw_fhir.store.base import iter_all

from .base import bp, now, page, patient_or_404, settings, store

__all__ = ["response", "compare", "session_prep"]


def _response(rid: str, pid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = store().read("QuestionnaireResponse", rid).resource
    if (found.get("subject") or {}).get("reference") != f"Patient/{pid}":
        raise NotFound("This response is not this patient's.")
    return outcomes.resolve_for(store(), found), found


def _flags_for(pid: str, rid: str) -> list[dict[str, Any]]:
    out = []
    for flag in iter_all(store(), "Flag", [("patient", f"Patient/{pid}"), ("status", "active")]):
        for ext in flag.get("extension") or []:
            if (
                ext.get("url") == outcomes.FLAG_DETAIL_EXTENSION
                and (ext.get("valueReference") or {}).get("reference")
                == f"QuestionnaireResponse/{rid}"
            ):
                out.append(flag)
    return out


@bp.get("/patients/<pid>/responses/<rid>")
def response(pid: str, rid: str) -> Any:
    """Show a completed response: questions and answers side by side, scores, flagged answers."""
    patient = patient_or_404(pid)
    questionnaire, found = _response(rid, pid)
    url = str(found.get("questionnaire") or "").split("|")[0]
    others = [
        r
        for r in store()
        .search(
            "QuestionnaireResponse",
            [
                ("patient", f"Patient/{pid}"),
                ("questionnaire", url),
                ("status", "completed,amended"),
                ("_sort", "-authored"),
                ("_count", "20"),
            ],
        )
        .resources
        if r["id"] != rid
    ]
    return page(
        "clinician/response.html",
        patient=patient,
        nav_active="dashboard",
        view=review.response_view(questionnaire, found),
        others=others,
        flags=(flags := _flags_for(pid, rid)),
        shown=outcomes.crisis_resources(settings(), patient=patient) if flags else None,
    )


@bp.get("/patients/<pid>/compare")
def compare(pid: str) -> Any:
    """Show two completions of the same activity side by side (before and after)."""
    patient = patient_or_404(pid)
    first, second = request.args.get("a", ""), request.args.get("b", "")
    if not first or not second or first == second:
        raise InvalidInput("Choose two different completions to compare.")
    comparison = review.compare_responses(_response(first, pid), _response(second, pid))
    return page("clinician/compare.html", patient=patient, nav_active="dashboard", cmp=comparison)


@bp.get("/patients/<pid>/session-prep")
def session_prep(pid: str) -> Any:
    """Show everything since the last session with prompts for the review, ready to print."""
    patient = patient_or_404(pid)
    raw = request.args.get("since", "").strip()
    since = None
    error = None
    if raw:
        try:
            since = date.fromisoformat(raw)
        except ValueError:
            error = f"“{raw}” is not a date; use YYYY-MM-DD."
        else:
            if since > now().date():
                error, since = "The last session cannot be in the future.", None
    prep = review.session_prep(store(), pid, since, now=now(), zone=review.patient_zone(patient))
    return page(
        "clinician/session_prep.html",
        400 if error else 200,
        patient=patient,
        nav_active="prep",
        prep=prep,
        since_error=error,
    )
