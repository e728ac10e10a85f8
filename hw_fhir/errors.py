"""The one exception tree of hw-fhir.

::

    HwFhirError                      base of everything raised on purpose
    ├── ConfigurationError           bad or contradictory settings (CLI/start-up)
    │   └── BackendServicesMisconfigured  a Backend Services token needs token_url or fhir_base
    ├── InvalidInput                 400: malformed JSON, invalid resource, bad parameter
    │   ├── InvalidResource          the resource fails R4 validation (.issues)
    │   ├── InvalidSearch            unknown/malformed search parameter, bad _count...
    │   ├── InvalidResponse          a QuestionnaireResponse fails its Questionnaire (.issues)
    │   ├── EgressRefused            422: an outbound URL or header the egress policy refuses
    │   ├── LimitExceeded            413/422: a resource over a configured size/depth/count limit
    │   ├── InvalidEncoding          text not in its required encoding (base64url...)
    │   ├── UnsupportedLanguage      a language hw-fhir has no translation for
    │   ├── UnknownExportLevel       a bulk export level other than system, patient or group
    │   ├── ExpressionFailure        a FHIRPath expression cannot be parsed or evaluated
    │   └── AmbiguousWeight          a code weighs differently in different items
    ├── NotFound                     404: no such resource / version
    │   └── Gone                     410: the resource was deleted
    ├── Conflict                     409: the write clashes with stored state
    │   ├── VersionConflict          412: If-Match names a version that is not current
    │   └── ExportCancelled          a running bulk export was cancelled or taken over
    ├── BusinessRuleError            422: well-formed, but not allowed by a domain rule
    │   ├── UnresolvedReference      a record cannot be written back yet: the EHR could not
    │   │                            resolve a reference in it (.reference)
    │   └── AlreadyAssigned          the patient has this activity assigned and active
    │                                already (.existing: those assignments' references)
    ├── Forbidden                    403: authenticated, but the scopes/context do not allow it
    ├── Unauthorized                 401: no or bad credentials
    ├── Throttled                    429: too many requests or jobs at once (.retry_after)
    ├── RemoteError                  a remote FHIR server failed (.response)
    ├── LinkError                    403: a secure patient link cannot be opened (.reason)
    │   ├── LinkTampered             the token is malformed or its signature is wrong
    │   ├── LinkExpired              410: the link's lifetime has passed
    │   ├── LinkRevoked              410: the link was revoked (or locked after wrong birth dates)
    │   ├── LinkWrongPatient         the link belongs to another patient (or a wrong birth date)
    │   └── BirthDateRequired        401: the link needs the patient's date of birth
    └── DeliveryError                a reminder channel could not deliver (.permanent, .retry_after)
        ├── TransientDeliveryError   try again later (.maybe_sent: the message may have left)
        │   └── HeldDeliveryError    waits for a fix on our side (a setting, a channel, an address); never final
        └── PermanentDeliveryError   retrying cannot help (bad address, refused, opted out)

Every error carries an HTTP ``status`` and builds an OperationOutcome with
:meth:`HwFhirError.outcome`; views map them to HTTP in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Issue",
    "HwFhirError",
    "ConfigurationError",
    "BackendServicesMisconfigured",
    "InvalidInput",
    "InvalidResource",
    "UnknownEvent",
    "WrongEventArguments",
    "InvalidSearch",
    "InvalidResponse",
    "EgressRefused",
    "LimitExceeded",
    "InvalidEncoding",
    "UnsupportedLanguage",
    "UnknownExportLevel",
    "ExpressionFailure",
    "AmbiguousWeight",
    "NotFound",
    "Gone",
    "Conflict",
    "VersionConflict",
    "ExportCancelled",
    "BusinessRuleError",
    "UnresolvedReference",
    "AlreadyAssigned",
    "Forbidden",
    "Unauthorized",
    "Throttled",
    "RemoteError",
    "LinkError",
    "LinkTampered",
    "LinkExpired",
    "LinkRevoked",
    "LinkWrongPatient",
    "BirthDateRequired",
    "DeliveryError",
    "TransientDeliveryError",
    "PermanentDeliveryError",
    "HeldDeliveryError",
    "operation_outcome",
]


@dataclass(frozen=True)
class Issue:
    """One problem, as an OperationOutcome.issue: where it is and what is wrong."""

    message: str
    code: str = "invalid"
    severity: str = "error"
    expression: str | None = None

    def as_fhir(self) -> dict[str, Any]:
        """Return this issue as an OperationOutcome.issue element."""
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.message,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """Build an OperationOutcome resource from issues."""
    return {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}


class HwFhirError(Exception):
    """Base of every error hw-fhir raises on purpose."""

    status: int = 500
    code: str = "exception"

    def __init__(self, message: str, *, issues: list[Issue] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues: list[Issue] = issues or [Issue(message, code=self.code)]

    @property
    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome describing this error."""
        return operation_outcome(self.issues)


class ConfigurationError(HwFhirError):
    """Settings are missing, malformed or contradictory."""

    code = "exception"


class BackendServicesMisconfigured(ConfigurationError, ValueError):
    """A Backend Services token provider was given neither a token URL nor a FHIR base."""


class UnitOfWorkClosed(HwFhirError, RuntimeError):
    """A store's unit of work was used outside its ``with`` block (a programming error)."""


class InvalidInput(HwFhirError):
    """The request or its content is malformed."""

    status = 400
    code = "invalid"


class UnknownEvent(InvalidInput, ValueError):
    """A domain event name that is not one of :data:`hw_fhir.hookspecs.DOMAIN_EVENTS`."""


class WrongEventArguments(InvalidInput, TypeError):
    """A domain event published, or a listener subscribed, with arguments the event does not have."""


class InvalidResource(InvalidInput):
    """A resource fails FHIR R4 validation."""

    code = "structure"

    def __init__(
        self, message: str, *, issues: list[Issue] | None = None, resource: Any = None
    ) -> None:
        super().__init__(message, issues=issues)
        self.resource = resource


class InvalidSearch(InvalidInput):
    """A search or history request has an unknown or malformed parameter."""

    code = "not-supported"


class InvalidResponse(InvalidInput):
    """A QuestionnaireResponse does not satisfy its Questionnaire."""

    status = 422
    code = "business-rule"

    def __init__(
        self, message: str, *, issues: list[Issue] | None = None, resource: Any = None
    ) -> None:
        super().__init__(message, issues=issues)
        self.resource = resource


class EgressRefused(InvalidInput):
    """An outbound call the egress policy refuses (:mod:`hw_fhir.egress`)."""

    status = 422
    code = "security"


class LimitExceeded(InvalidInput):
    """A request over a configured limit: 413 for its size, 422 for its shape (depth, counts)."""

    status = 422
    code = "too-costly"

    def __init__(self, message: str, *, status: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        if status is not None:
            self.status = status


class InvalidEncoding(InvalidInput, ValueError):
    """Text is not in the encoding it must be in (e.g. base64url in a push subscription)."""


class UnsupportedLanguage(InvalidInput, ValueError):
    """A language code hw-fhir has no translation for (not in :data:`hw_fhir.i18n.LANGUAGES`)."""


class UnknownExportLevel(InvalidInput, ValueError):
    """A bulk export level other than ``system``, ``patient`` or ``group``."""


class ExpressionFailure(InvalidInput):
    """A FHIRPath expression could not be parsed or evaluated (wrapped by the caller)."""


class AmbiguousWeight(InvalidInput, ValueError):
    """A code carries different weights in different items; weigh it from its answer instead."""


class NotFound(HwFhirError):
    """No resource (or version) with that type and id."""

    status = 404
    code = "not-found"


class Gone(NotFound):
    """The resource existed but has been deleted."""

    status = 410
    code = "deleted"


class Conflict(HwFhirError):
    """The write clashes with what is stored (e.g. a conditional create matching many)."""

    status = 409
    code = "conflict"


class VersionConflict(Conflict):
    """``If-Match`` / expected version is not the current version."""

    status = 412

    def __init__(self, message: str, *, current_version: str | None = None) -> None:
        super().__init__(message)
        self.current_version = current_version


class ExportCancelled(Conflict, RuntimeError):
    """A running bulk export job was cancelled (or taken over by another worker) meanwhile."""


class BusinessRuleError(HwFhirError):
    """Well-formed, but a domain rule forbids it."""

    status = 422
    code = "business-rule"


class UnresolvedReference(BusinessRuleError):
    """A record refers to something the receiving EHR cannot resolve (it waits until it can)."""

    def __init__(self, message: str, *, reference: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reference = reference


class AlreadyAssigned(BusinessRuleError):
    """The patient already has this activity assigned and active (a second would duplicate)."""

    def __init__(self, message: str, *, existing: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.existing = existing


class Forbidden(HwFhirError):
    """The granted scopes or launch context do not allow this access."""

    status = 403
    code = "forbidden"


class Unauthorized(HwFhirError):
    """No credentials, or credentials that are not valid."""

    status = 401
    code = "login"


class Throttled(HwFhirError):
    """Too many requests or jobs at once; try again later."""

    status = 429
    code = "throttled"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers = {"Retry-After": str(retry_after)}


class RemoteError(HwFhirError):
    """A remote FHIR server failed or answered with an error."""

    status = 502
    code = "transient"

    def __init__(
        self,
        message: str,
        *,
        issues: list[Issue] | None = None,
        response: Any = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, issues=issues)
        self.response = response
        if status is not None:
            self.status = status


class LinkError(HwFhirError):
    """A secure patient link cannot be opened; ``reason`` says why (never which patient)."""

    status = 403
    code = "forbidden"
    reason = "invalid"


class LinkTampered(LinkError):
    """The link token is malformed, unknown or its signature does not match."""

    reason = "tampered"


class LinkExpired(LinkError):
    """The link's lifetime has passed."""

    status = 410
    reason = "expired"


class LinkRevoked(LinkError):
    """The link was revoked, or locked after too many wrong birth dates."""

    status = 410
    reason = "revoked"


class LinkWrongPatient(LinkError):
    """The link belongs to another patient than the one opening it (or the birth date is wrong)."""

    reason = "wrong-patient"


class BirthDateRequired(LinkError):
    """The link needs the patient's date of birth as a second factor."""

    status = 401
    code = "login"
    reason = "birth-date-required"


class DeliveryError(HwFhirError):
    """A reminder channel could not deliver a message."""

    status = 502
    code = "transient"
    permanent = False

    def __init__(self, message: str, *, retry_after: float | None = None,
                 maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


class TransientDeliveryError(DeliveryError):
    """Delivery failed for now (server down, rate limited); a later attempt may succeed."""


class HeldDeliveryError(TransientDeliveryError):
    """Delivery waits for a fix on our side, not the recipient's: a setting
    (``HW_FHIR_BASE_URL``), a channel that is not installed, a contact point missing.

    Never final: retried at the retry cap, at once when a worker starts and on
    ``hw-fhir reminders retry``; shown to the clinician with its reason meanwhile.
    """

    held = True


class PermanentDeliveryError(DeliveryError):
    """Delivery can never succeed as asked (bad address, refused, opted out)."""

    code = "processing"
    permanent = True


# -- the web app and SMART (a-app, issue 21) ---------------------------------------------------

__all__ += ["UnsupportedMediaType", "UnsupportedResourceType", "NoCurrentLaunch",
            "SessionInterfaceMissing", "UnsupportedKeyAlgorithm", "NotMirrored"]


class UnsupportedMediaType(InvalidInput):
    """The request body is not in a media type the endpoint takes (415)."""

    status = 415
    code = "not-supported"


class UnsupportedResourceType(InvalidInput):
    """The URL names a resource type this FHIR server does not serve (404)."""

    status = 404
    code = "not-supported"


class NoCurrentLaunch(HwFhirError, LookupError):
    """An EHR client was asked for, but this request belongs to no SMART launch."""


class SessionInterfaceMissing(ConfigurationError, RuntimeError):
    """The database browser-session interface is not installed on the app."""


class UnsupportedKeyAlgorithm(ConfigurationError, ValueError):
    """No signing key can be made for the named JWS algorithm."""


class NotMirrored(InvalidInput, ValueError):
    """Only EHR Patients and Practitioners are mirrored locally; this resource type is not."""


__all__ += ["KeyFileUnreadable"]


class KeyFileUnreadable(ConfigurationError, OSError):
    """A signing-key file exists but cannot be read, nor a new one written in its place."""
