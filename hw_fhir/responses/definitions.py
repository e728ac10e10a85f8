"""What validation reads from a Questionnaire's definitions.

The extension URLs the validator checks, item labels used in messages, the linkId
index and parent map, contained ValueSets and their members, and the versioned
canonical a response must name. Shared by validation, the form model and the renderer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..items import walk_items

__all__ = [
    "SDC",
    "CALCULATED_EXPRESSION",
    "INITIAL_EXPRESSION",
    "MIN_QUANTITY",
    "MAX_QUANTITY",
    "MIN_VALUE",
    "MAX_VALUE",
    "MIN_LENGTH",
    "MAX_DECIMAL_PLACES",
    "as_list",
    "quote_link_id",
    "item_label",
    "canonical_of",
    "index_definitions",
    "parent_link_ids",
    "contained_value_sets",
    "value_set_members",
]

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
CALCULATED_EXPRESSION = SDC + "sdc-questionnaire-calculatedExpression"
INITIAL_EXPRESSION = SDC + "sdc-questionnaire-initialExpression"
MIN_QUANTITY = SDC + "sdc-questionnaire-minQuantity"
MAX_QUANTITY = SDC + "sdc-questionnaire-maxQuantity"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
MIN_LENGTH = "http://hl7.org/fhir/StructureDefinition/minLength"
MAX_DECIMAL_PLACES = "http://hl7.org/fhir/StructureDefinition/maxDecimalPlaces"


def as_list(value: Any) -> list[Any]:
    """Return ``value`` if it is a list, else an empty list."""
    return value if isinstance(value, list) else []


def quote_link_id(link_id: Any) -> str:
    """Quote a linkId for an expression such as ``item[linkId='mood']``."""
    text = str(link_id) if link_id is not None else ""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def item_label(definition: Mapping[str, Any]) -> str:
    """Return how messages name an item: its quoted text (shortened), or its linkId."""
    text = definition.get("text")
    if isinstance(text, str) and text.strip():
        text = " ".join(text.split())
        return f'"{text[:77]}..."' if len(text) > 80 else f'"{text}"'
    return f"Item {definition.get('linkId')!r}"


def canonical_of(questionnaire: Mapping[str, Any]) -> str | None:
    """Return the versioned canonical a response must name: ``url|version`` or ``url``."""
    url = questionnaire.get("url")
    if not url:
        return None
    version = questionnaire.get("version")
    return f"{url}|{version}" if version else str(url)


def index_definitions(items: Any) -> dict[str, dict[str, Any]]:
    """Return every item definition by linkId (depth first; a later duplicate wins)."""
    return {
        item["linkId"]: item for item in walk_items(items) if isinstance(item.get("linkId"), str)
    }


def parent_link_ids(items: Any, parent: str | None = None) -> dict[str, str | None]:
    """Return the linkId of each item's parent item (None at the top level)."""
    found: dict[str, str | None] = {}
    for item in as_list(items):
        if isinstance(item, dict) and isinstance(item.get("linkId"), str):
            found[item["linkId"]] = parent
            found.update(parent_link_ids(item.get("item"), item["linkId"]))
    return found


def contained_value_sets(questionnaire: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Return the ValueSets contained in a Questionnaire, by id."""
    return {
        r["id"]: r
        for r in as_list(questionnaire.get("contained"))
        if isinstance(r, dict) and r.get("resourceType") == "ValueSet" and r.get("id")
    }


def value_set_members(
    value_set: Mapping[str, Any],
) -> tuple[set[tuple[str | None, str]], set[str]]:
    """Return ``({(system, code)}, {systems included whole})`` of a ValueSet."""
    codes: set[tuple[str | None, str]] = set()
    whole: set[str] = set()

    def contains(entries: Any) -> None:
        for entry in as_list(entries):
            if isinstance(entry, dict):
                if entry.get("code") and not entry.get("abstract"):
                    codes.add((entry.get("system"), entry["code"]))
                contains(entry.get("contains"))

    expansion = value_set.get("expansion")
    if isinstance(expansion, dict) and expansion.get("contains"):
        contains(expansion.get("contains"))
        return codes, whole
    compose = value_set.get("compose") if isinstance(value_set.get("compose"), dict) else {}
    for include in as_list(compose.get("include")):
        if not isinstance(include, dict):
            continue
        concepts = as_list(include.get("concept"))
        if include.get("system") and not concepts and not include.get("filter"):
            whole.add(include["system"])
        for concept in concepts:
            if isinstance(concept, dict) and concept.get("code"):
                codes.add((include.get("system"), concept["code"]))
    for exclude in as_list(compose.get("exclude")):
        if isinstance(exclude, dict):
            for concept in as_list(exclude.get("concept")):
                if isinstance(concept, dict):
                    codes.discard((exclude.get("system"), concept.get("code")))
    return codes, whole

