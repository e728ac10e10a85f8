"""Start-up of a service process: a usable database, migrated, with the activity library loaded.

``hw-fhir serve``, ``hw-fhir worker``, ``hw-fhir demo`` and ``hw-fhir db upgrade``
all start through :func:`start_services`:

1. the database URL is checked before anything is opened or created
   (:func:`database_url_problem`): a URL SQLAlchemy cannot parse, a database other
   than SQLite or PostgreSQL, a SQLite file in a folder that is missing or not
   writable → one readable :class:`~hw_fhir.errors.ConfigurationError`;
2. the store is opened; a server that cannot be reached (a missing PostgreSQL
   database, a refused connection) → one readable line too, never a traceback;
3. under the **start-up lock** (:func:`startup_lock`: a PostgreSQL advisory lock,
   on SQLite an exclusive lock on ``<database>.startup.lock``) the schema is migrated
   and the ``database_upgraded`` hook runs — the built-in one loads every plugin's
   catalog Questionnaires that are missing. Both steps are idempotent, and the lock
   makes several nodes starting at once take turns: the first does the work, the
   others find it done.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from .config import Settings, load_settings
from .errors import ConfigurationError
from .services import Services, build_services

__all__ = ["start_services", "prepare_database", "startup_lock", "database_url_problem",
           "safe_url", "default_database_url", "connection_problem", "STARTUP_LOCK_KEY"]

log = logging.getLogger("hw_fhir.startup")

#: PostgreSQL advisory lock key of the start-up (migrations and library), any bigint.
STARTUP_LOCK_KEY = 0x68775F66686972  # "hw_fhir"

_SUPPORTED = ("sqlite", "postgresql")


def safe_url(url: str) -> str:
    """Return a database URL with its password hidden (for messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def database_url_problem(url: str, *, must_exist: bool = False,
                         folder_created: bool = False) -> str | None:
    """Return why a database URL cannot be used (one line), or None; opens and creates nothing.

    ``must_exist``: a SQLite file that does not exist yet is a problem too (for
    ``hw-fhir check``, which must not create it). ``folder_created``: the SQLite
    file's folder is created when missing (the default file in the instance
    folder), so it needs only a writable ancestor.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return (f"HW_FHIR_DATABASE_URL {url!r} is not a database URL; use "
                "sqlite:////path/to/hw_fhir.db or postgresql+psycopg://user@host/db")
    backend = parsed.get_backend_name()
    if backend not in _SUPPORTED:
        return (f"HW_FHIR_DATABASE_URL: {backend} databases are not supported; use SQLite "
                "(sqlite:////path/to/hw_fhir.db) or PostgreSQL (postgresql+psycopg://user@host/db)")
    if backend == "postgresql":
        driver = parsed.get_driver_name()
        if driver != "psycopg":
            return (f"HW_FHIR_DATABASE_URL: the PostgreSQL driver {driver!r} is not installed; "
                    "use postgresql+psycopg://user@host/db")
        if not parsed.database:
            return "HW_FHIR_DATABASE_URL names no PostgreSQL database (…/dbname at the end)"
        return None
    database = parsed.database or ""
    if not database or database == ":memory:":
        return None
    path = Path(database)
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return f"The SQLite database {path} is not readable and writable by this user"
        return None
    if must_exist:
        return f"The SQLite database {path} does not exist yet (hw-fhir db upgrade creates it)"
    folder = path.parent
    if folder_created:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.is_dir():
        return f"Cannot create the SQLite database {path}: the folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"Cannot create the SQLite database {path}: the folder {folder} is not writable"
    return None


def default_database_url(settings: Settings) -> str:
    """Return the SQLite URL used when ``HW_FHIR_DATABASE_URL`` is not set."""
    return f"sqlite:///{Path(settings.instance_path) / 'hw_fhir.db'}"


def connection_problem(exc: BaseException, url: str) -> str:
    """Return the one-line reason a database could not be opened."""
    orig = getattr(exc, "orig", None) or exc
    first = next((line.strip() for line in str(orig).splitlines() if line.strip()),
                 type(orig).__name__)
    return f"Cannot use the database {safe_url(url)}: {first}"


@contextlib.contextmanager
def startup_lock(services: Services) -> Iterator[None]:
    """Hold the start-up lock of the database (see the module docstring)."""
    store = services.store
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": STARTUP_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": STARTUP_LOCK_KEY})
                conn.commit()
        return
    database = store.engine.url.database or ""
    if store.dialect != "sqlite" or not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.startup.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_database(services: Services) -> None:
    """Migrate the schema and run ``database_upgraded`` (loads the library) under the lock."""
    with startup_lock(services):
        services.store.upgrade()
        services.plugins.hook.database_upgraded(services=services)


def _reach_server(url: str) -> None:
    """Connect once to a database server (not SQLite); ConfigurationError when it fails."""
    if not url.startswith("postgresql"):
        return
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect():
            pass
    except (SQLAlchemyError, ImportError) as exc:
        raise ConfigurationError(connection_problem(exc, url)) from None
    finally:
        engine.dispose()


def start_services(settings: Settings | None = None, *, progress: Any = None,
                   **overrides: Any) -> Services:
    """Check the database URL, open the store, migrate it and load the library; return Services.

    ``progress``: a :func:`hw_fhir.progress.progress`-like factory, put in
    ``services.progress`` for the start-up's long steps (library loading).

    Raises :class:`~hw_fhir.errors.ConfigurationError` with one readable line when
    the database cannot be used; nothing is created then.
    """
    if settings is None:
        probe = load_settings(create=False, **overrides)
        problem = database_url_problem(probe.database_url,
                                       folder_created=probe.database_url == default_database_url(probe))
        if problem:
            raise ConfigurationError(problem)
        _reach_server(probe.database_url)  # before the instance folder and key are created
        settings = load_settings(**overrides)
    else:
        problem = database_url_problem(settings.database_url)
        if problem:
            raise ConfigurationError(problem)
    try:
        services = build_services(settings, upgrade=False)
    except (SQLAlchemyError, ImportError) as exc:
        raise ConfigurationError(connection_problem(exc, settings.database_url)) from None
    if progress is not None:
        services.progress = progress
    try:
        prepare_database(services)
    except SQLAlchemyError as exc:
        services.close()
        raise ConfigurationError(connection_problem(exc, settings.database_url)) from None
    services.progress = None
    return services
