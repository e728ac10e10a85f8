"""A request body against the configured limits: the /fhir facade's check before any write.

:func:`check_body` checks the body's shape (depth, array lengths, NUL characters:
:func:`hw_fhir.limits.check_shape`), then each resource in it (a Bundle's entries) with
:func:`check_resource`: its JSON size, and the search index rows the store's own indexer
(:func:`hw_fhir.store.writes.index_rows`) would write for it. The limits themselves are
:class:`hw_fhir.limits.Limits`.
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import LimitExceeded
from .limits import Limits, check_shape
from .store.writes import index_rows

__all__ = ["check_body", "check_resource"]


def check_resource(resource: dict[str, Any], conf: Limits, *, size: int | None = None) -> None:
    """Check one resource against the size and index-row limits (its shape: :func:`check_body`)."""
    if size is None:
        size = len(orjson.dumps(resource))
    if size > conf.max_resource_bytes:
        raise LimitExceeded(f"The {resource.get('resourceType', 'resource')} is {size:,} bytes; "
                            f"at most {conf.max_resource_bytes:,} are accepted "
                            "(HW_FHIR_MAX_RESOURCE_BYTES)", status=413)
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return
    try:
        rows = sum(len(v) for v in index_rows({**resource, "id": str(resource.get("id") or "-")})
                   .values())
    except (AttributeError, KeyError, TypeError, ValueError):
        return  # malformed: validation says what is wrong
    if rows > conf.max_index_rows:
        raise LimitExceeded(f"The {rtype} would create {rows:,} search index rows; at most "
                            f"{conf.max_index_rows:,} are accepted (HW_FHIR_MAX_INDEX_ROWS)")


def check_body(body: Any, raw_size: int, conf: Limits) -> None:
    """Check a parsed request body: its shape, then each resource in it (a Bundle's entries)."""
    check_shape(body, conf.max_depth, conf.max_array_length)
    if not isinstance(body, dict):
        return
    if body.get("resourceType") == "Bundle":
        for entry in body.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):
                check_resource(resource, conf)
        return
    check_resource(body, conf, size=raw_size)
