"""Stores: where FHIR resources live (SqlStore on SQLite/PostgreSQL, RemoteStore over REST)."""

from __future__ import annotations

from .base import (
    HistoryResult,
    Params,
    SearchResult,
    Store,
    Stored,
    WriteResult,
    as_params,
    every_match,
    iter_all,
)
from .remote import RemoteStore
from .sql import SqlStore, now_instant

__all__ = [
    "Store",
    "Stored",
    "WriteResult",
    "SearchResult",
    "HistoryResult",
    "Params",
    "SqlStore",
    "RemoteStore",
    "as_params",
    "every_match",
    "iter_all",
    "now_instant",
    "open_store",
]


def open_store(url: str, *, base_url: str | None = None, upgrade: bool = True) -> SqlStore:
    """Open the SqlStore at a database URL and (by default) bring its schema up to date."""
    store = SqlStore(url, base_url=base_url)
    if upgrade:
        store.upgrade()
    return store
