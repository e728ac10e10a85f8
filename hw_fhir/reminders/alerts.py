"""Clinician risk alerts: who an alert goes to, escalating one no channel delivered, completing it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ..errors import DeliveryError, NotFound, VersionConflict
from .batch import BatchContext, read_resource
from .clock import now_text
from .escalation import escalate
from .queue import reference_id

__all__ = ["alert_recipient", "alert_link", "escalate_undelivered", "complete_alert"]

#: Path of the page an alert email links to (``smart_app.alert_links``): the Flag's opaque
#: id only; it opens the patient's dashboard at the flag, signing the clinician in first.
ALERT_PATH = "/alerts/{flag_id}"


def escalate_undelivered(ctx: BatchContext, job: Any, request: Mapping[str, Any],
                         error: DeliveryError) -> dict[str, Any]:
    """Escalate an alert no channel delivered; return the job's new state."""
    if request.get("id") and escalate(ctx.services, request["id"], now=ctx.now,
                                      reason=f"could not be delivered: {error.message}"):
        return {"status": "escalated"}
    # the chain is exhausted: try everyone's channels again later; it stays on screen meanwhile
    return {"status": "pending", "failed_channels": None,
            "due_at": now_text(ctx.now + timedelta(seconds=ctx.policy.alert_retry_cap_seconds))}


def alert_recipient(ctx: BatchContext, request: Mapping[str, Any], job: Any = None) -> str | None:
    """Return the clinician an alert job goes to: the recipient of its escalation level
    (``alert/<id>/<level>``; the first recipient for ``alert/<id>``), else the patient's GP."""
    level = int(job.id.split("/")[2]) if job is not None and job.id.count("/") == 2 else 0
    told = [str(r.get("reference") or "") for r in request.get("recipient") or []]
    told = [ref for ref in told if ref.startswith(("Practitioner/", "PractitionerRole/"))]
    if told:
        return told[min(level, len(told) - 1)]
    patient = read_resource(ctx, "Patient", reference_id((request.get("subject") or {}).get("reference"),
                                            "Patient"))
    for gp in (patient or {}).get("generalPractitioner") or []:
        ref = str(gp.get("reference") or "")
        if ref.startswith(("Practitioner/", "PractitionerRole/")):
            return ref
    return None


def alert_link(base_url: str | None, request: Mapping[str, Any]) -> str | None:
    """Return the link of an alert's message: where its Flag is acknowledged (no PHI in it).

    None without ``HW_FHIR_BASE_URL``; the app's root when the alert names no Flag.
    """
    if not base_url:
        return None
    base = base_url.rstrip("/")
    for about in request.get("about") or []:
        flag_id = reference_id(str(about.get("reference") or ""), "Flag")
        if flag_id:
            return base + ALERT_PATH.format(flag_id=flag_id)
    return f"{base}/"


def complete_alert(store: Any, request: Mapping[str, Any]) -> None:
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
