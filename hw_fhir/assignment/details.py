"""What the clinician agrees with the patient: instructions, why, an example, wording,
confidence and reminder channel (:class:`HomeworkDetails`), their checks, and how they are
written on a Task and on a CarePlan activity."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput, Issue
from .extensions import extension, extension_value, without_extensions
from .vocabulary import (
    EXT_EXAMPLE,
    EXT_HOMEWORK_LABEL,
    EXT_NOTE_KIND,
    EXT_PATIENT_CONFIDENCE,
    EXT_RATIONALE,
    EXT_REMINDER_CHANNEL,
    LOW_CONFIDENCE,
)

_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True, kw_only=True)
class HomeworkDetails:
    """The tailoring of one assignment: instructions, why, an example, wording, confidence."""

    instructions: str = ""
    rationale: str = ""
    example: str = ""
    wording: str = "homework"
    confidence: int | None = None
    reminder_channel: str | None = None

    def __post_init__(self) -> None:
        issues = detail_issues(self)
        if issues:
            raise InvalidInput(
                "Invalid assignment: " + "; ".join(i.message for i in issues), issues=issues
            )
        for name in ("instructions", "rationale", "example", "wording"):
            object.__setattr__(self, name, getattr(self, name).strip())
        if not self.wording:
            object.__setattr__(self, "wording", "homework")

    @property
    def warnings(self) -> tuple[str, ...]:
        """Advice for the clinician, e.g. when the patient's confidence is low."""
        if self.confidence is not None and self.confidence < LOW_CONFIDENCE:
            return (
                f"The patient's confidence is {self.confidence}/10. Homework is done more often "
                f"when the patient is at least {LOW_CONFIDENCE}/10 confident: consider a smaller "
                "or easier step, or agreeing on it together.",
            )
        return ()

    def _common_extensions(self) -> list[dict[str, Any]]:
        out = [extension(EXT_HOMEWORK_LABEL, "valueString", self.wording)]
        if self.confidence is not None:
            out.append(extension(EXT_PATIENT_CONFIDENCE, "valueInteger", self.confidence))
        if self.reminder_channel:
            out.append(extension(EXT_REMINDER_CHANNEL, "valueCode", self.reminder_channel))
        return out

    def apply_to_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Return a copy of a Task carrying these details (description, note, extensions)."""
        out = dict(task)
        out.pop("description", None)
        if self.instructions:
            out["description"] = self.instructions
        notes = [n for n in task.get("note") or [] if extension_value(n, EXT_NOTE_KIND) is None]
        for kind, text in (("rationale", self.rationale), ("example", self.example)):
            if text:
                notes.append({"extension": [extension(EXT_NOTE_KIND, "valueCode", kind)], "text": text})
        out.pop("note", None)
        if notes:
            out["note"] = notes
        extensions = without_extensions(task, _DETAIL_EXTENSIONS) + self._common_extensions()
        out["extension"] = extensions
        return out

    def apply_to_detail(self, detail: Mapping[str, Any]) -> dict[str, Any]:
        """Return a copy of a CarePlan.activity.detail carrying these details."""
        out = dict(detail)
        out.pop("description", None)
        if self.instructions:
            out["description"] = self.instructions
        extensions = without_extensions(detail, _DETAIL_EXTENSIONS) + self._common_extensions()
        if self.rationale:
            extensions.append(extension(EXT_RATIONALE, "valueString", self.rationale))
        if self.example:
            extensions.append(extension(EXT_EXAMPLE, "valueString", self.example))
        out["extension"] = extensions
        return out

    @classmethod
    def from_task(cls, task: Mapping[str, Any]) -> "HomeworkDetails":
        """Read the details back from a Task."""
        notes = {extension_value(n, EXT_NOTE_KIND): n.get("text", "") for n in task.get("note") or []}
        return cls(
            instructions=task.get("description") or "",
            rationale=notes.get("rationale") or "",
            example=notes.get("example") or "",
            wording=extension_value(task, EXT_HOMEWORK_LABEL) or "homework",
            confidence=extension_value(task, EXT_PATIENT_CONFIDENCE),
            reminder_channel=extension_value(task, EXT_REMINDER_CHANNEL),
        )

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> "HomeworkDetails":
        """Read the details back from a CarePlan.activity.detail."""
        return cls(
            instructions=detail.get("description") or "",
            rationale=extension_value(detail, EXT_RATIONALE) or "",
            example=extension_value(detail, EXT_EXAMPLE) or "",
            wording=extension_value(detail, EXT_HOMEWORK_LABEL) or "homework",
            confidence=extension_value(detail, EXT_PATIENT_CONFIDENCE),
            reminder_channel=extension_value(detail, EXT_REMINDER_CHANNEL),
        )


_DETAIL_EXTENSIONS = (
    EXT_HOMEWORK_LABEL,
    EXT_PATIENT_CONFIDENCE,
    EXT_REMINDER_CHANNEL,
    EXT_RATIONALE,
    EXT_EXAMPLE,
)


def detail_issues(details: Any) -> list[Issue]:
    """Return what is wrong with the tailoring fields of details or an assignment."""
    issues = []
    for name in ("instructions", "rationale", "example", "wording"):
        if not isinstance(getattr(details, name), str):
            issues.append(Issue(f"{name} must be text", expression=name))
    confidence = details.confidence
    if confidence is not None and (
        isinstance(confidence, bool) or not isinstance(confidence, int) or not 0 <= confidence <= 10
    ):
        issues.append(
            Issue(
                f"confidence must be a whole number from 0 to 10 (got {confidence!r})",
                expression="confidence",
            )
        )
    channel = details.reminder_channel
    if channel is not None and (not isinstance(channel, str) or not _CHANNEL.match(channel)):
        issues.append(
            Issue(
                f"reminder_channel must be a channel code such as 'email' or 'sms' "
                f"(got {channel!r})",
                expression="reminder_channel",
            )
        )
    if isinstance(details.wording, str) and len(details.wording) > 60:
        issues.append(
            Issue("wording must be a short label (60 characters at most)", expression="wording")
        )
    return issues
