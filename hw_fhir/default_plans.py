"""Built-in plugin: a pathway's next step is released as soon as the step before it is done.

``response_completed``: when the completed Task belongs to a CarePlan, the plan is
advanced at once (:func:`hw_fhir.plans.release_after_completion`) instead of at the
scheduler's next pass; the Tasks created are announced on ``services.events``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl
from .plans import release_after_completion

if TYPE_CHECKING:
    from .services import Services
    from .store.base import Store

__all__ = ["response_completed"]


@hookimpl(trylast=True)
def response_completed(store: Store, task: dict[str, Any], amended: bool,
                       services: Services | None) -> None:
    """Advance the completed Task's plan (a first submission only, not an amendment)."""
    settings = services.settings if services is not None else None
    release_after_completion(
        store, task, amended=amended,
        horizon_days=settings.materialize_horizon_days if settings is not None else 14,
        events=services.events if services is not None else None)
