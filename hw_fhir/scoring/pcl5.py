"""PCL-5: PTSD Checklist for DSM-5, 20 items rated 0-4 (public domain).

Sources: Weathers FW, Litz BT, Keane TM, Palmieri PA, Marx BP, Schnurr PP. The
PTSD Checklist for DSM-5 (PCL-5). National Center for PTSD, 2013. Bovin MJ et
al. Psychometric properties of the PCL-5 in veterans. Psychol Assess
2016;28(11):1379-91. National Center for PTSD, "PTSD Checklist for DSM-5":
a total (0-80) of 31-33 or more indicates probable PTSD; we use 33, the upper
end of that range (:data:`PROBABLE_PTSD_AT`).

Also reported: DSM-5 cluster severities B (items 1-5), C (6-7), D (8-14) and
E (15-20), each when all its items are answered, and whether the DSM-5
symptom pattern is met (an item rated 2 "Moderately" or more counts as a
symptom: at least 1 B, 1 C, 2 D and 2 E).

Missing items (our documented rule): up to two unanswered items are prorated
(mean × 20, rounded half up); with more there is no total.

No LOINC code for the PCL-5 could be verified, so it is matched by url only.
"""

from __future__ import annotations

from typing import Any

from .instruments import Band, ItemWeights, SumInstrument, score_sum
from .results import RiskFlag, Score, ScoreResult

__all__ = ["INSTRUMENT", "PROBABLE_PTSD_AT", "CLUSTERS", "ANSWERS", "ANSWER_SYSTEM", "score_for"]

PROBABLE_PTSD_AT = 33
#: The catalog's PCL-5 answer codes and their item scores (the instrument's definition).
ANSWER_SYSTEM = "http://hw-fhir.org/fhir/CodeSystem/pcl-5-response"
ANSWERS = {"not-at-all": 0, "a-little-bit": 1, "moderately": 2, "quite-a-bit": 3, "extremely": 4}

#: DSM-5 cluster: (first item, last item, symptoms needed, label).
CLUSTERS = {
    "b": (1, 5, 1, "Cluster B (intrusion)"),
    "c": (6, 7, 1, "Cluster C (avoidance)"),
    "d": (8, 14, 2, "Cluster D (negative alterations in cognitions and mood)"),
    "e": (15, 20, 2, "Cluster E (alterations in arousal and reactivity)"),
}


def _clusters(weights: ItemWeights) -> tuple[list[Score], list[RiskFlag], list[str]]:
    scores = []
    pattern = True
    for key, (first, last, needed, label) in CLUSTERS.items():
        values = [weights.weight(n) for n in range(first, last + 1)]
        answered = [v for v in values if v is not None]
        if len(answered) == len(values):
            scores.append(Score(key=f"pcl5-cluster-{key}", value=int(sum(answered)),
                                label=f"PCL-5 {label} severity"))
        pattern = pattern and sum(1 for v in answered if v >= 2) >= needed
    notes = ["DSM-5 symptom pattern for provisional PTSD is met."] if pattern else []
    return scores, [], notes


INSTRUMENT = SumInstrument(
    key="pcl-5",
    name="PCL-5",
    panel_code=None,
    urls=frozenset({"http://hw-fhir.org/fhir/Questionnaire/pcl-5"}),
    item_link_ids=tuple(f"pcl5-{n}" for n in range(1, 21)),
    total_link_id="pcl5-total",
    total_label="PCL-5 total symptom severity score",
    bands=(
        Band(0, PROBABLE_PTSD_AT - 1, "below-threshold", "Below the probable-PTSD threshold"),
        Band(PROBABLE_PTSD_AT, 80, "probable-ptsd", "Probable PTSD"),
    ),
    max_missing=2,
    extra=_clusters,
    scale=ANSWERS,
    answer_systems=frozenset({ANSWER_SYSTEM}),
    item_range=(0, 4),
)


def score_for(questionnaire: dict[str, Any], response: dict[str, Any]) -> ScoreResult | None:
    """Score and interpret a PCL-5 response; None if the Questionnaire is not a PCL-5."""
    return score_sum(INSTRUMENT, questionnaire, response)
