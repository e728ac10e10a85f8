"""Score on the completion path: a ``response_completed`` listener."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..config import Settings
from ..events import RESPONSE_COMPLETED, Events
from ..store.base import Store
from .record import RecordedScores, score_quietly

__all__ = ["subscribe"]


def subscribe(events: Events, *, settings: Settings | None = None) -> Callable[..., RecordedScores]:
    """Record the scores of every response ``events`` announces as completed or amended.

    The listener never raises (the response is already stored; a failure is logged
    and the worker's catch-up sweep, :mod:`hw_fhir.outcomes.sweep`, scores it later).
    A newly raised Flag is announced to the plugins ``events`` is bound to
    (``risk_raised``). Return the listener, so it can be unsubscribed.
    """

    def record_on_completion(store: Store, response: Mapping[str, Any], task: Mapping[str, Any],
                             questionnaire: Mapping[str, Any]) -> RecordedScores:
        return score_quietly(store, response, questionnaire=questionnaire, task=task,
                             settings=settings, plugins=events.plugins)

    events.subscribe(RESPONSE_COMPLETED, record_on_completion)
    return record_on_completion
