"""The hw-fhir Flask app: SMART launch, clinician and patient pages, the /fhir API.

``create_app(test_config=None)`` builds it; nothing happens at import time.
"""

from __future__ import annotations

from .app import create_app
from .state import AppState, app_state, services

__all__ = ["create_app", "services", "app_state", "AppState"]
