"""Scoring: SDC calculated expressions, instrument interpretation, Observations, MBC.

Pure functions over FHIR JSON dicts; nothing here touches a store.

>>> result = score_response(questionnaire, response)      # doctest: +SKIP
>>> result.value, result.interpretation, result.risks     # doctest: +SKIP
>>> observations_for(questionnaire, response, result)     # doctest: +SKIP
"""

from .engine import DEFAULT_SCORERS
from .mbc import Point, Progress, Thresholds, progress
from .observations import OBSERVATION_SYSTEM, observation_id, observations_for
from .pipeline import score_response
from .results import INTERPRETATION_SYSTEM, Coding, RiskFlag, Score, Scorer, ScoreResult
from .sdc import calculate, check_expressions, sdc_result

__all__ = [
    "DEFAULT_SCORERS",
    "INTERPRETATION_SYSTEM",
    "OBSERVATION_SYSTEM",
    "Coding",
    "Point",
    "Progress",
    "RiskFlag",
    "Score",
    "ScoreResult",
    "Scorer",
    "Thresholds",
    "calculate",
    "check_expressions",
    "observation_id",
    "observations_for",
    "progress",
    "score_response",
    "sdc_result",
]
