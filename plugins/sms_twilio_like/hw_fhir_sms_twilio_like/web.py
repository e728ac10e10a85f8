"""Flask callbacks of the SMS vendor: delivery status and inbound messages (STOP)."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, Response, abort, current_app, request

from hw_fhir.reminders import opt_out, update_delivery_status

from .channel import SID_SYSTEM, STATUS_MAP, signature

__all__ = ["blueprint", "STOP_WORDS"]

log = logging.getLogger("hw_fhir_sms_twilio_like")

#: Replies that opt a number out of SMS (the carriers' standard keywords).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _services() -> Any:
    return current_app.extensions["hw_fhir"]


def _config() -> dict[str, Any]:
    return dict((_services().settings.extra or {}).get("sms") or {})


def _check_signature() -> None:
    """Refuse (403) a callback not signed with our auth token for the URL it was sent to."""
    conf = _config()
    token = conf.get("auth_token")
    if not token:
        abort(404)
    base = (_services().settings.base_url or request.host_url).rstrip("/")
    url = base + request.full_path.rstrip("?")
    sent = request.headers.get("X-Twilio-Signature", "")
    expected = signature(token, url, request.form.to_dict())
    if not sent or not hmac.compare_digest(sent, expected):
        abort(403)


def _status() -> Response:
    _check_signature()
    sid = request.form.get("MessageSid", "")
    vendor_status = request.form.get("MessageStatus", "")
    status = STATUS_MAP.get(vendor_status)
    if not sid or status is None:
        return Response("unknown status", status=400)
    code = request.form.get("ErrorCode")
    reason = f"SMS {vendor_status}" + (f" (error {code})" if code else "") if status == "not-done" else None
    found = update_delivery_status(_services(), vendor_system=SID_SYSTEM, vendor_id=sid,
                                   status=status, reason=reason)
    if found is None:
        log.info("Status callback for an unknown message")
    return Response("", status=204)


def _inbound() -> Response:
    _check_signature()
    body = (request.form.get("Body") or "").strip().upper()
    number = request.form.get("From") or ""
    if body in STOP_WORDS and number:
        services = _services()
        for system in ("sms", "phone"):
            page = services.store.search("Patient", [("telecom", f"{system}|{number}")])
            for stored in page.matches:
                opt_out(services, stored.id, "sms")
    return Response(_TWIML, mimetype="application/xml")


def blueprint() -> Blueprint:
    """Return the blueprint serving ``/plugins/sms/status`` and ``/plugins/sms/inbound``."""
    bp = Blueprint("sms_twilio_like", __name__, url_prefix="/plugins/sms")
    for rule, view in (("/status", _status), ("/inbound", _inbound)):
        view.csrf_exempt = True  # type: ignore[attr-defined]  # signed by the vendor instead
        bp.add_url_rule(rule, view.__name__.strip("_"), view, methods=["POST"])
    return bp
