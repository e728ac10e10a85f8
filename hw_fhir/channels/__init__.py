"""Reminder channels: the contract, and the built-in email, EHR-inbox and webhook channels."""

from .base import PARTICIPATION_MODE, Channel, Delivery, Message, medium, telecom
from .email import EmailChannel
from .fhir_inbox import FhirInboxChannel
from .webhook import WebhookChannel, sign, verify_signature

__all__ = [
    "PARTICIPATION_MODE",
    "Channel",
    "Delivery",
    "Message",
    "EmailChannel",
    "FhirInboxChannel",
    "WebhookChannel",
    "medium",
    "sign",
    "telecom",
    "verify_signature",
]
