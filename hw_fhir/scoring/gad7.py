"""GAD-7: Generalized Anxiety Disorder, 7 items (anxiety severity).

Source: Spitzer RL, Kroenke K, Williams JBW, Löwe B. A brief measure for
assessing generalized anxiety disorder: the GAD-7. Arch Intern Med
2006;166(10):1092-7. Total 0-21: 0-4 minimal, 5-9 mild, 10-14 moderate,
15-21 severe.

Missing items (our documented rule): one unanswered item is prorated (mean of
the six answered × 7, rounded half up); with two or more there is no total.
"""

from __future__ import annotations

from typing import Any

from .instruments import LOINC, Band, SumInstrument, score_sum
from .results import Coding, ScoreResult

__all__ = ["INSTRUMENT", "score_for"]

INSTRUMENT = SumInstrument(
    key="gad-7",
    name="GAD-7",
    panel_code="69737-5",
    urls=frozenset({"http://hw-fhir.org/fhir/Questionnaire/gad-7"}),
    item_codes=("69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"),
    item_link_ids=tuple(f"gad7-{n}" for n in range(1, 8)),
    total_link_id="gad7-total",
    total_code=Coding(LOINC, "70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]"),
    total_label="GAD-7 total score",
    bands=(
        Band(0, 4, "minimal", "Minimal"),
        Band(5, 9, "mild", "Mild"),
        Band(10, 14, "moderate", "Moderate"),
        Band(15, 21, "severe", "Severe"),
    ),
    max_missing=1,
)


def score_for(questionnaire: dict[str, Any], response: dict[str, Any]) -> ScoreResult | None:
    """Score and interpret a GAD-7 response; None if the Questionnaire is not a GAD-7."""
    return score_sum(INSTRUMENT, questionnaire, response)
