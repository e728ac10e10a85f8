"""Engagement check-ins: reading a patient's ``engagement-check-in`` responses and
summarizing them (:class:`Engagement`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import catalog
from ..assignment import parse_instant
from ..responses import flatten_answers
from ..store.base import Store, iter_all
from .periods import search_instant

#: Check-in ratings (0–10) worth raising at the session.
HIGH_DIFFICULTY = 7
LOW_HELPFULNESS = 3


@dataclass(frozen=True)
class Engagement:
    """Engagement check-ins summarized: ratings, time, and reasons for not doing homework."""

    check_ins: int = 0
    amount_done: Mapping[str, int] = field(default_factory=dict)
    as_agreed: int = 0
    not_as_agreed: int = 0
    mean_difficulty: float | None = None
    mean_helpfulness: float | None = None
    total_minutes: int = 0
    mean_minutes: float | None = None
    reasons: Mapping[str, int] = field(default_factory=dict)
    other_reasons: tuple[str, ...] = ()

    @property
    def reason_labels(self) -> dict[str, int]:
        """The reasons with the patient-facing wording, most frequent first."""
        return {
            catalog.NON_COMPLETION_REASONS.get(code, code): n
            for code, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        }


def first_number(values: list[Any]) -> float | None:
    """Return the first answer that is a number (not a boolean), as a float; else None."""
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def summarize_check_ins(responses: Iterable[Mapping[str, Any]]) -> Engagement:
    """Summarize engagement check-in QuestionnaireResponses (pure: no store)."""
    count = 0
    amount: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    agreed = not_agreed = 0
    difficulty: list[float] = []
    helpfulness: list[float] = []
    minutes: list[float] = []
    other: list[str] = []
    for response in responses:
        count += 1
        answers = flatten_answers(response)
        for coding in answers.get("amount-done", []):
            if isinstance(coding, dict) and coding.get("code"):
                amount[coding["code"]] += 1
        for value in answers.get("as-agreed", []):
            if value is True:
                agreed += 1
            elif value is False:
                not_agreed += 1
        for name, bucket in (
            ("difficulty", difficulty),
            ("helpfulness", helpfulness),
            ("minutes-spent", minutes),
        ):
            number = first_number(answers.get(name, []))
            if number is not None:
                bucket.append(number)
        for coding in answers.get("reason-not-done", []):
            if isinstance(coding, dict) and coding.get("code"):
                reasons[coding["code"]] += 1
        other.extend(
            v.strip() for v in answers.get("reason-other", []) if isinstance(v, str) and v.strip()
        )

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 2) if values else None

    return Engagement(
        check_ins=count,
        amount_done=dict(amount),
        as_agreed=agreed,
        not_as_agreed=not_agreed,
        mean_difficulty=mean(difficulty),
        mean_helpfulness=mean(helpfulness),
        total_minutes=int(sum(minutes)),
        mean_minutes=mean(minutes),
        reasons=dict(reasons),
        other_reasons=tuple(other),
    )


def check_ins_between(
    store: Store,
    patient: str,
    since: datetime | None,
    until: datetime | None,
    plan: str | None = None,
) -> list[dict[str, Any]]:
    """Return a patient's completed check-ins authored in ``[since, until)`` (of one plan)."""
    params = [
        ("patient", patient),
        ("questionnaire", catalog.ENGAGEMENT_CHECK_IN_URL),
        ("status", "completed,amended"),
    ]
    if plan:
        params.append(("based-on", plan))
    if since is not None:
        params.append(("authored", f"ge{search_instant(since)}"))
    out = []
    for response in iter_all(store, "QuestionnaireResponse", params):
        authored = response.get("authored")
        if until is not None and authored and parse_instant(authored) >= until:
            continue
        out.append(response)
    return out


def check_ins_of(
    store: Store, patients: list[str], since: datetime | None
) -> dict[str, list[dict[str, Any]]]:
    """:func:`check_ins_between` of many patients (no end), with one search per 50 patients."""
    out: dict[str, list[dict[str, Any]]] = {}
    refs = sorted(set(patients))
    for start in range(0, len(refs), 50):
        params = [
            ("patient", ",".join(refs[start : start + 50])),
            ("questionnaire", catalog.ENGAGEMENT_CHECK_IN_URL),
            ("status", "completed,amended"),
        ]
        if since is not None:
            params.append(("authored", f"ge{search_instant(since)}"))
        for response in iter_all(store, "QuestionnaireResponse", params):
            subject = (response.get("subject") or {}).get("reference")
            if isinstance(subject, str):
                out.setdefault(subject, []).append(response)
    return out
