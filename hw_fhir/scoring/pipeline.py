"""The scoring pipeline: a response scored by the built-in scorers or through the plugins' hooks.

Without a plugin manager the built-in scorers (:data:`~.engine.DEFAULT_SCORERS`) are
tried in order; with one (``services.plugins``), :func:`score_with_plugins` asks
``score_for`` (a vendor's override), then every scorer of ``register_scorers``, then
adds what ``interpret_score`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..hook_results import flatten_results
from .engine import DEFAULT_SCORERS, agree, calculate_or_fallback, merge_scores, with_failure
from .results import Scorer, ScoreResult
from .terminology import Resolver, with_answer_sets

if TYPE_CHECKING:
    import pluggy

__all__ = ["score_response", "score_with_plugins", "scorers"]


def score_response(
    questionnaire: dict[str, Any],
    response: dict[str, Any],
    scorers: Sequence[Scorer] | None = None,
    *,
    plugins: Any = None,
    resolve: Resolver | None = None,
    services: Any = None,
) -> ScoreResult:
    """Calculate a response's expressions, then interpret it with the first scorer that knows it.

    ``scorers`` defaults to :data:`~.engine.DEFAULT_SCORERS`; pass ``[]`` for the
    generic path alone. With ``plugins`` (the plugin manager, ``services.plugins``) and
    no ``scorers``, the plugin hooks score it (:func:`score_with_plugins`). The
    result's ``response`` is the calculated copy of ``response``. Answer lists the
    Questionnaire names but does not contain are found through ``resolve`` (a store)
    or among the shipped ones (:func:`~hw_fhir.scoring.terminology.with_answer_sets`).
    """
    questionnaire = with_answer_sets(questionnaire, resolve)
    if plugins is not None and scorers is None:
        return score_with_plugins(plugins, questionnaire, response, services=services)
    calculated, base, failure = calculate_or_fallback(questionnaire, response)
    for scorer in DEFAULT_SCORERS if scorers is None else scorers:
        result = scorer(questionnaire, calculated)
        if result is not None:
            return agree(questionnaire, merge_scores(base, with_failure(result, failure), calculated))
    if failure is not None:
        raise failure
    return base


def scorers(pm: pluggy.PluginManager, *, services: Any = None) -> list[Scorer]:
    """Return every registered scorer, built-in ones first."""
    return flatten_results(pm.hook.register_scorers(services=services))


def score_with_plugins(pm: pluggy.PluginManager, questionnaire: dict[str, Any],
                       response: dict[str, Any], *, services: Any = None) -> ScoreResult:
    """Score a response: SDC expressions, ``score_for``, registered scorers, ``interpret_score``."""
    calculated, base, failure = calculate_or_fallback(questionnaire, response)
    result = pm.hook.score_for(questionnaire=questionnaire, response=calculated, services=services)
    for scorer in [] if result is not None else scorers(pm, services=services):
        result = scorer(questionnaire, calculated)
        if result is not None:
            break
    if result is None:
        if failure is not None:
            raise failure
        result = base
    else:
        result = merge_scores(base, with_failure(result, failure), calculated)
    for extras in flatten_results(pm.hook.interpret_score(
            questionnaire=questionnaire, response=calculated, result=result, services=services)):
        result = replace(
            result,
            scores=result.scores + tuple(extras.scores),
            risks=result.risks + tuple(extras.risks),
            notes=result.notes + tuple(extras.notes),
            interpretation=result.interpretation or extras.interpretation,
        )
    return agree(questionnaire, result)
