"""An assignment as asked for (:class:`Assignment`, checked when made) and what carrying
out an assignment, an edit or a cancellation wrote (:class:`AssignResult`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput, Issue
from ..schedule import Schedule
from .details import HomeworkDetails, detail_issues
from .references import encounter_reference, reference

#: What an idempotency key may be (it becomes an identifier value and a search value).
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, kw_only=True)
class Assignment:
    """One activity for one patient, on a schedule, tailored by the clinician.

    ``activity`` is a Questionnaire canonical ``url|version`` (a bare url means its newest
    active version), ``Questionnaire/<id>`` or an id. ``schedule`` with frequency
    ``once`` makes a single Task due at its start date and time; any other frequency a
    CarePlan with Tasks per occurrence. ``encounter`` is the session it was agreed in.
    ``idempotency_key`` (1–64 letters, digits, ``-`` and ``_``), when given, makes the
    request safe to send twice: the second gets what the first wrote.
    """

    patient: str
    practitioner: str
    activity: str
    schedule: Schedule
    instructions: str = ""
    rationale: str = ""
    example: str = ""
    wording: str = "homework"
    confidence: int | None = None
    reminder_channel: str | None = None
    encounter: str | None = None
    title: str | None = None
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        issues = detail_issues(self)
        for name, kind in (("patient", "Patient"), ("practitioner", "Practitioner")):
            try:
                object.__setattr__(self, name, reference(kind, getattr(self, name)))
            except InvalidInput as exc:
                issues.append(Issue(exc.message, expression=name))
        if self.encounter is not None:
            try:
                object.__setattr__(self, "encounter", encounter_reference(self.encounter))
            except InvalidInput as exc:
                issues.append(Issue(exc.message, expression="encounter"))
        if not isinstance(self.activity, str) or not self.activity.strip():
            issues.append(
                Issue("activity (the Questionnaire to complete) is required", expression="activity")
            )
        if self.idempotency_key is not None and not _KEY.fullmatch(str(self.idempotency_key)):
            issues.append(
                Issue(
                    "idempotency_key must be 1 to 64 letters, digits, '-' or '_'",
                    expression="idempotency_key",
                )
            )
        if not isinstance(self.schedule, Schedule):
            issues.append(Issue("schedule must be a Schedule", expression="schedule"))
        if issues:
            raise InvalidInput(
                "Invalid assignment: " + "; ".join(i.message for i in issues), issues=issues
            )

    @property
    def details(self) -> HomeworkDetails:
        """The tailoring part of the assignment."""
        return HomeworkDetails(
            instructions=self.instructions,
            rationale=self.rationale,
            example=self.example,
            wording=self.wording,
            confidence=self.confidence,
            reminder_channel=self.reminder_channel,
        )


@dataclass(frozen=True)
class AssignResult:
    """What an assignment wrote: the Tasks, the CarePlan (recurring), and warnings."""

    tasks: tuple[dict[str, Any], ...]
    plan: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def task(self) -> dict[str, Any] | None:
        """The first Task (the only one of a one-off assignment), or None."""
        return self.tasks[0] if self.tasks else None
