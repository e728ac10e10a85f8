"""Loading the shipped catalog (:mod:`hw_fhir.catalog`) into a store, idempotently.

:func:`load_catalog` writes the shipped Questionnaires that are missing, in one
transaction; a Questionnaire whose ``url|version`` is already stored is left as it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .. import catalog
from ..errors import NotFound
from ..store.base import Store
from .lookup import find_versions

__all__ = ["CatalogLoad", "load_catalog"]


@dataclass(frozen=True)
class CatalogLoad:
    """What :func:`load_catalog` did: canonicals written and canonicals already there."""

    created: tuple[str, ...]
    existing: tuple[str, ...]


def load_catalog(
    store: Store, questionnaires: Sequence[Mapping[str, Any]] | None = None
) -> CatalogLoad:
    """Write the shipped Questionnaires that are missing (by ``url|version``) in one transaction.

    A stored Questionnaire with the same ``url|version`` is never changed. A new one
    keeps its catalog id (``Questionnaire/phq-9``) unless that id is taken by another
    version, in which case the store assigns one.
    """
    items = list(questionnaires) if questionnaires is not None else catalog.load_questionnaires()
    created: list[str] = []
    existing: list[str] = []
    entries: list[dict[str, Any]] = []
    for questionnaire in items:
        ref = catalog.canonical(questionnaire)
        if find_versions(store, questionnaire["url"], questionnaire.get("version")):
            existing.append(ref)
            continue
        resource = {k: v for k, v in questionnaire.items() if k != "meta"}
        rid = resource.get("id")
        if rid and not _id_taken(store, rid):
            entries.append(
                {"resource": resource, "request": {"method": "PUT", "url": f"Questionnaire/{rid}"}}
            )
        else:
            resource.pop("id", None)
            criteria = urlencode(
                [("url", resource["url"]), ("version", resource.get("version", ""))]
            )
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": resource,
                    "request": {"method": "POST", "url": "Questionnaire", "ifNoneExist": criteria},
                }
            )
        created.append(ref)
    if entries:
        store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return CatalogLoad(created=tuple(created), existing=tuple(existing))


def _id_taken(store: Store, rid: str) -> bool:
    try:
        store.read("Questionnaire", rid)
    except NotFound:  # includes Gone: a deleted id is not reused
        return False
    return True
