"""Built-in plugin: the PHQ-9, GAD-7, PHQ-2 and PCL-5 scorers, and scoring on completion.

* ``register_scorers`` (``tryfirst``): :func:`hw_fhir.scoring.pipeline.score_with_plugins`
  asks ``score_for`` first (a vendor's override), then every registered scorer in
  order — these built-in ones first;
* ``response_completed`` (``tryfirst``): a submitted or amended response gets its
  Observations, Flags and alerts (:func:`hw_fhir.outcomes.listener.score_on_completion`)
  before any other reaction runs. It never raises: a failure is logged and the worker's
  catch-up sweep scores the response later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl
from .outcomes.listener import score_on_completion
from .scoring.engine import DEFAULT_SCORERS

if TYPE_CHECKING:
    from .services import Services
    from .store.base import Store

__all__ = ["register_scorers", "response_completed"]


@hookimpl(tryfirst=True)
def register_scorers() -> list[Any]:
    """Return the built-in instrument scorers."""
    return list(DEFAULT_SCORERS)


@hookimpl(tryfirst=True)
def response_completed(store: Store, response: dict[str, Any], task: dict[str, Any],
                       questionnaire: dict[str, Any], amended: bool,
                       services: Services | None) -> None:
    """Record the scores of the submitted or amended response."""
    score_on_completion(services, store, response, task=task, questionnaire=questionnaire,
                        amended=amended)
