"""Every plugin's catalog content (``register_catalog``), merged: each Questionnaire and pathway once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..hook_results import flatten_results
from . import check_pathway

if TYPE_CHECKING:
    import pluggy

__all__ = ["CatalogContent", "catalog_content", "catalog_questionnaires", "catalog_pathways"]


@dataclass(frozen=True)
class CatalogContent:
    """Activities (Questionnaires) and pathway templates a plugin ships."""

    questionnaires: tuple[dict[str, Any], ...] = ()
    pathways: tuple[dict[str, Any], ...] = ()
    source: str = ""


def catalog_content(pm: pluggy.PluginManager, settings: Any = None, *,
                    services: Any = None) -> list[CatalogContent]:
    """Return every plugin's catalog content (built-in catalog first)."""
    items = flatten_results(pm.hook.register_catalog(settings=settings, services=services))
    for item in items:
        if not isinstance(item, CatalogContent):
            raise ConfigurationError(f"register_catalog returned {type(item).__name__}, "
                                     "not CatalogContent")
    return items


def catalog_questionnaires(pm: pluggy.PluginManager, settings: Any = None, *,
                           services: Any = None) -> list[dict[str, Any]]:
    """Return the Questionnaires of every plugin's catalog; a ``url|version`` is kept once."""
    seen: set[str] = set()
    out = []
    for content in catalog_content(pm, settings, services=services):
        for questionnaire in content.questionnaires:
            key = f"{questionnaire.get('url')}|{questionnaire.get('version')}"
            if key not in seen:
                seen.add(key)
                out.append(questionnaire)
    return out


def catalog_pathways(pm: pluggy.PluginManager, settings: Any = None, *,
                     services: Any = None) -> list[dict[str, Any]]:
    """Return the pathway templates of every plugin's catalog, checked; an id is kept once."""
    seen: set[str] = set()
    out = []
    for content in catalog_content(pm, settings, services=services):
        for pathway in content.pathways:
            checked = check_pathway(pathway)
            if checked["id"] not in seen:
                seen.add(checked["id"])
                out.append(checked)
    return out
