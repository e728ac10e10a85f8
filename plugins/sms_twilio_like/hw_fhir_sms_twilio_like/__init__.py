"""hw-fhir plugin: an ``sms`` reminder channel over a Twilio-style Messages REST API.

Configure it in the hw-fhir config file (``HW_FHIR_CONFIG``)::

    [sms]
    account_sid = "AC..."
    auth_token = "..."
    from_number = "+15550100"          # or messaging_service_sid = "MG..."
    api_base = "https://api.twilio.com" # the vendor's API (a test server in tests)

Delivery-status callbacks (``POST /plugins/sms/status``) and inbound messages
(``POST /plugins/sms/inbound``: ``STOP`` opts the patient out of SMS) are served by
the Flask blueprint this plugin registers; both check the vendor's
``X-Twilio-Signature`` (HMAC-SHA1 of the URL and the sorted form fields).
"""

from __future__ import annotations

from typing import Any

from hw_fhir.hookspecs import hookimpl

from .channel import SID_SYSTEM, SmsChannel, signature
from .web import blueprint

__all__ = ["SmsChannel", "SID_SYSTEM", "signature", "register_channels", "register_blueprints"]


@hookimpl
def register_channels(settings: Any) -> list[Any]:
    """Return the ``sms`` channel when the ``[sms]`` table configures it."""
    channel = SmsChannel.from_settings(settings)
    return [channel] if channel is not None else []


@hookimpl
def register_blueprints(settings: Any) -> list[Any]:
    """Return the delivery-status and inbound-message callbacks."""
    return [blueprint()]
