"""Questionnaire items and answers as a clinician reads them.

:func:`answer_text` writes an answer (or an answer option) as text; :func:`is_calculated`,
:func:`is_help` and :func:`help_text` tell the score items and help texts apart. Shared by
the response page, the library preview, the item editor and the editor's item settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..scoring.items import answer_value

__all__ = [
    "CALCULATED_EXTENSION",
    "ITEM_CONTROL_EXTENSION",
    "answer_text",
    "is_calculated",
    "is_help",
    "help_text",
]

#: SDC calculatedExpression: the item holds a score, filled in by scoring.
CALCULATED_EXTENSION = (
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
)
#: The itemControl extension (``help`` and ``flyover`` display items are help texts).
ITEM_CONTROL_EXTENSION = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"


def answer_text(answer: Mapping[str, Any], item: Mapping[str, Any] | None = None) -> str:
    """Return an answer's value as text (a Coding's display, Yes/No, a number with its unit...)."""
    found = answer_value(dict(answer))
    if found is None:
        return ""
    kind, value = found
    if kind == "Coding" and isinstance(value, dict):
        return str(value.get("display") or value.get("code") or "")
    if kind == "Boolean":
        return "Yes" if value else "No"
    if kind == "Quantity" and isinstance(value, dict):
        return f"{value.get('value', '')} {value.get('unit') or value.get('code') or ''}".strip()
    if kind == "Attachment" and isinstance(value, dict):
        return str(value.get("title") or value.get("url") or "attachment")
    if kind == "Reference" and isinstance(value, dict):
        return str(value.get("display") or value.get("reference") or "")
    if kind == "DateTime" and isinstance(value, str) and "T" in value:
        return value.replace("T", " ")[:16]
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def is_calculated(item: Mapping[str, Any]) -> bool:
    """Whether an item is a calculated score (SDC calculatedExpression)."""
    return any(e.get("url") == CALCULATED_EXTENSION for e in item.get("extension") or [])


def help_text(item: Mapping[str, Any]) -> str:
    """Return the text of an item's help (its first help or flyover display child), else ""."""
    for child in item.get("item") or []:
        if child.get("type") != "display":
            continue
        for ext in child.get("extension") or []:
            if ext.get("url") == ITEM_CONTROL_EXTENSION and any(
                c.get("code") in ("help", "flyover")
                for c in (ext.get("valueCodeableConcept") or {}).get("coding") or []
            ):
                return str(child.get("text") or "")
    return ""


def is_help(item: Mapping[str, Any]) -> bool:
    """Whether an item is a help text: a display item with a help or flyover itemControl."""
    return item.get("type") == "display" and any(
        e.get("url") == ITEM_CONTROL_EXTENSION
        and any(
            c.get("code") in ("help", "flyover")
            for c in (e.get("valueCodeableConcept") or {}).get("coding") or []
        )
        for e in item.get("extension") or []
    )
