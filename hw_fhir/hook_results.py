"""What the collecting hooks (``register_*``, ``interpret_score``) return, as one flat list."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["flatten_results"]


def flatten_results(results: Iterable[Any]) -> list[Any]:
    """Return every plugin's items in call order: lists are spread, None results dropped."""
    out: list[Any] = []
    for result in results:
        if result is None:
            continue
        if isinstance(result, (list, tuple)):
            out.extend(r for r in result if r is not None)
        else:
            out.append(result)
    return out
