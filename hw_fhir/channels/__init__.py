"""Reminder channels: the contract, and the built-in email, Web Push, EHR-inbox and webhook channels."""

from .base import PARTICIPATION_MODE, Channel, Delivery, Message, medium, telecom
from .email import EmailChannel
from .fhir_inbox import FhirInboxChannel
from .webhook import WebhookChannel, sign, verify_signature
from .webpush import WebPushChannel

__all__ = [
    "PARTICIPATION_MODE",
    "Channel",
    "Delivery",
    "Message",
    "EmailChannel",
    "FhirInboxChannel",
    "WebhookChannel",
    "WebPushChannel",
    "medium",
    "sign",
    "telecom",
    "verify_signature",
]
