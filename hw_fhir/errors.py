"""The one exception tree of hw-fhir.

::

    HwFhirError                      base of everything raised on purpose
    ├── ConfigurationError           bad or contradictory settings (CLI/start-up)
    ├── InvalidInput                 400: malformed JSON, invalid resource, bad parameter
    │   ├── InvalidResource          the resource fails R4 validation (.issues)
    │   ├── InvalidSearch            unknown/malformed search parameter, bad _count...
    │   └── InvalidResponse          a QuestionnaireResponse fails its Questionnaire (.issues)
    ├── NotFound                     404: no such resource / version
    │   └── Gone                     410: the resource was deleted
    ├── Conflict                     409: the write clashes with stored state
    │   └── VersionConflict          412: If-Match names a version that is not current
    ├── BusinessRuleError            422: well-formed, but not allowed by a domain rule
    ├── Forbidden                    403: authenticated, but the scopes/context do not allow it
    ├── Unauthorized                 401: no or bad credentials
    └── RemoteError                  a remote FHIR server failed (.response)

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
    "InvalidInput",
    "InvalidResource",
    "InvalidSearch",
    "InvalidResponse",
    "NotFound",
    "Gone",
    "Conflict",
    "VersionConflict",
    "BusinessRuleError",
    "Forbidden",
    "Unauthorized",
    "RemoteError",
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


class InvalidInput(HwFhirError):
    """The request or its content is malformed."""

    status = 400
    code = "invalid"


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


class BusinessRuleError(HwFhirError):
    """Well-formed, but a domain rule forbids it."""

    status = 422
    code = "business-rule"


class Forbidden(HwFhirError):
    """The granted scopes or launch context do not allow this access."""

    status = 403
    code = "forbidden"


class Unauthorized(HwFhirError):
    """No credentials, or credentials that are not valid."""

    status = 401
    code = "login"


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
