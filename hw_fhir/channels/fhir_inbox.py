"""The EHR inbox channel: a FHIR ``Communication`` created on the EHR's own FHIR server.

For EHRs that show Communications in a clinician's (or patient portal's) inbox. The
Communication is created through :class:`~hw_fhir.store.remote.RemoteStore` with a
conditional create on its identifier (``http://hw-fhir.org/fhir/sid/communication-attempt|<key>``),
so a retry — even of an attempt interrupted mid-request — never creates a second one.

Guarantee: exactly once (the EHR's conditional create de-duplicates by identifier).
Config-file table ``[ehr_inbox]``: ``fhir_base`` (the EHR's FHIR base URL),
``token`` (a bearer token; the write-back outbox's Backend Services token provider
can be passed in code instead), ``patients`` (also deliver patient reminders to the
portal inbox; default false: clinicians' alerts only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from ..errors import (
    BusinessRuleError,
    Forbidden,
    HwFhirError,
    InvalidInput,
    PermanentDeliveryError,
    RemoteError,
    TransientDeliveryError,
    Unauthorized,
)
from ..store.remote import RemoteStore
from .base import Delivery, Message, medium

__all__ = ["FhirInboxChannel", "ATTEMPT_SYSTEM"]

ATTEMPT_SYSTEM = "http://hw-fhir.org/fhir/sid/communication-attempt"
_CATEGORY_SYSTEM = "http://hw-fhir.org/fhir/CodeSystem/communication-category"


class FhirInboxChannel:
    """Create a Communication in the EHR's FHIR server for the recipient's inbox."""

    name = "ehr-inbox"
    medium = medium("ONLINEWRIT", "online written")
    guarantee = "Exactly once: conditional create on the attempt's identifier at the EHR."
    #: a repeat of an attempt's key is de-duplicated by the EHR: sends are recorded per batch
    deduplicates = True

    def __init__(self, fhir_base: str, *, token_provider: Callable[..., str | None] | None = None,
                 patients: bool = False, store: Any = None, retries: int = 1) -> None:
        self.fhir_base = fhir_base.rstrip("/")
        self.patients = patients
        self.store = store or RemoteStore(self.fhir_base, token_provider=token_provider,
                                          retries=retries)

    @classmethod
    def from_settings(cls, settings: Any) -> "FhirInboxChannel | None":
        """Build the channel from the ``[ehr_inbox]`` config table, or None when not configured."""
        conf = (getattr(settings, "extra", None) or {}).get("ehr_inbox") or {}
        if not conf.get("fhir_base"):
            return None
        token = conf.get("token")
        return cls(conf["fhir_base"], token_provider=(lambda **_: token) if token else None,
                   patients=bool(conf.get("patients", False)))

    def address(self, recipient: Mapping[str, Any]) -> str | None:
        """Return the recipient's reference (practitioners always; patients when enabled)."""
        kind = recipient.get("resourceType")
        if kind in ("Practitioner", "PractitionerRole") or (kind == "Patient" and self.patients):
            return f"{kind}/{recipient.get('id')}"
        return None

    def communication(self, message: Message) -> dict[str, Any]:
        """Return the Communication created at the EHR for a message."""
        category = "risk-alert" if message.kind == "alert" else "reminder"
        comm: dict[str, Any] = {
            "resourceType": "Communication",
            "identifier": [{"system": ATTEMPT_SYSTEM, "value": message.idempotency_key}],
            "status": "completed",
            "category": [{"coding": [{"system": _CATEGORY_SYSTEM, "code": category}]}],
            "priority": message.priority,
            "medium": [self.medium],
            "recipient": [{"reference": message.to or message.recipient}],
            "sent": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "payload": [{"contentString": f"{message.subject}\n\n{message.text}"}],
        }
        if message.about:
            comm["about"] = [{"reference": ref} for ref in message.about]
        return comm

    def send(self, message: Message) -> Delivery:
        """Create the Communication (conditionally); map errors to retry or permanent failure."""
        comm = self.communication(message)
        criteria = f"identifier={ATTEMPT_SYSTEM}|{message.idempotency_key}"
        try:
            result = self.store.create(comm, if_none_exist=criteria)
        except (InvalidInput, BusinessRuleError, Forbidden) as exc:
            raise PermanentDeliveryError(f"The EHR refused the message: {exc.message}") from None
        except Unauthorized as exc:
            raise TransientDeliveryError(f"The EHR refused our credentials: {exc.message}") from None
        except RemoteError as exc:
            raise TransientDeliveryError(f"The EHR is unavailable: {exc.message}",
                                         maybe_sent=True) from None
        except HwFhirError as exc:
            raise TransientDeliveryError(f"The EHR failed: {exc.message}", maybe_sent=True) from None
        return Delivery(status="completed", vendor_id=result.stored.id,
                        vendor_system=f"{self.fhir_base}/Communication")
