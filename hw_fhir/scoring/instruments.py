"""Shared machinery for instruments scored as a sum of item weights (PHQ, GAD, PCL).

An instrument module declares a :class:`SumInstrument` and calls
:func:`score_sum`. Recognition and answer scoring follow the instrument's own definition
(:mod:`.definition`): answer codes, never client-sent weights. An answered item
whose answer cannot be scored is *unscorable*, never missing: the total is then
not given, and the reason is said. Missing items follow the instrument's published or chosen
rule (``max_missing``): with at most that many unanswered items the total is
prorated — mean of the answered items × number of items, rounded half up —
otherwise there is no total. Prorating is instrument policy, so it lives here
and not in the generic SDC path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .definition import Recognition, describe_answer, instrument_weight, recognise
from .items import answers_by_link_id, canonical, iter_questionnaire_items
from .results import INTERPRETATION_SYSTEM, Coding, RiskFlag, Score, ScoreResult

__all__ = [
    "LOINC",
    "FREQUENCY_SCALE",
    "Band",
    "SumInstrument",
    "ItemWeights",
    "matches",
    "recognition",
    "item_weights",
    "score_sum",
    "band_for",
]

Json = dict[str, Any]
LOINC = "http://loinc.org"
#: LOINC answer list LL358-3 (PHQ-9, PHQ-2, GAD-7 items): answer code → score.
FREQUENCY_SCALE = {"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}


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
    #: The instrument's answers: code → item score (its definition; client weights never count).
    scale: Mapping[str, int] = field(default_factory=lambda: dict(FREQUENCY_SCALE), compare=False)
    #: Code systems of ``scale`` (a Coding without system is matched by code).
    answer_systems: frozenset[str] = frozenset({LOINC})
    #: Lowest and highest item score.
    item_range: tuple[int, int] = (0, 3)

    @property
    def total_range(self) -> tuple[int, int]:
        """Lowest and highest possible total."""
        n = len(self.item_codes or self.item_link_ids)
        return self.item_range[0] * n, self.item_range[1] * n


@dataclass(frozen=True)
class ItemWeights:
    """The weight of each instrument item (None when unanswered), in instrument order."""

    link_ids: tuple[str, ...]
    weights: tuple[Decimal | None, ...]
    #: Per item: why its answer could not be scored (None: scored or unanswered).
    problems: tuple[str | None, ...] = ()
    #: Per item: what was answered, in words (None: unanswered).
    answers: tuple[str | None, ...] = ()
    #: Client-sent weights that were ignored, and other remarks worth a warning.
    ignored: tuple[str, ...] = ()
    #: How the items were found (``code``, ``linkId``, ``position``).
    found_by: str = "code"

    @property
    def answered(self) -> list[Decimal]:
        """The weights of the answered items."""
        return [w for w in self.weights if w is not None]

    @property
    def missing(self) -> int:
        """How many items are unanswered (an unscorable answer is not missing)."""
        return sum(1 for n in range(len(self.weights)) if self.answer(n + 1) is None)

    @property
    def unscorable(self) -> list[int]:
        """The 1-based numbers of the answered items whose answer could not be scored."""
        return [n + 1 for n in range(len(self.weights)) if self.problem(n + 1)]

    def weight(self, number: int) -> Decimal | None:
        """Return the weight of item ``number`` (1-based)."""
        return self.weights[number - 1]

    def problem(self, number: int) -> str | None:
        """Return why item ``number``'s answer could not be scored (None: it could, or no answer)."""
        return self.problems[number - 1] if self.problems else None

    def answer(self, number: int) -> str | None:
        """Return what item ``number`` was answered, in words (None: unanswered)."""
        if self.answers:
            return self.answers[number - 1]
        weight = self.weights[number - 1]
        return None if weight is None else str(weight)


def recognition(instrument: SumInstrument, questionnaire: Json) -> Recognition | None:
    """Return how a Questionnaire is recognised as this instrument (see :mod:`.definition`)."""
    return recognise(urls=instrument.urls, panel_code=instrument.panel_code,
                     total_code=instrument.total_code.code if instrument.total_code else None,
                     item_codes=instrument.item_codes, questionnaire=questionnaire)


def matches(instrument: SumInstrument, questionnaire: Json) -> bool:
    """Tell whether a Questionnaire is this instrument (url, panel, total or item codes)."""
    return recognition(instrument, questionnaire) is not None


def _question(item: Json) -> bool:
    return item.get("type") in ("choice", "open-choice", "coding", "integer", "decimal") and not any(
        "calculatedExpression" in str(e.get("url", "")) for e in item.get("extension") or [])


def _instrument_items(instrument: SumInstrument, questionnaire: Json) -> tuple[list[Json | None], str]:
    """Return the Questionnaire item of each instrument item (None: the form lacks it)."""
    by_code: dict[str, Json] = {}
    by_link: dict[str, Json] = {}
    questions: list[Json] = []
    total = instrument.total_code.code if instrument.total_code else None
    for item in iter_questionnaire_items(questionnaire):
        by_link[item.get("linkId", "")] = item
        codes = [c.get("code") for c in item.get("code") or [] if c.get("system", LOINC) == LOINC]
        for code in codes:
            if code:
                by_code.setdefault(code, item)
        if _question(item) and total not in codes and item.get("linkId") != instrument.total_link_id:
            questions.append(item)
    n = len(instrument.item_codes or instrument.item_link_ids)
    if instrument.item_codes and any(code in by_code for code in instrument.item_codes):
        return [by_code.get(code) for code in instrument.item_codes], "code"
    if any(link in by_link for link in instrument.item_link_ids):
        return [by_link.get(link) for link in instrument.item_link_ids], "linkId"
    if len(questions) >= n:  # recognised, but its items carry neither codes nor our linkIds
        return list(questions[:n]), "position"
    return [], "none"


def item_weights(instrument: SumInstrument, questionnaire: Json, response: Json) -> ItemWeights | None:
    """Return the instrument's item scores in a response, or None when the form has none of its items."""
    qitems, found_by = _instrument_items(instrument, questionnaire)
    if not qitems or not any(qitems):
        return None
    answers = answers_by_link_id(response)
    weights: list[Decimal | None] = []
    problems: list[str | None] = []
    said: list[str | None] = []
    ignored: list[str] = []
    low, high = instrument.item_range
    for number, qitem in enumerate(qitems, start=1):
        given = answers.get(qitem["linkId"]) or [] if qitem else []
        if not given:
            weights.append(None)
            problems.append(None)
            said.append(None)
            continue
        weighed = instrument_weight(scale=instrument.scale, systems=instrument.answer_systems,
                                    low=low, high=high, name=instrument.name,
                                    questionnaire=questionnaire, qitem=qitem, answer=given[0])
        problem = weighed.problem
        if problem is None and len(given) > 1:
            problem = f"{len(given)} answers were given where the {instrument.name} asks for one"
        weights.append(weighed.value if problem is None else None)
        problems.append(problem)
        said.append(describe_answer(given[0]))
        if weighed.ignored:
            ignored.append(f"{instrument.name} item {number}: {weighed.ignored}")
    link_ids = tuple(q["linkId"] if q else "" for q in qitems)
    return ItemWeights(link_ids, tuple(weights), tuple(problems), tuple(said), tuple(ignored),
                       found_by)


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
    recognised = recognition(instrument, questionnaire)
    if recognised is None:
        return None
    weights = item_weights(instrument, questionnaire, response)
    if weights is None:
        return None
    notes: list[str] = []
    warnings: list[str] = list(weights.ignored)
    scores: list[Score] = []
    risks: list[RiskFlag] = []
    n_items = len(weights.weights)
    total: Score | None = None
    band: Band | None = None
    answered = weights.answered
    prorated = False
    if weights.found_by == "position":
        warnings.append(f"{instrument.name} items carry neither LOINC codes nor known linkIds: "
                        f"scored in the order the form asks them.")
    for number in weights.unscorable:
        text = (f"{instrument.name} item {number} was answered {weights.answer(number)} but "
                f"cannot be scored: {weights.problem(number)}.")
        notes.append(text)
        warnings.append(text)
    if weights.unscorable:
        notes.append(f"Not scored: {len(weights.unscorable)} {instrument.name} "
                     f"answer(s) cannot be scored.")
    elif weights.missing > instrument.max_missing or not answered:
        notes.append(
            f"Not scored: {weights.missing} of {n_items} {instrument.name} items unanswered "
            f"(at most {instrument.max_missing} may be missing)."
        )
    else:
        exact = sum(answered, Decimal(0))
        if weights.missing:
            prorated = True
            exact = exact / len(answered) * n_items
            notes.append(
                f"Prorated: {len(answered)} of {n_items} {instrument.name} items answered; "
                f"total = mean item score × {n_items}, rounded."
            )
        value = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        low, high = instrument.total_range
        if not low <= value <= high:  # cannot happen with range-checked items; never recorded
            notes.append(f"Not scored: total {value} is outside the {instrument.name} range "
                         f"{low}-{high}.")
        else:
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
    panel = Coding(LOINC, instrument.panel_code, instrument.name) if instrument.panel_code else None
    return ScoreResult(
        questionnaire=canonical(questionnaire),
        instrument=instrument.key,
        total=total,
        scores=tuple(scores),
        interpretation=band.coding() if band else None,
        risks=tuple(risks),
        notes=tuple(notes),
        response=response,
        warnings=tuple(warnings),
        prorated=prorated,
        recognised_by=f"{recognised.by} ({recognised.detail})",
        panel_code=panel,
    )
