"""Built-in plugin: the shipped activity library and pathways, loaded by ``hw-fhir db upgrade``."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from . import catalog
from .catalog.merge import CatalogContent, catalog_questionnaires
from .hookspecs import hookimpl
from .library import load_catalog

__all__ = ["register_catalog", "database_upgraded", "CHUNK"]

log = logging.getLogger("hw_fhir.catalog")


@hookimpl(tryfirst=True)
def register_catalog() -> list[CatalogContent]:
    """Return the Questionnaires and pathway templates shipped in :mod:`hw_fhir.catalog`."""
    return [CatalogContent(questionnaires=tuple(catalog.load_questionnaires()),
                           pathways=tuple(catalog.load_pathways()), source="hw_fhir")]


#: Questionnaires checked and written per transaction while loading the library.
CHUNK = 100


@hookimpl(trylast=True)
def database_upgraded(services: Any) -> None:
    """Write every plugin's catalog Questionnaires that the store does not have yet.

    In chunks of :data:`CHUNK` (each all-or-nothing, and loading is idempotent), with
    progress when the caller put a :func:`hw_fhir.progress.progress`-like factory in
    ``services.progress`` (the command line does).
    """
    items = catalog_questionnaires(services.plugins, services.settings, services=services)
    factory = services.progress
    show = factory("Activity library", total=len(items)) if factory else nullcontext(None)
    created = existing = 0
    with show as advance:
        for start in range(0, len(items), CHUNK):
            done = load_catalog(services.store, items[start:start + CHUNK])
            created += len(done.created)
            existing += len(done.existing)
            if advance is not None:
                advance(len(done.created) + len(done.existing))
    if created:
        log.info("Activity library: %d activities added (%d already there)", created, existing)
