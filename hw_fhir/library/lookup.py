"""Finding library Questionnaires in a store: by canonical, reference or id, and by owner.

* :func:`resolve_questionnaire` — the Questionnaire named by ``url|version``, ``url``
  (its newest ``active`` version), reference or id.
* :func:`clinician_system`, :func:`clinician_questionnaires` — a clinician's own
  activities (their identifier system is the clinician's url namespace).
* :func:`questionnaire_titles` — titles of many canonicals, remembered per store.
* :func:`find_versions`, :func:`version_key` — the stored versions of a url, and the
  order of versions (``1.10.0`` after ``1.9.0``).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from typing import Any

from .. import catalog
from ..errors import InvalidInput, NotFound
from ..store.base import Store, iter_all

__all__ = [
    "CLINICIAN_BASE",
    "find_versions",
    "version_key",
    "resolve_questionnaire",
    "clinician_system",
    "clinician_questionnaires",
    "questionnaire_titles",
]

#: Base of the canonical urls of clinicians' own activities.
CLINICIAN_BASE = f"{catalog.CANONICAL_BASE}/clinician"
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def find_versions(store: Store, url: str, version: str | None) -> list[dict[str, Any]]:
    """Return the stored Questionnaires of ``url`` (of one ``version`` when given)."""
    canonicals = getattr(store, "canonicals", None)  # the SQL store's cache (store/canonicals)
    if canonicals is not None:
        return [found.resource for found in canonicals.find("Questionnaire", url, version)]
    params = [("url", url)]
    if version:
        params.append(("version", version))
    return iter_all(store, "Questionnaire", params)


def version_key(version: str | None) -> tuple[Any, ...]:
    """Return a sort key of a version: numeric parts as numbers (``1.10`` after ``1.9``)."""
    parts = str(version or "").split(".")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def resolve_questionnaire(store: Store, ref: str) -> dict[str, Any]:
    """Return the stored Questionnaire named by ``url|version``, ``url``, reference or id.

    A bare ``url`` means its newest ``active`` version. Raise NotFound.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput("A questionnaire reference is required")
    ref = ref.strip()
    if "://" not in ref and not ref.startswith("urn:"):
        rid = ref.split("/", 1)[1] if ref.startswith("Questionnaire/") else ref
        if not _ID.match(rid):
            raise InvalidInput(f"{ref!r} is not a Questionnaire id, reference or canonical url")
        return store.read("Questionnaire", rid).resource
    url, bar, version = ref.partition("|")
    if bar and version:
        found = find_versions(store, url, version)
        if not found:
            raise NotFound(f"No Questionnaire {ref} is stored")
        return found[0]
    active = [q for q in find_versions(store, url, None) if q.get("status") == "active"]
    if not active:
        raise NotFound(f"No active version of Questionnaire {url} is stored")
    return max(active, key=lambda q: version_key(q.get("version")))


def clinician_system(practitioner: str) -> str:
    """Return the identifier system (and url namespace) of a clinician's own activities."""
    return f"{CLINICIAN_BASE}/{_practitioner_id(practitioner)}/Questionnaire"


def clinician_questionnaires(
    store: Store, practitioner: str, status: str | None = None
) -> list[dict[str, Any]]:
    """Return a clinician's own Questionnaires (every version), optionally of one status."""
    params = [("identifier", f"{clinician_system(practitioner)}|")]
    if status:
        params.append(("status", status))
    found = iter_all(store, "Questionnaire", params)
    return sorted(found, key=lambda q: (q.get("url", ""), version_key(q.get("version"))))


def _practitioner_id(practitioner: str) -> str:
    pid = (
        practitioner.split("/", 1)[1] if practitioner.startswith("Practitioner/") else practitioner
    )
    if "/" in pid or not _ID.match(pid):
        raise InvalidInput(f"{practitioner!r} is not a Practitioner id or reference")
    return pid


#: Per store: ``url|version`` → the title and name of that Questionnaire version. A stored
#: version's content never changes once it can be assigned, so its title can be kept.
_TITLES: "weakref.WeakKeyDictionary[Any, dict[str, dict[str, Any]]]" = weakref.WeakKeyDictionary()


def questionnaire_titles(store: Store, refs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Return ``{ref: {"title", "name"}}`` for canonical refs (``url|version`` or ``url``).

    Versioned refs are remembered per store; the others cost one search per url.
    """
    try:
        cache = _TITLES.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced: no cache
        cache = {}
    wanted = {ref for ref in refs if ref and "://" in ref}
    out = {ref: cache[ref] for ref in wanted if ref in cache}
    for url in {ref.partition("|")[0] for ref in wanted - set(out)}:
        for q in iter_all(store, "Questionnaire", [("url", url)]):
            brief = {"title": q.get("title"), "name": q.get("name")}
            key = f"{url}|{q.get('version')}" if q.get("version") else url
            if q.get("status") in ("active", "retired") and q.get("version"):
                cache[key] = brief
            out[key] = brief
            out.setdefault(url, brief)
    return out
