"""What a Questionnaire item's definition says about showing it.

The extension URLs the renderer reads, the item's text, its widget (see the
:mod:`hw_fhir.render` docs for the list), number limits, unit, and whether it is
calculated (scores: neither shown nor sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..responses.definitions import as_list

__all__ = [
    "RADIO_LIMIT",
    "ITEM_CONTROL",
    "SLIDER_STEP",
    "UNIT",
    "MIN_VALUE",
    "MAX_VALUE",
    "RENDERING_XHTML",
    "ITEM_MEDIA",
    "CALCULATED",
    "extension_value",
    "item_control",
    "first_typed_value",
    "number_text",
    "item_text",
    "shorten",
    "is_calculated",
    "choose_widget",
    "number_limits",
    "unit_label",
]

#: A choice with more options than this is a drop-down unless itemControl says otherwise.
RADIO_LIMIT = 7

_EXT = "http://hl7.org/fhir/StructureDefinition/"
_SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
ITEM_CONTROL = _EXT + "questionnaire-itemControl"
SLIDER_STEP = _EXT + "questionnaire-sliderStepValue"
UNIT = _EXT + "questionnaire-unit"
MIN_VALUE = _EXT + "minValue"
MAX_VALUE = _EXT + "maxValue"
RENDERING_XHTML = _EXT + "rendering-xhtml"
ITEM_MEDIA = _SDC + "sdc-questionnaire-itemMedia"
CALCULATED = _SDC + "sdc-questionnaire-calculatedExpression"


def extension_value(definition: Mapping[str, Any], url: str) -> Any:
    """Return the ``value[x]`` of an item's first extension with this url, or None."""
    for ext in as_list(definition.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def item_control(definition: Mapping[str, Any]) -> str | None:
    """Return the item's ``questionnaire-itemControl`` code, or None."""
    concept = extension_value(definition, ITEM_CONTROL)
    for coding in as_list((concept or {}).get("coding")):
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return None


def first_typed_value(element: Mapping[str, Any], prefix: str) -> tuple[str, Any] | None:
    """Return ``(type, value)`` of the first ``<prefix>[x]`` of an element, or None."""
    for key, value in element.items():
        if key.startswith(prefix) and key != prefix and key[len(prefix) :][:1].isupper():
            return key[len(prefix) :], value
    return None


def number_text(value: Any) -> str | None:
    """Return a number as the form shows it (``7`` rather than ``7.0``), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def item_text(definition: Mapping[str, Any]) -> str:
    """Return an item's text with its prefix, on one line."""
    text = " ".join(str(definition.get("text") or "").split())
    prefix = str(definition.get("prefix") or "").strip()
    return f"{prefix} {text}".strip() if prefix else text


def shorten(text: str, limit: int = 60) -> str:
    """Return text on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def is_calculated(definition: Mapping[str, Any]) -> bool:
    """Return whether scoring fills the item in (SDC calculatedExpression)."""
    return extension_value(definition, CALCULATED) is not None


def choose_widget(definition: Mapping[str, Any], options: list[tuple[str, Any, str]]) -> str:
    """Return the widget that shows an item (see the :mod:`hw_fhir.render` docs)."""
    kind = str(definition.get("type"))
    control = item_control(definition)
    if kind in ("group", "display"):
        return kind
    if definition.get("readOnly"):
        return "readonly"
    if kind in ("choice", "open-choice"):
        if definition.get("repeats"):
            return "checkbox"
        if control == "drop-down" or (control != "radio-button" and len(options) > RADIO_LIMIT):
            return "select"
        return "radio"
    if kind in ("integer", "decimal") and control == "slider":
        return "slider"
    if kind in (
        "string",
        "text",
        "integer",
        "decimal",
        "boolean",
        "date",
        "time",
        "dateTime",
        "url",
    ):
        return kind
    return "unsupported"


def number_limits(definition: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """Return ``(minimum, maximum, step)`` of a number or slider field as text."""
    low = number_text(extension_value(definition, MIN_VALUE))
    high = number_text(extension_value(definition, MAX_VALUE))
    step = number_text(extension_value(definition, SLIDER_STEP))
    if step is None and definition.get("type") == "integer":
        step = "1"
    return low, high, step


def unit_label(definition: Mapping[str, Any]) -> str | None:
    """Return the label of the item's ``questionnaire-unit``, or None."""
    coding = extension_value(definition, UNIT)
    if isinstance(coding, dict):
        return str(coding.get("display") or coding.get("code") or "") or None
    return None

