"""Shared machinery for instruments scored as a sum of item weights (PHQ, GAD, PCL).

An instrument module declares a :class:`SumInstrument` and calls
:func:`score_sum`. Missing items follow the instrument's published or chosen
rule (``max_missing``): with at most that many unanswered items the total is
prorated — mean of the answered items × number of items, rounded half up —
otherwise there is no total. Prorating is instrument policy, so it lives here
and not in the generic SDC path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .items import answers_by_link_id, canonical, iter_questionnaire_items
from .results import INTERPRETATION_SYSTEM, Coding, RiskFlag, Score, ScoreResult
from .weights import answer_weight

__all__ = ["LOINC", "Band", "SumInstrument", "ItemWeights", "matches", "item_weights", "score_sum", "band_for"]

Json = dict[str, Any]
LOINC = "http://loinc.org"


@dataclass(frozen=True)
class Band:
    """A score range ``low..high`` (inclusive) and its interpretation."""

    low: int
    high: int
    code: str
    display: str

    def coding(self) -> Coding:
        """Return the band as an interpretation Coding."""
        return Coding(INTERPRETATION_SYSTEM, self.code, self.display)


@dataclass(frozen=True)
class SumInstrument:
    """A questionnaire scored as the sum of its items' weights.

    Items are found by LOINC code (``item_codes``) when given, else by linkId
    (``item_link_ids``), so a clinician's clone with other linkIds still scores.
    """

    key: str
    name: str
    panel_code: str | None
    urls: frozenset[str]
    item_link_ids: tuple[str, ...]
    total_link_id: str
    bands: tuple[Band, ...]
    max_missing: int
    item_codes: tuple[str, ...] = ()
    total_code: Coding | None = None
    total_label: str | None = None
    extra: Callable[[ItemWeights], tuple[list[Score], list[RiskFlag], list[str]]] | None = field(
        default=None, compare=False
    )


@dataclass(frozen=True)
class ItemWeights:
    """The weight of each instrument item (None when unanswered), in instrument order."""

    link_ids: tuple[str, ...]
    weights: tuple[Decimal | None, ...]

    @property
    def answered(self) -> list[Decimal]:
        """The weights of the answered items."""
        return [w for w in self.weights if w is not None]

    @property
    def missing(self) -> int:
        """How many items are unanswered."""
        return sum(1 for w in self.weights if w is None)

    def weight(self, number: int) -> Decimal | None:
        """Return the weight of item ``number`` (1-based)."""
        return self.weights[number - 1]


def matches(instrument: SumInstrument, questionnaire: Json) -> bool:
    """Tell whether a Questionnaire is this instrument (by panel LOINC or url)."""
    url = questionnaire.get("url")
    if url and url.split("|", 1)[0] in instrument.urls:
        return True
    if instrument.panel_code is None:
        return False
    return any(
        c.get("code") == instrument.panel_code and c.get("system", LOINC) == LOINC
        for c in questionnaire.get("code") or []
    )


def item_weights(instrument: SumInstrument, questionnaire: Json, response: Json) -> ItemWeights | None:
    """Return the instrument's item weights in a response, or None if items are missing."""
    by_code: dict[str, Json] = {}
    by_link: dict[str, Json] = {}
    for item in iter_questionnaire_items(questionnaire):
        by_link[item.get("linkId", "")] = item
        for code in item.get("code") or []:
            if code.get("system", LOINC) == LOINC and code.get("code"):
                by_code.setdefault(code["code"], item)
    keys = instrument.item_codes or instrument.item_link_ids
    lookup = by_code if instrument.item_codes else by_link
    qitems = [lookup[key] for key in keys if key in lookup]
    if len(qitems) != len(keys):
        return None
    answers = answers_by_link_id(response)
    weights = []
    for qitem in qitems:
        given = answers.get(qitem["linkId"]) or []
        weights.append(answer_weight(questionnaire, qitem, given[0]) if given else None)
    return ItemWeights(tuple(q["linkId"] for q in qitems), tuple(weights))


def band_for(instrument: SumInstrument, total: int) -> Band | None:
    """Return the band a total falls in."""
    for band in instrument.bands:
        if band.low <= total <= band.high:
            return band
    return None


def _total_link_id(instrument: SumInstrument, questionnaire: Json) -> str:
    if instrument.total_code is not None:
        for item in iter_questionnaire_items(questionnaire):
            if any(c.get("code") == instrument.total_code.code for c in item.get("code") or []):
                return str(item["linkId"])
    return instrument.total_link_id


def score_sum(instrument: SumInstrument, questionnaire: Json, response: Json) -> ScoreResult | None:
    """Score a response to a sum instrument; None if the Questionnaire is not it."""
    if not matches(instrument, questionnaire):
        return None
    weights = item_weights(instrument, questionnaire, response)
    if weights is None:
        return None
    notes: list[str] = []
    scores: list[Score] = []
    risks: list[RiskFlag] = []
    n_items = len(weights.weights)
    total: Score | None = None
    band: Band | None = None
    answered = weights.answered
    if weights.missing > instrument.max_missing or not answered:
        notes.append(
            f"Not scored: {weights.missing} of {n_items} {instrument.name} items unanswered "
            f"(at most {instrument.max_missing} may be missing)."
        )
    else:
        exact = sum(answered, Decimal(0))
        if weights.missing:
            exact = exact / len(answered) * n_items
            notes.append(
                f"Prorated: {len(answered)} of {n_items} {instrument.name} items answered; "
                f"total = mean item score × {n_items}, rounded."
            )
        value = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        total = Score(
            key=_total_link_id(instrument, questionnaire),
            value=value,
            code=instrument.total_code,
            label=instrument.total_label,
        )
        scores.append(total)
        band = band_for(instrument, value)
    if instrument.extra is not None:
        more_scores, more_risks, more_notes = instrument.extra(weights)
        scores.extend(more_scores)
        risks.extend(more_risks)
        notes.extend(more_notes)
    return ScoreResult(
        questionnaire=canonical(questionnaire),
        instrument=instrument.key,
        total=total,
        scores=tuple(scores),
        interpretation=band.coding() if band else None,
        risks=tuple(risks),
        notes=tuple(notes),
        response=response,
    )
