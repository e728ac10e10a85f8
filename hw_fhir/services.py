"""The running system's parts, wired once: settings, store, plugin manager.

Built by :func:`build_services` (no work at import time); the Flask app keeps
one in ``app.extensions["hw_fhir"]``, the CLI and workers build their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .store import SqlStore, open_store

__all__ = ["Services", "build_services"]


@dataclass
class Services:
    """Settings, the store and the plugin manager of one running hw-fhir."""

    settings: Settings
    store: SqlStore
    extras: dict[str, Any] = field(default_factory=dict)
    #: The pluggy plugin manager (:func:`hw_fhir.plugins.build_plugin_manager`).
    plugins: Any = None

    def __post_init__(self) -> None:
        if self.plugins is None:
            from .plugins import build_plugin_manager

            self.plugins = build_plugin_manager(self.settings)
        self.events  # noqa: B018 - create the shared dispatcher now, bound to the plugins

    @property
    def events(self) -> Any:
        """The one domain event dispatcher (``extras["events"]``), publishing to the plugins' hooks.

        Pass it as ``events=`` to the domain functions. A dispatcher someone stored in
        ``extras["events"]`` first is kept (its listeners stay) and bound to the plugins.
        """
        dispatcher = self.extras.get("events")
        if dispatcher is None:
            from .events import Events

            dispatcher = self.extras["events"] = Events(plugins=self.plugins)
        elif getattr(dispatcher, "plugins", False) is None:
            dispatcher.plugins = self.plugins
        return dispatcher

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
        from .audit import close_trail

        close_trail(self.store)
        self.store.dispose()


def build_services(settings: Settings, *, upgrade: bool = True, plugins: Any = None) -> Services:
    """Open the store (migrating it to the newest schema), build the plugin manager, wire both."""
    store = open_store(settings.database_url, base_url=settings.fhir_base, upgrade=upgrade)
    if plugins is None:
        from .plugins import build_plugin_manager

        plugins = build_plugin_manager(settings)
    return Services(settings=settings, store=store, plugins=plugins)
