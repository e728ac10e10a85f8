"""The app factory: :func:`create_app` builds the Flask app and wires every part in order."""

from __future__ import annotations

import logging
import os
from typing import Any

from babel import localedata
from flask import Flask, send_from_directory
from jinja2 import ChoiceLoader, FileSystemBytecodeCache, FileSystemLoader

from hw_fhir.config import load_settings
from hw_fhir.i18n import LANGUAGES
from hw_fhir.plugins import blueprints, template_dirs
from hw_fhir.services import Services, build_services

from . import (
    alerts,
    audit,
    auth,
    bulk_api,
    clinician,
    cors,
    errors,
    fhir_api,
    launch,
    outcomes_api,
    patient,
    sandbox,
    security,
)
from .fhir_auth import is_protected, protect
from .state import app_state, install_state

__all__ = ["create_app"]

log = logging.getLogger("hw_fhir")


def create_app(test_config: dict[str, Any] | None = None, *,
               services: Services | None = None) -> Flask:
    """Create the app; ``test_config`` overrides settings (lower-case names) and Flask config.

    ``services``: use these (already started, see :func:`hw_fhir.startup.start_services`)
    instead of building new ones; their settings win over lower-case ``test_config`` keys.
    """
    test_config = dict(test_config or {})
    flask_config = {k: test_config.pop(k) for k in list(test_config) if k.isupper()}
    settings = services.settings if services is not None else load_settings(**test_config)
    app = Flask("smart_app", instance_path=settings.instance_path, instance_relative_config=True)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
    )
    app.config.update(flask_config)
    if settings.open_api:
        log.warning("HW_FHIR_OPEN_API is on: /fhir answers WITHOUT authorization. "
                    "Development only; never expose this server.")
    install_state(app, services if services is not None else build_services(settings))
    _template_bytecode_cache(app)
    for language in LANGUAGES:  # the first date shown in a language read Babel's data then
        localedata.load(language)

    cors.init_app(app)
    alerts.init_app(app)
    errors.init_app(app)
    fhir_api.init_app(app)
    bulk_api.init_app(app)
    outcomes_api.init_app(app)
    security.init_app(app)
    auth.init_app(app)
    audit.init_app(app)
    launch.init_app(app)
    patient.init_app(app)
    clinician.init_app(app)
    if settings.sandbox:
        sandbox.init_app(app)
    _mount_plugins(app)

    @app.get("/favicon.ico")
    def favicon() -> Any:
        return send_from_directory(app.static_folder or "static", "favicon.svg",
                                   mimetype="image/svg+xml", max_age=86400)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _template_bytecode_cache(app: Flask) -> None:
    """Keep compiled templates in the instance folder (``jinja-cache``), checked against
    each template's source, so that a new process renders its first pages without
    compiling their templates again (about 0.5 s of CPU for all of them). No cache when
    the folder cannot be made."""
    folder = os.path.join(app.instance_path, "jinja-cache")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return
    if os.access(folder, os.W_OK):
        app.jinja_env.bytecode_cache = FileSystemBytecodeCache(folder)


def _mount_plugins(app: Flask) -> None:
    """Register the blueprints and template folders that plugins contribute.

    A plugin blueprint under ``/fhir`` serves FHIR data: it passes the one /fhir
    authorizer like the built-in ones (:func:`smart_app.fhir_auth.protect`).
    """
    svc = app_state(app).services
    for blueprint in blueprints(svc.plugins, svc.settings, services=svc):
        if (blueprint.url_prefix or "").startswith("/fhir") and not is_protected(blueprint):
            protect(blueprint)
        app.register_blueprint(blueprint)
    dirs = template_dirs(svc.plugins, svc.settings, services=svc)
    if dirs:
        app.jinja_loader = ChoiceLoader([FileSystemLoader([str(d) for d in dirs]),
                                         app.jinja_loader])

