"""Score a response: the generic SDC path, then the instrument scorers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from . import gad7, pcl5, phq2, phq9
from .results import Score, Scorer, ScoreResult
from .sdc import calculate, sdc_result

__all__ = ["DEFAULT_SCORERS", "score_response"]

#: The built-in instrument scorers, tried in order (``register_scorers`` of ``default_scoring``).
DEFAULT_SCORERS: tuple[Scorer, ...] = (phq9.score_for, gad7.score_for, phq2.score_for, pcl5.score_for)


def score_response(
    questionnaire: dict[str, Any],
    response: dict[str, Any],
    scorers: Sequence[Scorer] | None = None,
    *,
    plugins: Any = None,
) -> ScoreResult:
    """Calculate a response's expressions, then interpret it with the first scorer that knows it.

    ``scorers`` defaults to :data:`DEFAULT_SCORERS`; pass ``[]`` for the generic
    path alone. With ``plugins`` (the plugin manager, ``services.plugins``) and no
    ``scorers``, the plugin hooks score it (``score_for``, ``register_scorers``,
    ``interpret_score``; see :func:`hw_fhir.plugins.score`). The result's ``response``
    is the calculated copy of ``response``.
    """
    if plugins is not None and scorers is None:
        from ..plugins import score

        return score(plugins, questionnaire, response)
    calculated = calculate(questionnaire, response)
    base = sdc_result(questionnaire, calculated)
    for scorer in DEFAULT_SCORERS if scorers is None else scorers:
        result = scorer(questionnaire, calculated)
        if result is not None:
            return _merge(base, result, calculated)
    return base


def _same(a: Score, b: Score) -> bool:
    return a.key == b.key or (a.code is not None and b.code is not None and a.code.code == b.code.code)


def _merge(base: ScoreResult, result: ScoreResult, calculated: dict[str, Any]) -> ScoreResult:
    extra = tuple(s for s in base.scores if not any(_same(s, mine) for mine in result.scores))
    return replace(result, scores=result.scores + extra, response=calculated)
