"""Scoring on the completion path: what the ``response_completed`` reaction records.

The built-in plugin :mod:`hw_fhir.default_scoring` calls :func:`score_on_completion`
for every response submitted or amended through a domain function (patient pages,
the SDC workflow of ``/fhir``). The ``/fhir`` API answers a write with the scores
that reaction recorded (:func:`scores_for_written`), so a response is scored once.
:func:`subscribe` scores on a publisher without the built-in plugins (``Events()``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..events import RESPONSE_COMPLETED, Events
from ..store.base import Store
from .record import RecordedScores, score_quietly

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["subscribe", "score_on_completion", "scores_for_written", "CompletionScores",
           "SCORING_PLUGIN"]

#: The built-in plugin that scores on completion.
SCORING_PLUGIN = "hw_fhir.default_scoring"


def _key(response: Mapping[str, Any]) -> tuple[str, str]:
    return str(response.get("id")), str((response.get("meta") or {}).get("versionId"))


class CompletionScores:
    """The scores recorded on completion, by response version, until the writer asks for them.

    Bounded (the oldest are dropped): a completion whose writer does not ask (a patient
    page) leaves nothing behind for long.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._recorded: OrderedDict[tuple[str, str], RecordedScores] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, response: Mapping[str, Any], recorded: RecordedScores) -> None:
        """Keep what scoring ``response`` (the stored version) recorded."""
        with self._lock:
            self._recorded[_key(response)] = recorded
            while len(self._recorded) > self.size:
                self._recorded.popitem(last=False)

    def take(self, response: Mapping[str, Any]) -> RecordedScores | None:
        """Return (and forget) what was recorded for this version of ``response``, or None."""
        with self._lock:
            return self._recorded.pop(_key(response), None)


def _completion_scores(services: Services) -> CompletionScores:
    if services.completion_scores is None:
        services.completion_scores = CompletionScores()
    return services.completion_scores


def _first_version(response: Mapping[str, Any]) -> bool:
    """Whether ``response`` is as its first write stored it (version 1)."""
    return str((response.get("meta") or {}).get("versionId")) == "1"


def score_on_completion(services: Services | None, store: Store, response: Mapping[str, Any], *,
                        task: Mapping[str, Any] | None = None,
                        questionnaire: Mapping[str, Any] | None = None,
                        amended: bool | None = None) -> RecordedScores:
    """Record the scores of a completed or amended response; never raises.

    A failure is logged and the worker's catch-up sweep (:mod:`hw_fhir.outcomes.sweep`)
    scores it later. A newly raised Flag is announced to the plugins (``risk_raised``).
    ``amended`` False: ``response`` was just submitted (``response_completed``), so at its
    first version it is scored as fresh (see :func:`~.record.record_scores`).
    """
    fresh = amended is False and _first_version(response)
    recorded = score_quietly(store, response, questionnaire=questionnaire, task=task,
                             settings=services.settings if services is not None else None,
                             plugins=services.plugins if services is not None else None,
                             services=services, fresh=fresh)
    if services is not None:
        _completion_scores(services).put(response, recorded)
    return recorded


def scores_for_written(services: Services, response: Mapping[str, Any], *,
                       created: bool = False) -> RecordedScores:
    """Return the scores of a response just written: those recorded on completion, else new ones.

    For the ``/fhir`` API after a write: a response whose ``response_completed`` event
    scored it is not scored again; any other (a draft, a plain create) is scored now.
    ``created``: the write created the response (its first version is ``response``).
    """
    recorded = _completion_scores(services).take(response)
    if recorded is not None:
        return recorded
    fresh = created and _first_version(response)
    return score_quietly(services.store, response, settings=services.settings,
                         plugins=services.plugins, services=services, fresh=fresh)


def subscribe(events: Events, *, settings: Settings | None = None) -> Callable[..., RecordedScores]:
    """Record the scores of every response ``events`` announces as completed or amended.

    For a publisher without the built-in plugins (``Events()``): with them
    (``services.events``), :mod:`hw_fhir.default_scoring` already scores, and the
    listener is returned without being subscribed again. The listener never raises.
    Return the listener, so it can be unsubscribed.
    """

    def record_on_completion(store: Store, response: Mapping[str, Any], task: Mapping[str, Any],
                             questionnaire: Mapping[str, Any]) -> RecordedScores:
        return score_quietly(store, response, questionnaire=questionnaire, task=task,
                             settings=settings, plugins=events.plugins)

    plugins = events.plugins
    if plugins is None or plugins.get_plugin(SCORING_PLUGIN) is None:
        events.subscribe(RESPONSE_COMPLETED, record_on_completion)
    return record_on_completion
