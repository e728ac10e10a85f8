"""enableWhen for the browser: conditions the page script evaluates, and their wording.

The server decides in the end (:func:`hw_fhir.render.prune_disabled`); these conditions
only show and hide items while the person fills the form in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..i18n import N_
from ..responses.definitions import as_list
from .item_display import first_typed_value, item_text, shorten
from .options import choice_options, option_label, option_token
from .view_model import Condition

__all__ = ["browser_conditions"]


def browser_conditions(
    definition: Mapping[str, Any],
    index: Mapping[str, Mapping[str, Any]],
    questionnaire: Mapping[str, Any],
    _: Callable[[str], str] = str,
) -> tuple[tuple[Condition, ...], str]:
    """Return an item's enableWhen as browser conditions, and the sentence explaining them."""
    out: list[Condition] = []
    phrases: list[str] = []
    for cond in as_list(definition.get("enableWhen")):
        if not isinstance(cond, dict):
            continue
        question = str(cond.get("question") or "")
        operator = str(cond.get("operator") or "")
        target = index.get(question) or {}
        expected = first_typed_value(cond, "answer")
        out.append(_condition(question, operator, expected, target, questionnaire))
        phrases.append(_phrase(operator, expected, target, questionnaire, _))
    joiner = _(" or ") if definition.get("enableBehavior") == "any" else _(" and ")
    text = _("Answer this only if %(conditions)s.") % {"conditions": joiner.join(phrases)}
    text = text if phrases else ""
    return tuple(out), text


def _condition(
    question: str,
    operator: str,
    expected: tuple[str, Any] | None,
    target: Mapping[str, Any],
    questionnaire: Mapping[str, Any],
) -> Condition:
    if operator == "exists":
        return Condition(question, operator, "exists", bool(expected and expected[1] is True))
    if expected is None:
        return Condition(question, operator, "any", None)
    kind, value = expected
    qtype = target.get("type")
    if qtype == "boolean" and kind == "Boolean":
        return Condition(question, operator, "token", "true" if value else "false")
    if qtype in ("choice", "open-choice") and operator in ("=", "!="):
        token = option_token(choice_options(target, questionnaire), kind, value)
        return Condition(question, operator, "token", token if token is not None else "__none__")
    if qtype in ("integer", "decimal") and kind in ("Integer", "Decimal"):
        return Condition(question, operator, "number", float(value))
    if qtype in ("string", "text", "date", "time", "dateTime", "url") and isinstance(value, str):
        return Condition(question, operator, "text", value)
    return Condition(question, operator, "any", None)


def _phrase(
    operator: str,
    expected: tuple[str, Any] | None,
    target: Mapping[str, Any],
    questionnaire: Mapping[str, Any],
    _: Callable[[str], str] = str,
) -> str:
    label = f"“{shorten(item_text(target) or str(target.get('linkId', 'another question')))}”"
    if operator == "exists":
        answered = bool(expected and expected[1] is True)
        said = (
            N_("you answered %(question)s")
            if answered
            else N_("you left %(question)s unanswered")
        )
        return _(said) % {"question": label}
    if expected is None:
        return _("your answer to %(question)s fits") % {"question": label}
    kind, value = expected
    if kind == "Boolean":
        shown = _("Yes") if value else _("No")
    else:
        shown = option_label(kind, value)
    sentences = {
        "=": N_("your answer to %(question)s is %(answer)s"),
        "!=": N_("your answer to %(question)s is not %(answer)s"),
        ">": N_("your answer to %(question)s is more than %(answer)s"),
        "<": N_("your answer to %(question)s is less than %(answer)s"),
        ">=": N_("your answer to %(question)s is at least %(answer)s"),
        "<=": N_("your answer to %(question)s is at most %(answer)s"),
    }
    sentence = sentences.get(operator, "your answer to %(question)s " + operator + " %(answer)s")
    return _(sentence) % {"question": label, "answer": f"“{shown}”"}

