"""Undelivered risk alerts on screen: a template global for the dashboard, panel and sandbox EHR.

The view data is :func:`hw_fhir.outcomes.undelivered_alerts`; the partial is
``templates/_undelivered_alerts.html`` (red, with the reason, until the alert is
delivered or its Flag acknowledged).
"""

from __future__ import annotations

import logging

from flask import Flask

from hw_fhir import outcomes
from hw_fhir.safety import config_problems

from .alert_links import bp as alert_links
from .state import services

__all__ = ["init_app", "undelivered_alerts"]

log = logging.getLogger("hw_fhir.web")


def undelivered_alerts(patient_id: str | None = None) -> list[outcomes.UndeliveredAlert]:
    """Return the active risk alerts (of one patient, or all), oldest first."""
    patient = f"Patient/{patient_id}" if patient_id else None
    return outcomes.undelivered_alerts(services().store, patient=patient)


def init_app(app: Flask) -> None:
    """Make ``undelivered_alerts(patient_id=None)`` available to every template; say what is
    wrong with the ``[safety]`` settings (``hw-fhir check`` refuses them in production)."""
    app.add_template_global(undelivered_alerts, "undelivered_alerts")
    app.register_blueprint(alert_links)  # /alerts/<flag id>: the alert email's link
    for problem in config_problems(services(app).settings):
        log.warning("%s", problem)
