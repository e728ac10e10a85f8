"""PHQ-9: Patient Health Questionnaire, 9 items (depression severity).

Source: Kroenke K, Spitzer RL, Williams JBW. The PHQ-9: validity of a brief
depression severity measure. J Gen Intern Med 2001;16(9):606-13. Total 0-27:
0-4 minimal, 5-9 mild, 10-14 moderate, 15-19 moderately severe, 20-27 severe.

Missing items (our documented rule): with one or two of the nine items
unanswered the total is prorated (mean of the answered items × 9, rounded half
up), as commonly done (e.g. Arrieta J et al., J Clin Psychol 2017;73(9):1076-90);
with three or more it is not scored.

Safety: any answer above "Not at all" to item 9 (thoughts that you would be
better off dead or of hurting yourself) raises a ``self-harm`` risk flag,
whatever the total; an unanswered item 9 is noted. An item 9 answer that cannot
be scored (an unknown code, a weight out of range, free text) counts as positive:
the flag says what was answered and why it could not be scored.
"""

from __future__ import annotations

from typing import Any

from .instruments import LOINC, Band, ItemWeights, SumInstrument, score_sum
from .results import Coding, RiskFlag, Score, ScoreResult

__all__ = ["INSTRUMENT", "score_for"]

ITEM_9 = 9


def _item9(weights: ItemWeights) -> tuple[list[Score], list[RiskFlag], list[str]]:
    link_id = weights.link_ids[ITEM_9 - 1] or None
    value = weights.weight(ITEM_9)
    problem = weights.problem(ITEM_9)
    if problem is not None:
        risk = RiskFlag(
            code="self-harm",
            display="Thoughts of self-harm",
            reason=(
                "PHQ-9 item 9 (thoughts that you would be better off dead or of hurting yourself) "
                f"was answered {weights.answer(ITEM_9)}, which cannot be scored ({problem}); "
                "treated as positive: ask about it directly."
            ),
            link_id=link_id,
        )
        return [], [risk], []
    if value is None:
        return [], [], [
            "Item 9 (thoughts that you would be better off dead or of hurting yourself) "
            "was not answered: ask about it directly."
        ]
    if value <= 0:
        return [], [], []
    risk = RiskFlag(
        code="self-harm",
        display="Thoughts of self-harm",
        reason=(
            "PHQ-9 item 9 (thoughts that you would be better off dead or of hurting yourself) "
            f"scored {value} of 3."
        ),
        link_id=link_id,
    )
    return [], [risk], []


INSTRUMENT = SumInstrument(
    key="phq-9",
    name="PHQ-9",
    panel_code="44249-1",
    urls=frozenset({"http://hw-fhir.org/fhir/Questionnaire/phq-9"}),
    item_codes=(
        "44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
        "44258-2", "44252-5", "44253-3", "44260-8",
    ),
    item_link_ids=tuple(f"phq9-{n}" for n in range(1, 10)),
    total_link_id="phq9-total",
    total_code=Coding(LOINC, "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"),
    total_label="PHQ-9 total score",
    bands=(
        Band(0, 4, "minimal", "Minimal"),
        Band(5, 9, "mild", "Mild"),
        Band(10, 14, "moderate", "Moderate"),
        Band(15, 19, "moderately-severe", "Moderately severe"),
        Band(20, 27, "severe", "Severe"),
    ),
    max_missing=2,
    extra=_item9,
)


def score_for(questionnaire: dict[str, Any], response: dict[str, Any]) -> ScoreResult | None:
    """Score and interpret a PHQ-9 response; None if the Questionnaire is not a PHQ-9."""
    return score_sum(INSTRUMENT, questionnaire, response)
