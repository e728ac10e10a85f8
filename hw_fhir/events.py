"""What happened in the homework domain: a small in-process event dispatcher.

The domain (:mod:`~hw_fhir.assignment`, :mod:`~hw_fhir.plans`,
:mod:`~hw_fhir.completion`) publishes an event *after* the write it describes has
been stored, so scoring, reminders and sync can react. Every event is called with
keyword arguments only; a listener takes just the arguments it needs (as with
pluggy hook implementations) or ``**kwargs``. These names and arguments are a
stable contract: the plugin system turns them into pluggy hooks of the same names
and may only ever add arguments.

``task_created(store, task)``
    A homework Task was created (one-off assignment or a plan occurrence).
    ``task`` is the stored SDC Task dict.
``task_status_changed(store, task, previous_status)``
    A Task's ``status`` changed (``requested`` → ``in-progress`` → ``completed``,
    ``cancelled``, ``failed``, ``on-hold``...). ``task`` is the stored Task after the
    change; ``previous_status`` the status before it.
``response_saved(store, response, task)``
    A draft QuestionnaireResponse (status ``in-progress``) was saved. ``task`` is the
    stored Task it answers.
``response_completed(store, response, task, questionnaire, amended)``
    A QuestionnaireResponse was submitted (``completed``) or a submitted one was
    amended (``amended`` is True, status ``amended``). ``questionnaire`` is the exact
    Questionnaire version it was validated against: scorers read item weights and
    calculated expressions there.
``plan_created(store, plan, tasks)``
    A CarePlan (recurring assignment or pathway) was created. ``tasks`` is the list of
    Tasks created with it (each also announced by ``task_created``).

``store`` is the :class:`~hw_fhir.store.Store` the write went to, so a listener can
write its own resources (an Observation, a CommunicationRequest...).

A listener that raises does not stop the others; after all listeners ran, the first
error is raised again to the publisher (pluggy propagates errors the same way). The
data written before the event stays written.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "EVENTS",
    "TASK_CREATED",
    "TASK_STATUS_CHANGED",
    "RESPONSE_SAVED",
    "RESPONSE_COMPLETED",
    "PLAN_CREATED",
    "Events",
    "publish",
]

TASK_CREATED = "task_created"
TASK_STATUS_CHANGED = "task_status_changed"
RESPONSE_SAVED = "response_saved"
RESPONSE_COMPLETED = "response_completed"
PLAN_CREATED = "plan_created"

#: Every event and the keyword arguments it is published with.
EVENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        TASK_CREATED: ("store", "task"),
        TASK_STATUS_CHANGED: ("store", "task", "previous_status"),
        RESPONSE_SAVED: ("store", "response", "task"),
        RESPONSE_COMPLETED: ("store", "response", "task", "questionnaire", "amended"),
        PLAN_CREATED: ("store", "plan", "tasks"),
    }
)

Listener = Callable[..., Any]


def _check_name(name: str) -> None:
    if name not in EVENTS:
        raise ValueError(f"Unknown event {name!r}; known events: {', '.join(EVENTS)}")


def _accepted(listener: Listener, name: str) -> tuple[str, ...] | None:
    """Return the argument names a listener takes (None: it takes ``**kwargs``)."""
    try:
        signature = inspect.signature(listener)
    except (TypeError, ValueError):
        return None
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            raise TypeError(f"A listener of {name} takes keyword arguments only")
        if parameter.name not in EVENTS[name] and parameter.default is inspect.Parameter.empty:
            raise TypeError(
                f"A listener of {name} asks for {parameter.name!r}, which the event does not "
                f"have ({', '.join(EVENTS[name])})"
            )
        names.append(parameter.name)
    return tuple(n for n in names if n in EVENTS[name])


class Events:
    """Listeners by event name; :meth:`publish` calls them in subscription order.

    With ``plugins`` (the pluggy plugin manager, ``services.plugins``), every event is
    also the pluggy hook of the same name (:mod:`hw_fhir.hookspecs`), called after the
    listeners; ``services.events`` is such a dispatcher.
    """

    def __init__(self, plugins: Any = None) -> None:
        self.plugins = plugins
        self._listeners: dict[str, list[tuple[Listener, tuple[str, ...] | None]]] = {
            name: [] for name in EVENTS
        }

    def subscribe(self, name: str, listener: Listener | None = None) -> Any:
        """Add a listener to an event; usable as a decorator (``@events.subscribe(name)``)."""
        _check_name(name)
        if listener is None:
            return lambda fn: self.subscribe(name, fn)
        self._listeners[name].append((listener, _accepted(listener, name)))
        return listener

    def unsubscribe(self, name: str, listener: Listener) -> None:
        """Remove a listener (no-op when it is not subscribed)."""
        _check_name(name)
        self._listeners[name] = [(fn, a) for fn, a in self._listeners[name] if fn is not listener]

    def listeners(self, name: str) -> list[Listener]:
        """Return the listeners of an event, in call order."""
        _check_name(name)
        return [fn for fn, _ in self._listeners[name]]

    def publish(self, name: str, **kwargs: Any) -> list[Any]:
        """Call every listener of ``name`` with the event's arguments; return their results."""
        _check_name(name)
        expected = set(EVENTS[name])
        if set(kwargs) != expected:
            raise TypeError(
                f"{name} is published with {', '.join(EVENTS[name])}, "
                f"not {', '.join(sorted(kwargs))}"
            )
        results: list[Any] = []
        first_error: BaseException | None = None
        for listener, accepted in list(self._listeners[name]):
            arguments = kwargs if accepted is None else {k: kwargs[k] for k in accepted}
            try:
                results.append(listener(**arguments))
            except Exception as exc:  # noqa: BLE001 - re-raised below after the others ran
                first_error = first_error or exc
        if self.plugins is not None:
            from .plugins import call_each

            try:
                results.extend(call_each(self.plugins, name, **kwargs))
            except Exception as exc:  # noqa: BLE001 - re-raised below, like a listener's
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return results


def publish(events: Events | None, name: str, **kwargs: Any) -> None:
    """Publish on ``events`` when there is a dispatcher (domain functions accept None)."""
    if events is not None:
        events.publish(name, **kwargs)
