"""The installed reminder channels: every plugin's ``register_channels``, merged by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hook_results import flatten_results

if TYPE_CHECKING:
    import pluggy

__all__ = ["channels"]


def channels(pm: pluggy.PluginManager, settings: Any, store: Any = None, *,
             services: Any = None) -> dict[str, Any]:
    """Return every registered channel by name; a plugin's channel replaces a built-in namesake.

    Built-ins implement ``register_channels`` with ``tryfirst`` (the demo inbox
    ``trylast``), so the order of the results decides a name clash: the last one wins.
    """
    found: dict[str, Any] = {}
    for channel in flatten_results(pm.hook.register_channels(settings=settings, store=store,
                                                              services=services)):
        found[channel.name] = channel
    return found
