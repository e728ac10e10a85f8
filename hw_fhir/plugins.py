"""The plugin manager: built-in ``default_*`` plugins plus installed ``hw_fhir`` entry points.

Also the ways hw-fhir calls hooks that are not a plain ``pm.hook.<name>(...)``
(:func:`call_each`, :func:`call_each_quietly`) and collects the web and worker
hooks. Channels are merged in :mod:`hw_fhir.channel_registry` (``channels`` is
re-exported here), catalog content in :mod:`hw_fhir.catalog.merge`, and a response
is scored through the hooks in :mod:`hw_fhir.scoring.pipeline`.

>>> pm = build_plugin_manager(settings)          # doctest: +SKIP
>>> pm.hook.channel_for(recipient=patient, ...)  # doctest: +SKIP

Nothing is loaded at import time. :func:`build_plugin_manager` registers the
built-in plugins (:data:`DEFAULT_PLUGINS`), then every installed entry point of the
group ``hw_fhir`` — unless ``HW_FHIR_PLUGINS`` (``Settings.plugins``) names which
ones to load: a comma-separated list of entry-point or distribution names; empty
loads them all, ``none`` loads none. Built-in plugins always load (a vendor
overrides them through ``*_for`` hooks, which they implement ``trylast``).
Finally ``check_pending()`` refuses a plugin implementing a hook that does not exist
(a misspelt name), as a :class:`~hw_fhir.errors.ConfigurationError`.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .catalog.merge import CatalogContent
from .channel_registry import channels
from .errors import ConfigurationError
from .hook_results import flatten_results

__all__ = [
    "DEFAULT_PLUGINS",
    "CatalogContent",
    "ScoreExtras",
    "PluginInfo",
    "PluginManager",
    "build_plugin_manager",
    "allowed_plugins",
    "plugin_infos",
    "call_each",
    "call_each_quietly",
    "channels",
    "blueprints",
    "template_dirs",
    "worker_tasks",
]

log = logging.getLogger("hw_fhir.plugins")

#: Built-in plugins, registered (in this order) before any installed one. Where they run
#: among a hook's implementations is decided by ``tryfirst``/``trylast``, then by pluggy's
#: rule that the plugin registered last is called first (docs/plugins.md).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "hw_fhir.default_catalog",
    "hw_fhir.default_scoring",
    "hw_fhir.default_plans",
    "hw_fhir.default_channels",
    "hw_fhir.default_reminders",
    "hw_fhir.default_demo",
    # register_worker_tasks: all three are tryfirst, and pluggy calls the last registered
    # first, so the jobs run as worker, sync, audit (docs/plugins.md)
    "hw_fhir.default_audit",
    "hw_fhir.default_sync",
    "hw_fhir.default_worker",
)


@dataclass(frozen=True)
class ScoreExtras:
    """What ``interpret_score`` adds to a ScoreResult."""

    scores: tuple[Any, ...] = ()
    risks: tuple[Any, ...] = ()
    notes: tuple[str, ...] = ()
    interpretation: Any = None


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, as ``hw-fhir plugins`` shows it."""

    name: str
    hooks: tuple[str, ...]
    version: str | None = None
    distribution: str | None = None
    builtin: bool = False


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which distribution each plugin came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, metadata.Distribution] = {}
        self.builtins: list[str] = []


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def allowed_plugins(value: str | None) -> frozenset[str] | None:
    """Parse ``HW_FHIR_PLUGINS``: None means all, an empty set none."""
    if value is None or not value.strip():
        return None
    if value.strip().lower() == "none":
        return frozenset()
    return frozenset(_normal(n) for n in value.split(",") if n.strip())


def build_plugin_manager(settings: Any = None, *, entry_points: bool = True,
                         plugins: Iterable[Any] = ()) -> PluginManager:
    """Build the plugin manager: built-ins, allowed entry points, then ``plugins`` given here."""
    pm = PluginManager()
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        pm.builtins.append(module_name)
    if entry_points:
        raw = getattr(settings, "plugins", None) if settings is not None else None
        allowed = allowed_plugins(raw if raw else os.environ.get("HW_FHIR_PLUGINS"))
        _load_entry_points(pm, allowed)
    for plugin in plugins:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"Plugin {pm.get_name(exc.plugin) or exc.plugin!r}: {exc}") from None
    return pm


def _load_entry_points(pm: PluginManager, allowed: frozenset[str] | None) -> None:
    for ep in sorted(metadata.entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        names = {_normal(ep.name)} | ({_normal(dist.metadata["Name"])} if dist else set())
        if allowed is not None and not names & allowed:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must say who it is
            raise ConfigurationError(f"Plugin {ep.name!r} cannot be loaded: {exc}") from exc
        try:
            pm.register(plugin, name=ep.name)
        except pluggy.PluginValidationError as exc:
            raise ConfigurationError(f"Plugin {ep.name!r}: {exc}") from None
        if dist is not None:
            pm.distributions[ep.name] = dist


def plugin_infos(pm: PluginManager, *, include_builtins: bool = False) -> list[PluginInfo]:
    """Return the loaded plugins with their versions and the hooks they implement."""
    out = []
    for name, plugin in pm.list_name_plugin():
        builtin = name in pm.builtins
        if builtin and not include_builtins:
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        dist = pm.distributions.get(name)
        out.append(PluginInfo(
            name=name, hooks=tuple(hooks),
            version=dist.version if dist else None,
            distribution=dist.metadata["Name"] if dist else None,
            builtin=builtin,
        ))
    return sorted(out, key=lambda p: (not p.builtin, p.name))


def call_each(pm: pluggy.PluginManager, name: str, **kwargs: Any) -> list[Any]:
    """Call every implementation of a hook even if one raises; then raise the first error.

    Same call order as ``pm.hook.<name>(**kwargs)``; used for events, where one
    failing listener must not keep the others from hearing about it.
    """
    caller = getattr(pm.hook, name)
    results: list[Any] = []
    first: BaseException | None = None
    for impl in reversed(caller.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            result = impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception as exc:  # noqa: BLE001 - re-raised after the others ran
            log.exception("Plugin %s failed in %s", impl.plugin_name, name)
            first = first or exc
            continue
        if result is not None:
            results.append(result)
    if first is not None:
        raise first
    return results


def call_each_quietly(pm: pluggy.PluginManager, name: str, *, about: str = "",
                      services: Any = None, **kwargs: Any) -> int:
    """Call every implementation of an event hook; log a failure and go on; return how many failed.

    For announcements of what is already stored (``risk_raised``), where a failing
    plugin must neither undo nor hide the write; ``services`` is passed on (None when the
    caller has none). The log names the plugin, the hook,
    ``about`` (e.g. ``Flag/<id>``) and the exception's type: never its message nor a
    traceback, which may quote patient data.
    """
    failed = 0
    kwargs["services"] = services
    for impl in reversed(getattr(pm.hook, name).get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception as exc:  # noqa: BLE001 - logged; the other plugins still hear of it
            failed += 1
            log.error("Plugin %s failed in %s%s (%s)", impl.plugin_name, name,
                      f" for {about}" if about else "", type(exc).__name__)
    return failed


def blueprints(pm: pluggy.PluginManager, settings: Any, *, services: Any = None) -> list[Any]:
    """Return every plugin's Flask blueprints (for the app factory to register)."""
    return flatten_results(pm.hook.register_blueprints(settings=settings, services=services))


def template_dirs(pm: pluggy.PluginManager, settings: Any, *, services: Any = None) -> list[Path]:
    """Return every plugin's template folders."""
    return [Path(p) for p in flatten_results(
        pm.hook.register_template_dirs(settings=settings, services=services))]


def worker_tasks(pm: pluggy.PluginManager, settings: Any, *, services: Any = None) -> list[Any]:
    """Return every plugin's periodic worker jobs, built-in ones first."""
    return flatten_results(pm.hook.register_worker_tasks(settings=settings, services=services))
