"""Answer weights: the ``itemWeight`` extension (and the older ``ordinalValue``).

A weight is looked up, in order, on the answer itself, on its Coding, on the
matching ``answerOption`` of the Questionnaire item, in a contained ValueSet the
item's ``answerValueSet`` points to (its expansion: the R4 extension, or the R5
``itemWeight`` property natively or as the cross-version extension; then its
compose concepts), and in a contained CodeSystem whose url is the Coding's system
(extension or ``property``; the order fhirpath.js follows for ``weight()``).
ValueSets stored elsewhere or shipped are made contained first
(:func:`hw_fhir.scoring.terminology.with_answer_sets`).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ..errors import AmbiguousWeight
from .items import answer_value, iter_questionnaire_items

__all__ = [
    "ITEM_WEIGHT",
    "ORDINAL_VALUE",
    "WEIGHT_EXTENSIONS",
    "extension_weight",
    "option_weight",
    "answer_weight",
    "coding_weight",
]

Json = dict[str, Any]

ITEM_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
_VALUESET_ORDINAL = "http://hl7.org/fhir/StructureDefinition/valueset-ordinalValue"
WEIGHT_EXTENSIONS = (ITEM_WEIGHT, ORDINAL_VALUE, _VALUESET_ORDINAL)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)


def extension_weight(element: Any) -> Decimal | None:
    """Return the weight an element declares in its own extensions, or None."""
    if not isinstance(element, dict):
        return None
    for url in WEIGHT_EXTENSIONS:
        for ext in element.get("extension") or []:
            if ext.get("url") == url:
                value = ext.get("valueDecimal", ext.get("valueInteger"))
                weight = _number(value)
                if weight is not None:
                    return weight
    return None


def option_weight(option: Json) -> Decimal | None:
    """Return the weight of an answerOption (on the option or on its valueCoding)."""
    weight = extension_weight(option)
    if weight is not None:
        return weight
    return extension_weight(option.get("valueCoding"))


def _same_coding(a: Json, b: Json) -> bool:
    if a.get("code") != b.get("code"):
        return False
    return not (a.get("system") and b.get("system") and a["system"] != b["system"])


def _matches(option: Json, kind: str, value: Any) -> bool:
    found = answer_value(option)
    if found is None:
        return False
    opt_kind, opt_value = found
    if kind == "Coding" or opt_kind == "Coding":
        coding = value if kind == "Coding" else {"code": value}
        return opt_kind == "Coding" and isinstance(coding, dict) and _same_coding(opt_value, coding)
    return opt_kind == kind and opt_value == value


def _contained(questionnaire: Json, ref: str | None, rtype: str) -> Json | None:
    for res in questionnaire.get("contained") or []:
        if res.get("resourceType") != rtype:
            continue
        if ref and (f"#{res.get('id')}" == ref or res.get("url") == ref):
            return dict(res)
    return None


def _concepts(concepts: Iterable[Json]) -> Iterable[Json]:
    for concept in concepts:
        yield concept
        yield from _concepts(concept.get("concept") or [])


#: R5 ``ValueSet.expansion.contains.property`` carried in R4 (cross-version extension).
R5_CONTAINS_PROPERTY = ("http://hl7.org/fhir/5.0/StructureDefinition/"
                        "extension-ValueSet.expansion.contains.property")
_WEIGHT_PROPERTIES = ("itemWeight", "weight", "ordinalValue", "order")


def _property_weight(contains: Json) -> Decimal | None:
    """The weight in an expansion entry's R5 ``property`` (native, or the R4 cross-version form)."""
    for prop in contains.get("property") or []:
        if prop.get("code") in _WEIGHT_PROPERTIES:
            weight = _number(prop.get("valueDecimal", prop.get("valueInteger")))
            if weight is not None:
                return weight
    for ext in contains.get("extension") or []:
        if ext.get("url") != R5_CONTAINS_PROPERTY:
            continue
        parts = {e.get("url"): e for e in ext.get("extension") or []}
        if (parts.get("code") or {}).get("valueCode") in _WEIGHT_PROPERTIES:
            value = parts.get("value") or {}
            weight = _number(value.get("valueDecimal", value.get("valueInteger")))
            if weight is not None:
                return weight
    return None


def _valueset_weight(valueset: Json, coding: Json) -> Decimal | None:
    for contains in _concepts((valueset.get("expansion") or {}).get("contains") or []):
        if _same_coding(contains, coding):
            weight = extension_weight(contains)
            if weight is None:
                weight = _property_weight(contains)
            if weight is not None:
                return weight
    for include in (valueset.get("compose") or {}).get("include") or []:
        if coding.get("system") and include.get("system") and include["system"] != coding["system"]:
            continue
        for concept in include.get("concept") or []:
            if concept.get("code") == coding.get("code"):
                weight = extension_weight(concept)
                if weight is not None:
                    return weight
    return None


def _codesystem_weight(questionnaire: Json, coding: Json) -> Decimal | None:
    system = coding.get("system")
    if not system:
        return None
    codesystem = _contained(questionnaire, system, "CodeSystem")
    if codesystem is None:
        return None
    for concept in _concepts(codesystem.get("concept") or []):
        if concept.get("code") != coding.get("code"):
            continue
        weight = extension_weight(concept)
        if weight is not None:
            return weight
        for prop in concept.get("property") or []:
            if prop.get("code") in ("itemWeight", "weight", "ordinalValue", "order"):
                weight = _number(prop.get("valueDecimal", prop.get("valueInteger")))
                if weight is not None:
                    return weight
    return None


def answer_weight(questionnaire: Json, item: Json | None, answer: Json) -> Decimal | None:
    """Return the weight of one QuestionnaireResponse answer element, or None.

    ``item`` is the Questionnaire item the answer belongs to (None when unknown).
    """
    weight = extension_weight(answer)
    if weight is not None:
        return weight
    found = answer_value(answer)
    if found is None:
        return None
    kind, value = found
    if kind == "Coding":
        return coding_weight(questionnaire, item, value)
    if item is None:
        return None
    for option in item.get("answerOption") or []:
        if _matches(option, kind, value):
            return option_weight(option)
    return None


def coding_weight(questionnaire: Json, item: Json | None, coding: Any) -> Decimal | None:
    """Return the weight of a Coding (or bare code) given as the answer to ``item``.

    With ``item`` None every item of the Questionnaire is searched; if items
    disagree on the weight of the same code, :class:`~hw_fhir.errors.AmbiguousWeight`
    (a ValueError) is raised.
    """
    if isinstance(coding, str):
        coding = {"code": coding}
    if not isinstance(coding, dict) or "code" not in coding:
        return None
    weight = extension_weight(coding)
    if weight is not None:
        return weight
    items = [item] if item is not None else list(iter_questionnaire_items(questionnaire))
    found: set[Decimal] = set()
    for candidate in items:
        weight = _item_coding_weight(questionnaire, candidate, coding)
        if weight is not None:
            if item is not None:
                return weight
            found.add(weight)
    if len(found) > 1:
        raise AmbiguousWeight(
            f"code {coding.get('code')!r} has different weights in different items "
            f"({', '.join(str(w) for w in sorted(found))}); weigh it from its answer instead"
        )
    if found:
        return found.pop()
    return _codesystem_weight(questionnaire, coding)


def _item_coding_weight(questionnaire: Json, item: Json, coding: Json) -> Decimal | None:
    for option in item.get("answerOption") or []:
        if _matches(option, "Coding", coding):
            return option_weight(option)
    valueset = _contained(questionnaire, item.get("answerValueSet"), "ValueSet")
    if valueset is not None:
        weight = _valueset_weight(valueset, coding)
        if weight is not None:
            return weight
    return None
