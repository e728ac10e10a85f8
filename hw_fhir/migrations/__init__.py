"""Alembic migrations of the SqlStore schema; :func:`upgrade` runs them to ``head``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

__all__ = ["alembic_config", "upgrade", "current_revision"]

_HERE = Path(__file__).resolve().parent


def alembic_config(engine: Engine) -> Config:
    """Return an Alembic config bound to an engine."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Upgrade the database to ``revision`` (default: every branch's newest)."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """Return the database's current Alembic revision (None before any migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
