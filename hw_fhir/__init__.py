"""hw-fhir: therapy homework on FHIR R4 — the core library (no web framework)."""

from __future__ import annotations

from .config import Settings, load_settings
from .errors import (
    BusinessRuleError,
    Conflict,
    Forbidden,
    Gone,
    HwFhirError,
    InvalidInput,
    InvalidResource,
    InvalidResponse,
    InvalidSearch,
    Issue,
    NotFound,
    Unauthorized,
    VersionConflict,
)
from .models import validate
from .services import Services, build_services
from .store import SearchResult, SqlStore, Store, Stored, WriteResult, open_store

__all__ = [
    "Settings",
    "load_settings",
    "Services",
    "build_services",
    "Store",
    "SqlStore",
    "Stored",
    "WriteResult",
    "SearchResult",
    "open_store",
    "validate",
    "HwFhirError",
    "InvalidInput",
    "InvalidResource",
    "InvalidResponse",
    "InvalidSearch",
    "Issue",
    "NotFound",
    "Gone",
    "Conflict",
    "VersionConflict",
    "BusinessRuleError",
    "Forbidden",
    "Unauthorized",
]
