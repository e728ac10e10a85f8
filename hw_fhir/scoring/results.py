"""Values a scorer returns, and the scorer plugin contract."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Coding", "Score", "RiskFlag", "ScoreResult", "Scorer", "INTERPRETATION_SYSTEM"]

#: Code system of the score bands hw-fhir reports (minimal, mild, positive-screen...).
INTERPRETATION_SYSTEM = "http://hw-fhir.org/fhir/CodeSystem/score-interpretation"


@dataclass(frozen=True)
class Coding:
    """A FHIR Coding."""

    system: str
    code: str
    display: str | None = None

    def as_fhir(self) -> dict[str, str]:
        """Return this coding as FHIR JSON."""
        out = {"system": self.system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out

    @classmethod
    def from_fhir(cls, coding: Mapping[str, Any]) -> Coding:
        """Build a Coding from FHIR JSON."""
        return cls(str(coding.get("system", "")), str(coding.get("code", "")), coding.get("display"))


@dataclass(frozen=True)
class Score:
    """One numeric score: a total, a subscale, or any calculated item.

    ``key`` is the linkId of the response item holding it (or, for a score no
    item holds, a key the scorer chooses); ``code`` is its LOINC (or other) code.
    """

    key: str
    value: int | float
    code: Coding | None = None
    label: str | None = None


@dataclass(frozen=True)
class RiskFlag:
    """A safety signal the clinician must see at once (e.g. thoughts of self-harm)."""

    code: str
    display: str
    reason: str
    link_id: str | None = None


@dataclass(frozen=True)
class ScoreResult:
    """What scoring one QuestionnaireResponse produced.

    ``total`` is the headline score (also found in ``scores``); ``interpretation``
    its band; ``notes`` say how it was obtained when that matters (prorated,
    not scored...); ``warnings`` what the sender must hear (ignored weights...). ``response`` is the response with its calculated items
    filled in (a new dict; the input is never changed).
    """

    questionnaire: str
    instrument: str | None = None
    total: Score | None = None
    scores: tuple[Score, ...] = ()
    interpretation: Coding | None = None
    risks: tuple[RiskFlag, ...] = ()
    notes: tuple[str, ...] = ()
    response: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: What the caller must be told (ignored client weights, a replaced client total...).
    warnings: tuple[str, ...] = ()
    #: True when the total was prorated over missing items.
    prorated: bool = False
    #: How a known instrument was recognised (url, panel-code, total-code, item-codes).
    recognised_by: str | None = None
    #: The instrument's panel code, for a form that does not carry it.
    panel_code: Coding | None = None

    @property
    def value(self) -> int | float | None:
        """The headline score, or None when the response could not be scored."""
        return self.total.value if self.total else None

    def score(self, key: str) -> Score | None:
        """Return the score held by linkId ``key`` or coded ``key``, or None."""
        for score in self.scores:
            if score.key == key or (score.code is not None and score.code.code == key):
                return score
        return None


@runtime_checkable
class Scorer(Protocol):
    """Interprets responses to one instrument (a future pluggy hook, ``score_for``).

    Called with the Questionnaire and the response whose calculated items are
    already filled in; return None when the Questionnaire is not yours.
    """

    def __call__(self, questionnaire: dict[str, Any], response: dict[str, Any]) -> ScoreResult | None:
        ...
