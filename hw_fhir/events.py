"""What happened in the homework domain: a thin publisher over the pluggy event hooks.

The domain (:mod:`~hw_fhir.assignment`, :mod:`~hw_fhir.plans`,
:mod:`~hw_fhir.completion`) publishes an event *after* the write it describes has
been stored, so scoring, plans, reminders and sync can react. The events, their names
and their arguments are the hooks of :data:`hw_fhir.hookspecs.DOMAIN_EVENTS`
(``task_created``, ``task_status_changed``, ``response_saved``,
``response_completed``, ``plan_created``; ``docs/plugins.md`` describes each):
:meth:`Events.publish` calls the hook of that name on the plugin manager, with the
publisher's arguments plus ``services``. Every built-in reaction is a
``hw_fhir/default_*.py`` plugin implementing the hook.

A reaction that raises does not stop the others; after all ran, the first error is
raised again to the publisher. The data written before the event stays written.
:meth:`Events.subscribe` adds an ad-hoc listener (a plugin with one ``tryfirst``
implementation: listeners run before the plugins, the one subscribed last first, as
pluggy orders them); nothing built in relies on it.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Mapping
from types import MappingProxyType, SimpleNamespace
from typing import TYPE_CHECKING, Any

from .errors import UnknownEvent, WrongEventArguments
from .hookspecs import DOMAIN_EVENTS, hookimpl
from .plugins import PluginManager, call_each

if TYPE_CHECKING:
    import pluggy

    from .services import Services

__all__ = [
    "EVENTS",
    "TASK_CREATED",
    "TASK_STATUS_CHANGED",
    "RESPONSE_SAVED",
    "RESPONSE_COMPLETED",
    "PLAN_CREATED",
    "Events",
    "publish",
    "event_arguments",
]

TASK_CREATED = "task_created"
TASK_STATUS_CHANGED = "task_status_changed"
RESPONSE_SAVED = "response_saved"
RESPONSE_COMPLETED = "response_completed"
PLAN_CREATED = "plan_created"

#: The argument every hook receives from the publisher itself, not from the domain.
SERVICES = "services"


def event_arguments(name: str) -> tuple[str, ...]:
    """Return the arguments a domain event is published with (its hookspec's, but ``services``)."""
    for spec in DOMAIN_EVENTS:
        if spec.__name__ == name:
            return tuple(p for p in inspect.signature(spec).parameters if p != SERVICES)
    raise UnknownEvent(f"Unknown event {name!r}; known events: "
                       f"{', '.join(s.__name__ for s in DOMAIN_EVENTS)}")


#: Every event and the keyword arguments it is published with, read from the hookspecs.
EVENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {spec.__name__: event_arguments(spec.__name__) for spec in DOMAIN_EVENTS})

Listener = Callable[..., Any]
_numbers = itertools.count(1)


def _accepted(listener: Listener, name: str) -> tuple[str, ...]:
    """Return the event arguments a listener takes (all of them when it takes ``**kwargs``)."""
    arguments = (*event_arguments(name), SERVICES)
    try:
        signature = inspect.signature(listener)
    except (TypeError, ValueError):
        return arguments
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return arguments
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            raise WrongEventArguments(f"A listener of {name} takes keyword arguments only")
        if parameter.name not in arguments and parameter.default is inspect.Parameter.empty:
            raise WrongEventArguments(
                f"A listener of {name} asks for {parameter.name!r}, which the event does not "
                f"have ({', '.join(arguments)})")
        names.append(parameter.name)
    return tuple(n for n in names if n in arguments)


def _listener_plugin(name: str, listener: Listener) -> SimpleNamespace:
    """Wrap a listener as a plugin implementing the hook ``name`` (called before plugins).

    pluggy reads an implementation's arguments from its code, so the implementation is
    a function whose parameters are exactly the arguments the listener takes.
    """
    accepted = _accepted(listener, name)  # hookspec argument names: identifiers
    source = (f"def {name}({', '.join(accepted)}):\n"
              f"    return listener({', '.join(f'{a}={a}' for a in accepted)})\n")
    namespace: dict[str, Any] = {"listener": listener}
    exec(source, namespace)  # noqa: S102 - the names are the hookspec's own
    return SimpleNamespace(**{name: hookimpl(tryfirst=True)(namespace[name])})


class Events:
    """Publishes the domain events as pluggy hooks of ``plugins`` (``services.plugins``).

    ``services.events`` is the running system's publisher. ``Events()`` without a plugin
    manager publishes to its listeners only (a manager with the hookspecs and no plugin).
    """

    def __init__(self, plugins: pluggy.PluginManager | None = None,
                 services: Services | None = None) -> None:
        self._plugins = plugins
        self._own: pluggy.PluginManager | None = None
        self.services = services
        self._subscribed: list[tuple[str, Listener, str]] = []

    @property
    def plugins(self) -> pluggy.PluginManager | None:
        """The plugin manager the events are published to (None: listeners only)."""
        return self._plugins

    @plugins.setter
    def plugins(self, manager: pluggy.PluginManager | None) -> None:
        old = self._manager()
        self._plugins = manager
        new = self._manager()
        for _, _, plugin_name in self._subscribed:
            plugin = old.unregister(name=plugin_name)
            new.register(plugin, name=plugin_name)

    def _manager(self) -> pluggy.PluginManager:
        if self._plugins is not None:
            return self._plugins
        if self._own is None:
            self._own = PluginManager()
        return self._own

    def subscribe(self, name: str, listener: Listener | None = None) -> Any:
        """Add a listener to an event; usable as a decorator (``@events.subscribe(name)``)."""
        event_arguments(name)
        if listener is None:
            return lambda fn: self.subscribe(name, fn)
        plugin_name = f"hw_fhir.events.listener-{next(_numbers)}"
        self._manager().register(_listener_plugin(name, listener), name=plugin_name)
        self._subscribed.append((name, listener, plugin_name))
        return listener

    def unsubscribe(self, name: str, listener: Listener) -> None:
        """Remove a listener (no-op when it is not subscribed)."""
        event_arguments(name)
        for entry in [e for e in self._subscribed if e[0] == name and e[1] is listener]:
            self._manager().unregister(name=entry[2])
            self._subscribed.remove(entry)

    def listeners(self, name: str) -> list[Listener]:
        """Return the ad-hoc listeners of an event, in call order."""
        event_arguments(name)
        order = [impl.plugin_name for impl in reversed(getattr(self._manager().hook, name)
                                                       .get_hookimpls())]
        by_plugin = {plugin_name: fn for event, fn, plugin_name in self._subscribed if event == name}
        return [by_plugin[p] for p in order if p in by_plugin]

    def publish(self, name: str, **kwargs: Any) -> list[Any]:
        """Call the hook ``name`` with the event's arguments and ``services``; return the results.

        Every implementation runs even when one raises; then the first error is raised.
        """
        expected = set(event_arguments(name))
        given = set(kwargs) - {SERVICES}
        if given != expected:
            raise WrongEventArguments(
                f"{name} is published with {', '.join(event_arguments(name))}, "
                f"not {', '.join(sorted(given))}")
        kwargs.setdefault(SERVICES, self.services)
        return call_each(self._manager(), name, **kwargs)


def publish(events: Events | None, name: str, **kwargs: Any) -> None:
    """Publish on ``events`` when there is a publisher (domain functions accept None)."""
    if events is not None:
        events.publish(name, **kwargs)
