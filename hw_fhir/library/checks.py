"""Checking a library Questionnaire before it is stored: valid R4 and well formed.

:func:`check_questionnaire` runs on every write of the library (clone, edit, new
version, publish), so an edit cannot break an activity: linkIds unique, enableWhen
answerable and typed right, choice items with options, groups with items, display items
with text, options not repeated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidResource, Issue
from ..items import walk_item_paths
from ..models import validate
from ..responses import check_questionnaire as _response_issues

__all__ = ["check_questionnaire"]

_CHOICE_TYPES = frozenset({"choice", "open-choice"})
_OPTION_TYPES = frozenset({"choice", "open-choice", "integer", "date", "time", "string"})
_LENGTH_TYPES = frozenset({"string", "text", "url", "open-choice"})
#: answer[x] of an enableWhen that fits the type of the question it names.
_ENABLE_WHEN_ANSWERS: Mapping[str, frozenset[str]] = {
    "boolean": frozenset({"answerBoolean"}),
    "integer": frozenset({"answerInteger"}),
    "decimal": frozenset({"answerDecimal"}),
    "date": frozenset({"answerDate"}),
    "dateTime": frozenset({"answerDateTime"}),
    "time": frozenset({"answerTime"}),
    "string": frozenset({"answerString"}),
    "text": frozenset({"answerString"}),
    "url": frozenset({"answerString"}),
    "choice": frozenset(
        {"answerCoding", "answerString", "answerInteger", "answerDate", "answerTime"}
    ),
    "open-choice": frozenset(
        {"answerCoding", "answerString", "answerInteger", "answerDate", "answerTime"}
    ),
    "quantity": frozenset({"answerQuantity"}),
    "reference": frozenset({"answerReference"}),
    "attachment": frozenset(),
}
#: answerOption.value[x] that fits each item type.
_OPTION_VALUES: Mapping[str, frozenset[str]] = {
    "choice": frozenset(
        {"valueCoding", "valueString", "valueInteger", "valueDate", "valueTime", "valueReference"}
    ),
    "open-choice": frozenset(
        {"valueCoding", "valueString", "valueInteger", "valueDate", "valueTime", "valueReference"}
    ),
    "integer": frozenset({"valueInteger"}),
    "date": frozenset({"valueDate"}),
    "time": frozenset({"valueTime"}),
    "string": frozenset({"valueString"}),
}


def _value_key(element: Mapping[str, Any], prefix: str) -> str | None:
    keys = [k for k in element if k.startswith(prefix) and k != prefix]
    return keys[0] if len(keys) == 1 else None


def _item_issues(path: str, item: dict[str, Any]) -> list[Issue]:
    """Return the problems of one item on its own (not its enableWhen)."""
    issues: list[Issue] = []
    kind = item.get("type")
    options = item.get("answerOption") or []
    children = item.get("item") or []
    if kind == "group" and not children:
        issues.append(Issue("A group item needs at least one item inside (que-1)", expression=path))
    if kind == "display" and children:
        issues.append(Issue("A display item cannot contain items (que-1)", expression=path))
    if kind == "display" and not item.get("text"):
        issues.append(Issue("A display item needs text", expression=f"{path}.text"))
    if kind in _CHOICE_TYPES and not options and not item.get("answerValueSet"):
        issues.append(Issue(f"A {kind} item needs answerOption or answerValueSet", expression=path))
    if options and item.get("answerValueSet"):
        issues.append(
            Issue(
                "An item cannot have both answerOption and answerValueSet (que-4)", expression=path
            )
        )
    if item.get("answerValueSet") and kind not in _CHOICE_TYPES:
        issues.append(
            Issue(
                f"Only choice and open-choice items can have answerValueSet, not {kind} (que-5)",
                expression=f"{path}.answerValueSet",
            )
        )
    if options and kind not in _OPTION_TYPES:
        issues.append(
            Issue(f"A {kind} item cannot have answerOption", expression=f"{path}.answerOption")
        )
    elif options:
        issues.extend(_option_issues(path, str(kind), options))
    if "maxLength" in item and kind not in _LENGTH_TYPES:
        issues.append(
            Issue(
                f"maxLength only applies to text items, not {kind} (que-10)",
                expression=f"{path}.maxLength",
            )
        )
    if isinstance(item.get("linkId"), str) and len(item["linkId"]) > 255:
        issues.append(Issue("linkId is longer than 255 characters", expression=f"{path}.linkId"))
    return issues


def _option_issues(path: str, kind: str, options: list[Any]) -> list[Issue]:
    issues: list[Issue] = []
    seen: set[str] = set()
    for n, option in enumerate(options):
        where = f"{path}.answerOption[{n}]"
        key = _value_key(option, "value") if isinstance(option, dict) else None
        if key is None:
            issues.append(Issue("An answerOption needs exactly one value[x]", expression=where))
            continue
        if key not in _OPTION_VALUES.get(kind, frozenset()):
            issues.append(Issue(f"{key} does not fit a {kind} item", expression=f"{where}.{key}"))
        value = option[key]
        ident = (
            f"{value.get('system')}|{value.get('code')}" if isinstance(value, dict) else repr(value)
        )
        if isinstance(value, dict) and key == "valueCoding" and not value.get("code"):
            issues.append(
                Issue("An answer option coding needs a code", expression=f"{where}.{key}")
            )
        if ident in seen:
            issues.append(
                Issue(f"The answer option {_show(value)} is listed twice", expression=where)
            )
        seen.add(ident)
    return issues


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return repr(value.get("display") or value.get("code") or value.get("reference"))
    return repr(value)


def _enable_when_issues(
    path: str, item: dict[str, Any], index: Mapping[str, dict[str, Any]]
) -> list[Issue]:
    """Return the problems of an item's enableWhen the response validator does not report."""
    issues: list[Issue] = []
    for n, condition in enumerate(item.get("enableWhen") or []):
        if not isinstance(condition, dict):
            continue
        where = f"{path}.enableWhen[{n}]"
        question = index.get(str(condition.get("question")))  # unknown: reported elsewhere
        if question is None:
            continue
        if condition.get("question") == item.get("linkId"):
            issues.append(
                Issue("An item cannot be enabled by its own answer", expression=f"{where}.question")
            )
            continue
        kind = str(question.get("type"))
        if kind in ("group", "display"):
            issues.append(
                Issue(
                    f"enableWhen names {condition['question']!r}, a {kind} item that has no answer",
                    expression=f"{where}.question",
                )
            )
            continue
        key = _value_key(condition, "answer")
        if condition.get("operator") == "exists" or key is None:
            continue
        if key not in _ENABLE_WHEN_ANSWERS.get(kind, frozenset()):
            issues.append(
                Issue(
                    f"enableWhen compares the {kind} question {condition['question']!r} with {key}",
                    expression=f"{where}.{key}",
                )
            )
        elif key == "answerCoding" and question.get("answerOption"):
            codes = {
                (o["valueCoding"].get("system"), o["valueCoding"].get("code"))
                for o in question["answerOption"]
                if isinstance(o, dict) and isinstance(o.get("valueCoding"), dict)
            }
            wanted = condition[key]
            if codes and (wanted.get("system"), wanted.get("code")) not in codes:
                issues.append(
                    Issue(
                        f"enableWhen expects {_show(wanted)}, which is not an answer "
                        f"option of {condition['question']!r}",
                        expression=f"{where}.{key}",
                    )
                )
    return issues


def check_questionnaire(questionnaire: Any) -> dict[str, Any]:
    """Check that a Questionnaire is valid R4 and well formed; return it normalised.

    Besides R4 validation: url, version and at least one item are required; linkIds
    are present and unique; enableWhen names an existing, answerable question (not
    itself) with an answer of the right type; choice items have options; groups have
    items and display items have text and none; answerOption/answerValueSet/maxLength
    only where they apply; options are not repeated. Raise :class:`InvalidResource`
    listing every problem.
    """
    data = validate(questionnaire, resource_type="Questionnaire")
    issues: list[Issue] = []
    for key in ("url", "version"):
        if not data.get(key):
            issues.append(
                Issue(
                    f"A library activity needs a {key}",
                    code="required",
                    expression=f"Questionnaire.{key}",
                )
            )
    if not data.get("item"):
        issues.append(
            Issue(
                "A Questionnaire needs at least one item",
                code="required",
                expression="Questionnaire.item",
            )
        )
    issues.extend(_response_issues(data))
    index = {
        item["linkId"]: item
        for _, item in walk_item_paths(data.get("item"), "Questionnaire")
        if isinstance(item.get("linkId"), str)
    }
    for path, item in walk_item_paths(data.get("item"), "Questionnaire"):
        issues.extend(_item_issues(path, item))
        issues.extend(_enable_when_issues(path, item, index))
    if issues:
        raise InvalidResource(
            f"The Questionnaire is not well formed ({len(issues)} problem"
            f"{'s' if len(issues) > 1 else ''}): {issues[0].message}",
            issues=issues,
            resource=questionnaire,
        )
    return data
