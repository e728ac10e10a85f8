"""The patient area: secure-link entry (``/p/<token>``), to-do list, homework forms, progress.

Pages live under ``/my/``; a reminder's link is ``/p/<token>``; a patient portal
(SMART standalone launch) enters through ``/my/launch?launch=<id>``. Views are in
:mod:`.views`; the pieces without Flask are :mod:`.todo`, :mod:`.preferences` and
:mod:`.ratelimit`, and the form renderer is :mod:`hw_fhir.render`.
"""

from __future__ import annotations

import json

from flask import Flask
from markupsafe import Markup, escape

from . import language
from . import messages  # noqa: F401  (routes)
from .crisis_line import crisis_line
from ..state import app_state
from .ratelimit import RateLimiter
from . import pwa
from .views import bp

__all__ = ["bp", "init_app"]


def _json_attr(value: object) -> Markup:
    """Return JSON for an HTML attribute value (escaped; quote the attribute)."""
    return Markup(escape(json.dumps(value, separators=(",", ":"))))


def init_app(app: Flask) -> None:
    """Register the patient blueprint and its rate limiter."""
    state = app_state(app)
    state.patient_limiter = RateLimiter(state.services.store)
    app.add_template_filter(_json_attr, "json_attr")
    app.add_template_global(crisis_line, "crisis_line")
    language.init_app(app)
    app.register_blueprint(bp)
    app.register_blueprint(pwa.bp)
