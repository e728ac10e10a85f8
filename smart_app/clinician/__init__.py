"""The clinician area inside the EHR: dashboard, assign, review, session prep, library, panel.

Pages live under ``/clinician/`` and always carry the launch id (``?launch=``); the
launch landing page ``/app`` shows the dashboard (patient in context) or the panel.
Views are thin: the view models are :mod:`hw_fhir.review` and :mod:`hw_fhir.charts`,
writes go through :mod:`hw_fhir.assignment`, :mod:`hw_fhir.plans`,
:mod:`hw_fhir.library` and :mod:`hw_fhir.outcomes`.
"""

from __future__ import annotations

from flask import Flask

from . import activities, assign, dashboard, filters, messages, operations, reviews  # noqa: F401  (routes)
from .base import bp
from .dashboard import landing

__all__ = ["bp", "init_app", "landing"]


def init_app(app: Flask) -> None:
    """Register the clinician blueprint, its filters and the landing-page hook."""
    filters.init_app(app)
    app.add_template_global(landing, "clinician_landing")
    app.register_blueprint(bp)
