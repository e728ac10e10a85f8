"""PHQ-2: the first two PHQ-9 items, a depression screen.

Source: Kroenke K, Spitzer RL, Williams JBW. The Patient Health
Questionnaire-2: validity of a two-item depression screener. Med Care
2003;41(11):1284-92. Total 0-6; 3 or more is a positive screen (follow up
with the PHQ-9). Two items leave nothing to prorate: both must be answered.
"""

from __future__ import annotations

from typing import Any

from .instruments import LOINC, Band, SumInstrument, score_sum
from .results import Coding, ScoreResult

__all__ = ["INSTRUMENT", "POSITIVE_AT", "score_for"]

POSITIVE_AT = 3

INSTRUMENT = SumInstrument(
    key="phq-2",
    name="PHQ-2",
    panel_code="55757-9",
    urls=frozenset({"http://hw-fhir.org/fhir/Questionnaire/phq-2"}),
    item_codes=("44250-9", "44255-8"),
    item_link_ids=("phq2-1", "phq2-2"),
    total_link_id="phq2-total",
    total_code=Coding(LOINC, "55758-7", "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]"),
    total_label="PHQ-2 total score",
    bands=(
        Band(0, POSITIVE_AT - 1, "negative-screen", "Negative screen"),
        Band(POSITIVE_AT, 6, "positive-screen", "Positive screen"),
    ),
    max_missing=0,
)


def score_for(questionnaire: dict[str, Any], response: dict[str, Any]) -> ScoreResult | None:
    """Score and interpret a PHQ-2 response; None if the Questionnaire is not a PHQ-2."""
    return score_sum(INSTRUMENT, questionnaire, response)
