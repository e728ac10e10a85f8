"""The generic SDC scorer: ``variable`` and ``calculatedExpression`` in FHIRPath.

Nothing here knows any instrument. Expressions are evaluated in document order
(root variables first, then items depth first), as the SDC specification
describes; passes repeat until no calculated answer changes, so an item may
depend on one that comes after it.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from ..errors import InvalidInput, Issue
from .fhirpath import ExpressionFailure, SdcEnvironment, syntax_error
from .items import answer_value, canonical, iter_questionnaire_items, iter_response_items
from .results import Coding, Score, ScoreResult

__all__ = [
    "VARIABLE",
    "CALCULATED_EXPRESSION",
    "FHIRPATH",
    "calculate",
    "check_expressions",
    "calculated_link_ids",
    "sdc_result",
]

Json = dict[str, Any]

VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
CALCULATED_EXPRESSION = (
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
)
FHIRPATH = "text/fhirpath"
_UNIT = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
_MAX_PASSES = 10


def _expressions(element: Json, url: str) -> list[Json]:
    return [
        ext["valueExpression"]
        for ext in element.get("extension") or []
        if ext.get("url") == url and isinstance(ext.get("valueExpression"), dict)
    ]


def _is_fhirpath(expression: Json) -> bool:
    return bool(expression.get("language", FHIRPATH) == FHIRPATH)


def _where(link_id: str | None) -> str:
    return "Questionnaire" if link_id is None else f"Questionnaire.item.where(linkId='{link_id}')"


def calculated_link_ids(questionnaire: Json) -> list[str]:
    """Return the linkIds of the items that carry a calculatedExpression, in order."""
    return [
        item["linkId"]
        for item in iter_questionnaire_items(questionnaire)
        if _expressions(item, CALCULATED_EXPRESSION)
    ]


def check_expressions(questionnaire: Json) -> list[Issue]:
    """Return the problems found in a Questionnaire's variable/calculated expressions.

    Checks syntax, names and languages without evaluating anything.
    """
    issues: list[Issue] = []
    elements: list[tuple[str | None, Json]] = [(None, questionnaire)]
    elements += [(item.get("linkId"), item) for item in iter_questionnaire_items(questionnaire)]
    for link_id, element in elements:
        label = "the Questionnaire root" if link_id is None else f"item {link_id!r}"
        for expr in _expressions(element, VARIABLE):
            if not expr.get("name"):
                issues.append(Issue(f"A variable on {label} has no name", expression=_where(link_id)))
            issues.extend(_syntax(expr, f"variable %{expr.get('name')} on {label}", link_id))
        for expr in _expressions(element, CALCULATED_EXPRESSION):
            if not _is_fhirpath(expr):
                issues.append(Issue(
                    f"The calculatedExpression on {label} is in {expr.get('language')!r}; "
                    f"only {FHIRPATH} is supported", code="not-supported", expression=_where(link_id)))
                continue
            issues.extend(_syntax(expr, f"the calculatedExpression on {label}", link_id))
    return issues


def _syntax(expr: Json, label: str, link_id: str | None) -> list[Issue]:
    if not _is_fhirpath(expr):
        return []
    text = expr.get("expression")
    if not isinstance(text, str) or not text.strip():
        return [Issue(f"{label} has no expression", expression=_where(link_id))]
    problem = syntax_error(text)
    if problem:
        return [Issue(f"{label}: {text!r}: {problem}", expression=_where(link_id))]
    return []


def calculate(questionnaire: Json, response: Json) -> Json:
    """Return a copy of ``response`` with every calculated item's answer filled in.

    Raise :class:`InvalidInput` naming the item and the expression when an
    expression fails or returns a value the item cannot hold.
    """
    result = copy.deepcopy(response)
    link_ids = calculated_link_ids(questionnaire)
    if not link_ids:
        return result
    env = SdcEnvironment(questionnaire, result)
    for _ in range(_MAX_PASSES):
        if not _Pass(questionnaire, env).run(result):
            break
    else:
        message = (f"The calculated items of {canonical(questionnaire)} do not settle after "
                   f"{_MAX_PASSES} passes (do two of them depend on each other?)")
        raise InvalidInput(message, issues=[Issue(message, code="processing")])
    _prune(result, set(link_ids))
    return result


class _Pass:
    """One evaluation of every variable and calculated expression."""

    def __init__(self, questionnaire: Json, env: SdcEnvironment) -> None:
        self.questionnaire = questionnaire
        self.env = env

    def run(self, response: Json) -> bool:
        scope = self._variables(self.questionnaire, None, None, {})
        return self._siblings(self.questionnaire.get("item") or [], response, scope)

    def _eval(self, expr: Json, context: Json | None, qitem: Json | None,
              scope: dict[str, Any], label: str, raw: bool = False) -> list[Any]:
        text = expr.get("expression") or ""
        link_id = qitem.get("linkId") if qitem else None
        try:
            return self.env.evaluate(text, context=context, qitem=qitem, variables=scope, raw=raw)
        except (ExpressionFailure, ValueError, ArithmeticError) as exc:
            message = f"Cannot calculate {label}: expression {text!r} failed: {exc}"
            raise InvalidInput(message, issues=[Issue(message, expression=_where(link_id))]) from exc

    def _variables(self, element: Json, context: Json | None, qitem: Json | None,
                   inherited: dict[str, Any]) -> dict[str, Any]:
        expressions = _expressions(element, VARIABLE)
        if not expressions:
            return inherited
        scope = dict(inherited)
        where = "the Questionnaire root" if qitem is None else f"item {qitem.get('linkId')!r}"
        for expr in expressions:
            name = expr.get("name")
            if not name or not _is_fhirpath(expr):
                continue  # population queries, CQL...: left undefined
            scope[name] = self._eval(expr, context, qitem, scope, f"variable %{name} on {where}", raw=True)
        return scope

    def _siblings(self, q_items: list[Json], holder: Json, scope: dict[str, Any]) -> bool:
        changed = False
        order = [q.get("linkId") for q in q_items]
        for qitem in q_items:
            instances = [i for i in holder.get("item") or [] if i.get("linkId") == qitem.get("linkId")]
            if instances:
                for instance in instances:
                    changed |= self._instance(qitem, instance, scope)
                continue
            if not _has_calculation(qitem):
                continue
            placeholder: Json = {"linkId": qitem["linkId"]}
            if qitem.get("text"):
                placeholder["text"] = qitem["text"]
            self._instance(qitem, placeholder, scope)
            if placeholder.get("answer") or placeholder.get("item"):
                _insert(holder, placeholder, order)
                changed = True
        return changed

    def _instance(self, qitem: Json, instance: Json, inherited: dict[str, Any]) -> bool:
        scope = self._variables(qitem, instance, qitem, inherited)
        changed = False
        for expr in _expressions(qitem, CALCULATED_EXPRESSION)[:1]:
            if _is_fhirpath(expr):
                changed |= self._calculate(qitem, instance, expr, scope)
        children = qitem.get("item") or []
        if not children:
            return changed
        if qitem.get("type") == "group":
            return self._siblings(children, instance, scope) or changed
        for answer in instance.get("answer") or []:
            changed |= self._siblings(children, answer, scope)
        return changed

    def _calculate(self, qitem: Json, instance: Json, expr: Json, scope: dict[str, Any]) -> bool:
        link_id = qitem.get("linkId")
        label = f"item {link_id!r}"
        values = self._eval(expr, instance, qitem, scope, label)
        text = expr.get("expression") or ""
        if len(values) > 1 and not qitem.get("repeats"):
            _fail(link_id, text, f"it returned {len(values)} values but the item does not repeat")
        answers = [_to_answer(qitem, value, text) for value in values]
        old = instance.get("answer") or []
        for n, answer in enumerate(answers):
            if n < len(old) and old[n].get("item"):
                answer["item"] = old[n]["item"]
        if answers == old:
            return False
        if answers:
            instance["answer"] = answers
        else:
            instance.pop("answer", None)
        return True


def _has_calculation(qitem: Json) -> bool:
    if _expressions(qitem, CALCULATED_EXPRESSION):
        return True
    return qitem.get("type") == "group" and any(_has_calculation(c) for c in qitem.get("item") or [])


def _insert(holder: Json, new: Json, order: list[Any]) -> None:
    items = holder.setdefault("item", [])
    rank = order.index(new["linkId"])
    for n, existing in enumerate(items):
        if existing.get("linkId") in order and order.index(existing["linkId"]) > rank:
            items.insert(n, new)
            return
    items.append(new)


def _prune(response: Json, calculated: set[str]) -> None:
    for holder in [response, *iter_response_items(response)]:
        _prune_list(holder, calculated)
        for answer in holder.get("answer") or []:
            _prune_list(answer, calculated)


def _prune_list(holder: Json, calculated: set[str]) -> None:
    items = holder.get("item")
    if items is None:
        return
    kept = [i for i in items if i.get("linkId") not in calculated or i.get("answer") or i.get("item")]
    if kept:
        holder["item"] = kept
    else:
        holder.pop("item", None)


def _fail(link_id: str | None, expression: str, reason: str) -> None:
    message = f"Cannot calculate item {link_id!r}: expression {expression!r} {reason}"
    raise InvalidInput(message, issues=[Issue(message, expression=_where(link_id))])


def _json_number(value: Any) -> Any:
    """Return a Decimal as an int (if whole) or float; anything else unchanged."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _to_answer(qitem: Json, value: Any, expression: str) -> Json:
    kind = qitem.get("type")
    link_id = qitem.get("linkId")
    if kind == "integer" and _is_number(value):
        if Decimal(str(value)) != Decimal(str(value)).to_integral_value():
            _fail(link_id, expression, f"returned {value} but the item is an integer")
        return {"valueInteger": int(value)}
    if kind == "decimal" and _is_number(value):
        return {"valueDecimal": _json_number(value)}
    if kind == "boolean" and isinstance(value, bool):
        return {"valueBoolean": value}
    if kind in ("string", "text") and (isinstance(value, str) or _is_number(value)):
        return {"valueString": str(_json_number(value))}
    if kind in ("date", "dateTime", "time") and isinstance(value, str):
        return {f"value{kind[0].upper()}{kind[1:]}": value.lstrip("@")}
    if kind == "url" and isinstance(value, str):
        return {"valueUri": value}
    if kind in ("choice", "open-choice"):
        answer = _choice(qitem, value)
        if answer is not None:
            return answer
    if kind == "quantity":
        if isinstance(value, dict) and "value" in value:
            return {"valueQuantity": value}
        if _is_number(value):
            return {"valueQuantity": _quantity(qitem, _json_number(value))}
    if kind == "reference" and isinstance(value, dict):
        return {"valueReference": value}
    if kind == "attachment" and isinstance(value, dict):
        return {"valueAttachment": value}
    _fail(link_id, expression, f"returned {value!r}, which a {kind} item cannot hold")
    raise AssertionError  # unreachable: _fail raises


def _choice(qitem: Json, value: Any) -> Json | None:
    if isinstance(value, dict) and "code" in value:
        return {"valueCoding": value}
    for option in qitem.get("answerOption") or []:
        found = answer_value(option)
        if found is None:
            continue
        kind, option_value = found
        if kind == "Coding" and isinstance(value, str) and option_value.get("code") == value:
            return {"valueCoding": option_value}
        if kind != "Coding" and option_value == _json_number(value):
            return {f"value{kind}": option_value}
    if qitem.get("type") == "open-choice" and isinstance(value, str):
        return {"valueString": value}
    return None


def _quantity(qitem: Json, number: int | float) -> Json:
    quantity: Json = {"value": number}
    for ext in qitem.get("extension") or []:
        if ext.get("url") == _UNIT and isinstance(ext.get("valueCoding"), dict):
            unit = ext["valueCoding"]
            if unit.get("display") or unit.get("code"):
                quantity["unit"] = unit.get("display") or unit.get("code")
            if unit.get("system"):
                quantity["system"] = unit["system"]
            if unit.get("code"):
                quantity["code"] = unit["code"]
    return quantity


def sdc_result(questionnaire: Json, response: Json) -> ScoreResult:
    """Return the scores a calculated response holds, with no interpretation.

    Every calculated item answered with a number is a score; the headline
    (``total``) is the last of them in document order.
    """
    calculated = calculated_link_ids(questionnaire)
    q_items = {i.get("linkId"): i for i in iter_questionnaire_items(questionnaire)}
    found: dict[str, Score] = {}
    for item in iter_response_items(response):
        link_id = item.get("linkId")
        if link_id not in calculated or link_id in found:
            continue
        number = _numeric_answer(item)
        if number is None:
            continue
        qitem = q_items.get(link_id, {})
        codes = qitem.get("code") or []
        code = Coding.from_fhir(codes[0]) if codes else None
        found[link_id] = Score(key=link_id, value=number, code=code, label=qitem.get("text"))
    scores = tuple(found[k] for k in calculated if k in found)
    return ScoreResult(
        questionnaire=canonical(questionnaire),
        total=scores[-1] if scores else None,
        scores=scores,
        response=response,
    )


def _numeric_answer(item: Json) -> int | float | None:
    for answer in item.get("answer") or []:
        found = answer_value(answer)
        if found is None:
            continue
        kind, value = found
        if kind == "Quantity" and isinstance(value, dict):
            kind, value = "Decimal", value.get("value")
        if kind in ("Integer", "Decimal") and _is_number(value):
            number = _json_number(value)
            return number if isinstance(number, int) else float(number)
    return None
