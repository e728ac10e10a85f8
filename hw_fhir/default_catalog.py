"""Built-in plugin: the shipped activity library and pathways, loaded by ``hw-fhir db upgrade``."""

from __future__ import annotations

import logging
from typing import Any

from . import catalog
from .hookspecs import hookimpl
from .plugins import CatalogContent, catalog_questionnaires

__all__ = ["register_catalog", "database_upgraded"]

log = logging.getLogger("hw_fhir.catalog")


@hookimpl(tryfirst=True)
def register_catalog() -> list[CatalogContent]:
    """Return the Questionnaires and pathway templates shipped in :mod:`hw_fhir.catalog`."""
    return [CatalogContent(questionnaires=tuple(catalog.load_questionnaires()),
                           pathways=tuple(catalog.load_pathways()), source="hw_fhir")]


@hookimpl(trylast=True)
def database_upgraded(services: Any) -> None:
    """Write every plugin's catalog Questionnaires that the store does not have yet."""
    from .library import load_catalog

    done = load_catalog(services.store, catalog_questionnaires(services.plugins, services.settings))
    if done.created:
        log.info("Activity library: %d activities added (%d already there)", len(done.created),
                 len(done.existing))
