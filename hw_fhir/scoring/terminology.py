"""Answer lists wherever they live: contained, stored in hw-fhir's store, or shipped with hw-fhir.

Scoring reads weights from a Questionnaire's *contained* ValueSets and CodeSystems
(:mod:`.weights`). :func:`with_answer_sets` returns a copy of a Questionnaire in which
every ValueSet an item's ``answerValueSet`` names, and every CodeSystem its answers'
codes come from, is contained — found, in order, already contained, through
``resolve`` (the caller's store: ``resolve("ValueSet", url)``), or among the answer
lists hw-fhir ships (``hw_fhir/catalog/valuesets``: LOINC LL358-3 and LL359-1, the
PCL-5 answers). Scoring itself stays a pure function of the Questionnaire it is given.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from .items import answer_value, iter_questionnaire_items

__all__ = ["Resolver", "shipped_valuesets", "shipped", "with_answer_sets"]

Json = dict[str, Any]
#: ``resolve(resource_type, canonical url)`` → the resource, or None.
Resolver = Callable[[str, str], Json | None]


@lru_cache(maxsize=1)
def shipped_valuesets() -> dict[str, Json]:
    """Return the ValueSets hw-fhir ships, by url."""
    root = resources.files("hw_fhir.catalog").joinpath("valuesets")
    out: dict[str, Json] = {}
    for entry in root.iterdir():
        if entry.name.endswith(".json"):
            valueset = json.loads(entry.read_text(encoding="utf-8"))
            out[valueset["url"]] = valueset
    return out


def shipped(resource_type: str, url: str) -> Json | None:
    """Return a shipped answer list (a ValueSet) by canonical url, or None."""
    if resource_type != "ValueSet":
        return None
    found = shipped_valuesets().get(url.split("|", 1)[0])
    return copy.deepcopy(found) if found else None


def _contained_urls(questionnaire: Json) -> set[str]:
    out = set()
    for res in questionnaire.get("contained") or []:
        if res.get("url"):
            out.add(str(res["url"]))
        if res.get("id"):
            out.add(f"#{res['id']}")
    return out


def _find(resource_type: str, url: str, resolve: Resolver | None) -> Json | None:
    if resolve is not None:
        try:
            found = resolve(resource_type, url)
        except Exception:  # noqa: BLE001 - an unreadable store entry: fall back to what ships
            found = None
        if found:
            return dict(found)
    return shipped(resource_type, url)


def _systems(questionnaire: Json, valuesets: list[Json]) -> set[str]:
    systems: set[str] = set()
    for item in iter_questionnaire_items(questionnaire):
        for option in item.get("answerOption") or []:
            found = answer_value(option)
            if found and found[0] == "Coding" and found[1].get("system"):
                systems.add(str(found[1]["system"]))
    for valueset in valuesets:
        for include in (valueset.get("compose") or {}).get("include") or []:
            if include.get("system"):
                systems.add(str(include["system"]))
        stack = list((valueset.get("expansion") or {}).get("contains") or [])
        while stack:
            entry = stack.pop()
            if entry.get("system"):
                systems.add(str(entry["system"]))
            stack.extend(entry.get("contains") or [])
    return systems


def with_answer_sets(questionnaire: Json, resolve: Resolver | None = None) -> Json:
    """Return ``questionnaire`` with its answer ValueSets and CodeSystems contained (see the module).

    The input is not changed; when nothing needs adding it is returned as is.
    """
    have = _contained_urls(questionnaire)
    added: list[Json] = []
    wanted = []
    for item in iter_questionnaire_items(questionnaire):
        ref = item.get("answerValueSet")
        if isinstance(ref, str) and ref and ref not in have and ref.split("|", 1)[0] not in have:
            wanted.append(ref)
    for ref in dict.fromkeys(wanted):
        found = _find("ValueSet", ref, resolve)
        if found is not None:
            found["url"] = ref  # so the item's reference (maybe url|version) finds it
            added.append(found)
            have.add(ref)
    for system in sorted(_systems(questionnaire, added)):
        if system in have or resolve is None:
            continue
        found = _find("CodeSystem", system, resolve)
        if found is not None:
            added.append(found)
            have.add(system)
    if not added:
        return questionnaire
    out = dict(questionnaire)
    out["contained"] = [*(questionnaire.get("contained") or []),
                        *({k: v for k, v in r.items() if k != "meta"} for r in added)]
    return out
