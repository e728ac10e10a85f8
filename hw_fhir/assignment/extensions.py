"""Reading and writing the hw-fhir extensions on Tasks, CarePlan activities and notes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def extension(url: str, key: str, value: Any) -> dict[str, Any]:
    """Return an extension with one value (``key`` is e.g. ``valueString``)."""
    return {"url": url, key: value}


def extension_value(element: Mapping[str, Any], url: str) -> Any:
    """Return the value of an element's first extension with this url, or None."""
    for ext in element.get("extension") or []:
        if ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def without_extensions(element: Mapping[str, Any], urls: Iterable[str]) -> list[dict[str, Any]]:
    """Return an element's extensions except those with the given urls."""
    drop = set(urls)
    return [e for e in element.get("extension") or [] if e.get("url") not in drop]
