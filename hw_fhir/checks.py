"""Configuration checks: ``hw-fhir check``, and ``serve``/``worker`` at start-up.

Each check is a function ``check(ctx) -> Iterable[str]`` yielding one readable line
per problem (what is wrong and what to do); :data:`CHECKS` lists them in order and
:func:`run_checks` runs them. To add one, write such a function and append it to
:data:`CHECKS` (a check that needs the database sets ``needs_database = True`` on
itself: start-up skips those, since it migrates the database itself).

Checked: every ``HW_FHIR_*`` variable is a known setting (else "did you mean");
the plugins named in ``HW_FHIR_PLUGINS`` are installed; ``HW_FHIR_BASE_URL`` is set;
at least one EHR (``[[smart.ehr]]``) or backend client (``[[smart.backend_clients]]``)
is registered, and each parses; in production a shared secret key is set; every
installed reminder channel with a ``check()`` method can be reached (the email
channel connects to its SMTP server); the database is reachable, migrated and has
the activity library.

The practice safety contact (``[safety]``, :mod:`hw_fhir.safety`) is set, names a
loaded channel and an address that channel can use (:func:`check_safety`).

Nothing here creates anything: settings are read with ``create=False`` and a SQLite
file that does not exist is reported, not created.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import metadata
from typing import Any

from . import catalog, hookspecs
from .config import Settings, load_settings
from .errors import ConfigurationError
from .migrations import alembic_config
from .plugins import allowed_plugins, build_plugin_manager, channels
from .outcomes.crisis import crisis_config_problems
from .safety import config_problems
from .smart.backend import backend_clients
from .smart.registry import EhrRegistry
from .startup import connection_problem, database_url_problem
from .store import schema as S

__all__ = ["CheckContext", "CHECKS", "run_checks", "load_for_checks", "OTHER_VARIABLES",
           "check_variables", "check_plugins", "check_base_url", "check_clients",
           "check_secret", "check_channels", "check_safety", "check_database"]

#: ``HW_FHIR_*`` variables that are not settings but are read elsewhere.
OTHER_VARIABLES = frozenset({
    "HW_FHIR_CONFIG",  # the TOML config file
    "HW_FHIR_TEST_PG", "HW_FHIR_CHROMIUM", "HW_FHIR_CHROMEDRIVER",  # the test suite
    "HW_FHIR_WORKER_TEST_TASKS",
})


@dataclass
class CheckContext:
    """What the checks look at: the settings, the environment, and (built once) the plugins."""

    settings: Settings
    environ: Mapping[str, str]
    _plugins: Any = field(default=None, repr=False)

    @property
    def plugins(self) -> Any:
        """The plugin manager (built on first use; ConfigurationError when a plugin is broken)."""
        if self._plugins is None:
            self._plugins = build_plugin_manager(self.settings)
        return self._plugins


def setting_variables() -> list[str]:
    """Return the environment variable of every setting."""
    return [f"HW_FHIR_{f.name.upper()}" for f in fields(Settings) if f.name != "extra"]


def check_variables(ctx: CheckContext) -> Iterable[str]:
    """Unknown ``HW_FHIR_*`` variables (a misspelt one is silently ignored otherwise)."""
    known = set(setting_variables()) | OTHER_VARIABLES
    for name in sorted(ctx.environ):
        if not name.startswith("HW_FHIR_") or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; see hw_fhir/config.py for the settings"
        yield f"{name} is not a hw-fhir setting and is ignored{hint}"


def _installed_plugin_names() -> set[str]:
    names = set()
    for ep in metadata.entry_points(group=hookspecs.PROJECT):
        names.add(ep.name.strip().lower().replace("_", "-"))
        dist = getattr(ep, "dist", None)
        if dist is not None:
            names.add(str(dist.metadata["Name"]).strip().lower().replace("_", "-"))
    return names


def check_plugins(ctx: CheckContext) -> Iterable[str]:
    """Plugins named in ``HW_FHIR_PLUGINS`` that are not installed; plugins that fail to load."""
    wanted = allowed_plugins(ctx.settings.plugins or ctx.environ.get("HW_FHIR_PLUGINS"))
    installed = _installed_plugin_names()
    for name in sorted(wanted or ()):
        if name not in installed:
            close = difflib.get_close_matches(name, sorted(installed), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            yield (f"HW_FHIR_PLUGINS names {name!r}, which is not installed "
                   f"(pip install it, or remove it){hint}")
    try:
        ctx.plugins  # noqa: B018 - loads them
    except ConfigurationError as exc:
        yield exc.message


def check_base_url(ctx: CheckContext) -> Iterable[str]:
    """``HW_FHIR_BASE_URL``: reminder links and the FHIR base need the public address."""
    base = ctx.settings.base_url
    if not base:
        yield ("HW_FHIR_BASE_URL is not set: reminder links cannot be sent; set it to the app's "
               "public address, e.g. https://homework.example.org")
    elif not base.startswith(("https://", "http://")):
        yield f"HW_FHIR_BASE_URL {base!r} must start with https:// (or http:// in development)"
    elif ctx.settings.production and not base.startswith("https://"):
        yield f"HW_FHIR_BASE_URL {base!r} must use https:// in production"


def check_clients(ctx: CheckContext) -> Iterable[str]:
    """At least one EHR or backend client registered, and each registration valid."""
    smart = (ctx.settings.extra or {}).get("smart") or {}
    try:
        ehrs = list(EhrRegistry.from_settings(ctx.settings))
        clients = backend_clients(smart) if isinstance(smart, Mapping) else {}
    except ConfigurationError as exc:
        yield f"Config file: {exc.message}"
        return
    if not ehrs and not clients and not ctx.settings.sandbox:
        yield ("No EHR and no backend client is registered: nobody can launch or sync; add a "
               "[[smart.ehr]] or [[smart.backend_clients]] table to the HW_FHIR_CONFIG file")


def check_secret(ctx: CheckContext) -> Iterable[str]:
    """In production every node must share one secret key (sessions and patient links)."""
    if ctx.settings.production and not ctx.environ.get("HW_FHIR_SECRET_KEY") \
            and "secret_key" not in _file_keys(ctx.environ):
        yield ("HW_FHIR_SECRET_KEY is not set: each node would generate its own key and patient "
               "links would fail on the others; set the same long random value on every node")


def _file_keys(environ: Mapping[str, str]) -> set[str]:
    import tomllib
    from pathlib import Path

    path = environ.get("HW_FHIR_CONFIG")
    if not path:
        return set()
    try:
        return set(tomllib.loads(Path(path).read_text()))
    except (OSError, tomllib.TOMLDecodeError):
        return set()


def check_channels(ctx: CheckContext) -> Iterable[str]:
    """Every installed reminder channel that can check itself is reachable now."""
    try:
        installed = channels(ctx.plugins, ctx.settings)
    except ConfigurationError:
        return  # reported by check_plugins
    for name, channel in sorted(installed.items()):
        probe = getattr(channel, "check", None)
        if probe is None:
            continue
        try:
            problem = probe()
        except Exception as exc:  # noqa: BLE001 - a plugin's check must not stop the others
            problem = f"{name}: its check failed ({type(exc).__name__}: {exc})"
        if problem:
            yield str(problem)


def check_safety(ctx: CheckContext) -> Iterable[str]:
    """The practice safety contact, the last recipient of every risk alert, is usable."""
    try:
        loaded = sorted(channels(ctx.plugins, ctx.settings))
    except ConfigurationError:
        loaded = None  # reported by check_plugins
    yield from config_problems(ctx.settings, loaded)
    yield from crisis_config_problems(ctx.settings)


def check_database(ctx: CheckContext) -> Iterable[str]:
    """The database: a usable URL, reachable, migrated to the newest schema, library loaded."""
    from sqlalchemy.exc import SQLAlchemyError

    url = ctx.settings.database_url
    problem = database_url_problem(url, must_exist=True)
    if problem:
        yield problem
        return
    try:
        yield from _database_state(url)
    except (SQLAlchemyError, ImportError) as exc:
        yield connection_problem(exc, url)


check_database.needs_database = True  # type: ignore[attr-defined]


def _database_state(url: str) -> Iterable[str]:
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, select

    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
        heads = set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
        if current != heads:
            yield (f"The database is not migrated (revision {', '.join(sorted(current)) or 'none'}, "
                   f"newest {', '.join(sorted(heads))}): run hw-fhir db upgrade")
            return

        with engine.connect() as conn:
            stored = set(conn.execute(select(S.resource.c.res_id).where(
                S.resource.c.res_type == "Questionnaire", S.resource.c.deleted.is_(False))).scalars())
        missing = [q["id"] for q in catalog.load_questionnaires() if q.get("id") not in stored]
        if missing:
            yield (f"The activity library misses {len(missing)} of "
                   f"{len(catalog.load_questionnaires())} activities: run hw-fhir db upgrade")
    finally:
        engine.dispose()


#: Every check, in the order reported.
CHECKS: list[Callable[[CheckContext], Iterable[str]]] = [
    check_variables,
    check_plugins,
    check_database,
    check_base_url,
    check_clients,
    check_secret,
    check_channels,
    check_safety,
]


def load_for_checks(environ: Mapping[str, str] | None = None,
                    **overrides: Any) -> tuple[Settings, list[str]]:
    """Read the settings without creating anything; return them and the problems found reading.

    A production contradiction (``Settings.check``: no base URL, the open API...) is a
    problem, and the settings are read again without it so every other check still
    runs; a setting that cannot be read at all raises ConfigurationError.
    """
    try:
        return load_settings(environ, create=False, **overrides), []
    except ConfigurationError as exc:
        try:
            relaxed = load_settings(environ, create=False, **{**overrides, "production": False})
        except ConfigurationError:
            raise exc from None
        return replace(relaxed, production=True), [exc.message]


def run_checks(settings: Settings, *, environ: Mapping[str, str] | None = None,
               database: bool = True, already: Iterable[str] = ()) -> list[str]:
    """Run every check; return the problems, one line each, after ``already`` (found reading).

    ``database=False``: skip the database checks. A problem about the same variable as
    one in ``already`` is not repeated.
    """
    ctx = CheckContext(settings=settings, environ=dict(os.environ if environ is None else environ))
    problems: list[str] = list(already)
    named = {p.split()[0] for p in problems if p.startswith("HW_FHIR_")}
    for check in CHECKS:
        if not database and getattr(check, "needs_database", False):
            continue
        problems.extend(p for p in check(ctx) if p.split()[0] not in named)
    return problems
