"""The options of a choice item (answerOption and contained answerValueSet), as tokens.

The form sends an option as its position (``"0"``, ``"1"``...); these helpers list the
options, label them and find the token of a stored answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..responses.definitions import as_list
from .item_display import first_typed_value

__all__ = ["choice_options", "value_set_codings", "option_label", "option_token"]


def choice_options(
    definition: Mapping[str, Any], questionnaire: Mapping[str, Any]
) -> list[tuple[str, Any, str]]:
    """Return (value key, value, label) for each option of a choice item."""
    out: list[tuple[str, Any, str]] = []
    for option in as_list(definition.get("answerOption")):
        typed = first_typed_value(option, "value") if isinstance(option, dict) else None
        if typed is None:
            continue
        kind, value = typed
        out.append((kind, value, option_label(kind, value)))
    vs = definition.get("answerValueSet")
    if isinstance(vs, str) and vs.startswith("#"):
        for resource in as_list(questionnaire.get("contained")):
            if isinstance(resource, dict) and resource.get("id") == vs[1:]:
                out.extend(
                    ("Coding", c, option_label("Coding", c)) for c in value_set_codings(resource)
                )
    return out


def value_set_codings(value_set: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the codings of a contained ValueSet (its expansion, else compose)."""
    expansion = (value_set.get("expansion") or {}).get("contains")
    if isinstance(expansion, list):
        return [
            {k: c[k] for k in ("system", "code", "display") if k in c}
            for c in expansion
            if isinstance(c, dict) and c.get("code")
        ]
    out = []
    for include in as_list((value_set.get("compose") or {}).get("include")):
        for concept in as_list(include.get("concept")):
            if isinstance(concept, dict) and concept.get("code"):
                coding = {"system": include.get("system"), "code": concept["code"]}
                if concept.get("display"):
                    coding["display"] = concept["display"]
                out.append({k: v for k, v in coding.items() if v})
    return out


def option_label(kind: str, value: Any) -> str:
    """Return how an option or answer value is shown to the person."""
    if kind == "Coding" and isinstance(value, dict):
        return str(value.get("display") or value.get("code") or "")
    if kind == "Reference" and isinstance(value, dict):
        return str(value.get("display") or value.get("reference") or "")
    return str(value)


def _same(kind: str, a: Any, b: Any) -> bool:
    if kind == "Coding":
        if not isinstance(a, dict) or not isinstance(b, dict):
            return False
        if a.get("code") != b.get("code"):
            return False
        return not (a.get("system") and b.get("system")) or bool(a.get("system") == b.get("system"))
    return bool(a == b)


def option_token(options: list[tuple[str, Any, str]], kind: str, value: Any) -> str | None:
    """Return the token of the option equal to a value, or None."""
    for index, (okind, ovalue, _) in enumerate(options):
        if okind == kind and _same(kind, ovalue, value):
            return str(index)
    return None

