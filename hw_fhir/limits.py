"""Explicit limits on what a client may send, each refused with a clear OperationOutcome.

Settings (``HW_FHIR_*``; defaults in :class:`~hw_fhir.config.Settings`):

* ``max_resource_bytes`` — one resource's JSON size (a Bundle's entries count each on
  their own); more: **413**.
* ``max_array_length`` — elements in any one JSON array; more: **422**.
* ``max_depth`` — nesting of objects and arrays; more: **422** (at most
  :data:`HARD_MAX_DEPTH`, which every write is held to whatever the setting says, so
  no input can exhaust the interpreter's recursion).
* ``max_index_rows`` — search index rows one resource may create (identifiers, codes,
  references...); more: **422**.

Strings containing NUL (``\\u0000``) are refused everywhere (400): PostgreSQL cannot store
them, and no FHIR string may contain them.

The /fhir facade checks a request body with :func:`hw_fhir.body_limits.check_body`
before anything is stored; :func:`check_structure` (depth and NUL only) runs in
:func:`hw_fhir.models.validate`, under every write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError, InvalidResource, InvalidSearch, LimitExceeded

__all__ = ["HARD_MAX_DEPTH", "Limits", "limits", "check_shape", "check_structure",
           "check_search_value"]

#: No JSON value deeper than this is accepted by any write, whatever the settings.
HARD_MAX_DEPTH = 100


@dataclass(frozen=True)
class Limits:
    """The limits of one running hw-fhir."""

    max_resource_bytes: int = 2 * 1024 * 1024
    max_array_length: int = 10_000
    max_depth: int = 64
    max_index_rows: int = 2_000

    def __post_init__(self) -> None:
        for name in ("max_resource_bytes", "max_array_length", "max_depth", "max_index_rows"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"HW_FHIR_{name.upper()} must be at least 1")
        if self.max_depth > HARD_MAX_DEPTH:
            raise ConfigurationError(f"HW_FHIR_MAX_DEPTH may be at most {HARD_MAX_DEPTH}")


def limits(settings: Any) -> Limits:
    """Return the limits of these settings."""
    return Limits(**{name: int(getattr(settings, name)) for name in
                     ("max_resource_bytes", "max_array_length", "max_depth", "max_index_rows")
                     if getattr(settings, name, None) is not None})


def check_shape(value: Any, max_depth: int, max_array: int | None) -> None:
    """Check nesting, array lengths (``max_array`` None: any) and NUL characters, iteratively."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise InvalidResource(f"{path or 'A string'} contains a NUL character (\\u0000), "
                                      "which FHIR strings may not")
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > max_depth:
            raise LimitExceeded(f"The JSON is nested more than {max_depth} levels deep "
                                f"(at {path or 'the top'}; HW_FHIR_MAX_DEPTH)")
        if isinstance(node, dict):
            for key, item in node.items():
                if "\x00" in key:
                    raise InvalidResource("A JSON key contains a NUL character (\\u0000)")
                stack.append((item, depth + 1, f"{path}.{key}" if path else key))
        else:
            if max_array is not None and len(node) > max_array:
                raise LimitExceeded(f"{path or 'An array'} has {len(node)} elements; at most "
                                    f"{max_array} are accepted (HW_FHIR_MAX_ARRAY_LENGTH)")
            stack.extend((item, depth + 1, f"{path}[{n}]") for n, item in enumerate(node))


def check_structure(value: Any) -> None:
    """Refuse NUL characters and nesting beyond :data:`HARD_MAX_DEPTH` (every write)."""
    check_shape(value, HARD_MAX_DEPTH, None)


def check_search_value(name: str, value: str) -> None:
    """Refuse a search parameter (or its value) containing NUL or other control characters."""
    if any(ord(c) < 32 and c not in "\t" for c in name + value):
        raise InvalidSearch(f"The search parameter {name[:64]!r} contains a control character")
