"""Built-in plugin: the PHQ-9, GAD-7, PHQ-2 and PCL-5 scorers.

:func:`hw_fhir.plugins.score` asks ``score_for`` first (a vendor's override), then
every scorer of ``register_scorers`` in order — these built-in ones first.
"""

from __future__ import annotations

from typing import Any

from .hookspecs import hookimpl

__all__ = ["register_scorers"]


@hookimpl(tryfirst=True)
def register_scorers() -> list[Any]:
    """Return the built-in instrument scorers."""
    from .scoring.engine import DEFAULT_SCORERS

    return list(DEFAULT_SCORERS)
