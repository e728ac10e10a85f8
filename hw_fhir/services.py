"""The running system's parts, wired once: settings, store, plugin manager.

Built by :func:`build_services` (no work at import time); the Flask app keeps
one (``smart_app.state.services()``, also ``app.extensions["hw_fhir"]``), the CLI
and workers build their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .audit import close_trail
from .config import Settings
from .events import Events
from .plugins import build_plugin_manager
from .store import Store, open_store

__all__ = ["Services", "build_services"]


@dataclass
class Services:
    """Settings, the store and the plugin manager of one running hw-fhir."""

    settings: Settings
    store: Store
    #: Anything else a plugin or test attaches by name; each part with an ``after_fork()``
    #: is rebuilt in forked children.
    extras: dict[str, Any] = field(default_factory=dict)
    #: The pluggy plugin manager (:func:`hw_fhir.plugins.build_plugin_manager`).
    plugins: Any = None
    #: The one domain event dispatcher, publishing to the plugins' hooks: pass it as
    #: ``events=`` to the domain functions. One given here is kept (its listeners stay)
    #: and bound to the plugins; else one is made.
    events: Events = None  # type: ignore[assignment]
    #: The name of the worker running in this process (None outside workers).
    worker_name: str | None = None
    #: A :func:`hw_fhir.progress.progress`-like factory for long start-up steps (the CLI sets it).
    progress: Callable[..., Any] | None = None
    #: Backend Services token providers of the sync outbox targets, by target name.
    outbox_tokens: dict[str, Any] = field(default_factory=dict)
    #: What scoring on completion recorded, until the /fhir write that completed the
    #: response asks for it (:class:`hw_fhir.outcomes.listener.CompletionScores`).
    completion_scores: Any = None

    def __post_init__(self) -> None:
        if self.plugins is None:
            self.plugins = build_plugin_manager(self.settings)
        if self.events is None:
            self.events = Events(plugins=self.plugins, services=self)
        elif getattr(self.events, "plugins", False) is None:
            self.events.plugins = self.plugins
            self.events.services = self

    def after_fork(self) -> None:
        """Rebuild in a forked child what the parent built: database pools, HTTP sessions.

        Nothing opened before a fork (pooled sockets, keep-alive connections, locks held
        by the parent's threads) is used by the child; each is rebuilt on first use.
        """
        self.store.after_fork()
        for part in self.extras.values():
            hook = getattr(part, "after_fork", None)
            if callable(hook):
                hook()

    def close(self) -> None:
        """Write the queued audit events; release database connections."""
        close_trail(self.store)
        self.store.dispose()


def build_services(settings: Settings, *, upgrade: bool = True, plugins: Any = None) -> Services:
    """Open the store (migrating it to the newest schema), build the plugin manager, wire both."""
    store = open_store(settings.database_url, base_url=settings.fhir_base, upgrade=upgrade)
    if plugins is None:
        plugins = build_plugin_manager(settings)
    return Services(settings=settings, store=store, plugins=plugins)
