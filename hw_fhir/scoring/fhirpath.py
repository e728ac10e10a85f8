"""FHIRPath for SDC Questionnaires: fhirpathpy plus the SDC supplements.

fhirpathpy lets a caller add functions through ``options["userInvocationTable"]``:
``{name: {"fn": fn, "arity": {n: [param types]}}}``; ``fn`` receives the input
collection as plain data (``get_data`` of each node: dicts keep their identity,
floats become Decimals) followed by the evaluated parameters. User entries
override built-in ones of the same name.

Added here (https://hl7.org/fhir/uv/sdc/expressions.html#fhirpath-supplements):

* ``answers()`` — the answer values of every item below the input node;
* ``weight()`` (alias ``ordinal()``) — the itemWeight/ordinalValue of each input
  answer, Coding or code, looked up as :mod:`hw_fhir.scoring.weights` describes;
  a coded input with no weight anywhere makes the expression fail, naming the answer
  (the SDC rule), instead of silently dropping out of a sum;
* ``sum()``, ``min()``, ``max()``, ``avg()`` — the aggregates, accepting typed
  nodes (fhirpathpy's own ``sum()`` fails on ``answer.value`` nodes);
* variables ``%resource`` (the QuestionnaireResponse), ``%questionnaire``,
  ``%context`` (the response item the expression is evaluated on, or the
  response itself at the root) and ``%qitem`` (the Questionnaire item).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import FP_Type, ResourceNode
from fhirpathpy.engine.util import get_data
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from ..errors import ExpressionFailure
from .items import answer_value, iter_response_items, questionnaire_items_by_link_id
from .weights import answer_weight, coding_weight, extension_weight

__all__ = ["ExpressionFailure", "SdcEnvironment", "parse_cache", "syntax_error", "to_plain"]

Json = dict[str, Any]

_MODEL = models["r4"]

# FHIR type of each answer value[x] suffix, so that ``answers()`` returns typed nodes.
_PRIMITIVES = {
    "Boolean": "boolean",
    "Decimal": "decimal",
    "Integer": "integer",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
    "String": "string",
    "Uri": "uri",
}


class _Raise(ErrorListener):
    def syntaxError(self, recognizer: Any, offendingSymbol: Any, line: int, column: int,
                    msg: str, e: Any) -> None:
        if " expecting {" in msg:
            msg = msg.split(" expecting {", 1)[0]
        raise ExpressionFailure(f"syntax error at column {column + 1}: {msg}")


@lru_cache(maxsize=1024)
def _compiled(expression: str) -> tuple[Any, str | None]:
    """Parse an expression once: (fhirpathpy's parsed form, None), or (None, the syntax error).

    One ANTLR parse serves both: the whole text must be an expression (``entireExpression``,
    any error raised by :class:`_Raise`), and its ``expression`` subtree is walked with
    fhirpathpy's own listener into the form :func:`fhirpathpy.parser.parse` returns for
    it (that function parses ``expression`` alone, ignoring errors and trailing text).
    """
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    try:
        tree = parser.entireExpression()
    except ExpressionFailure as exc:
        return None, str(exc)
    listener = ASTPathListener()
    ParseTreeWalker().walk(listener, tree.expression())
    return listener.parentStack[0], None


#: The parse cache, one entry per expression text (``cache_info()``, ``cache_clear()``): the
#: server fills it before its workers fork (:func:`smart_app.warmup.warm_expressions`).
parse_cache = _compiled


def syntax_error(expression: str) -> str | None:
    """Return a description of the syntax error in a FHIRPath expression, or None."""
    return _compiled(expression)[1]


def _parsed(expression: str) -> Any:
    parsed, problem = _compiled(expression)
    if problem:
        raise ExpressionFailure(problem)
    return parsed


def to_plain(value: Any) -> Any:
    """Return a FHIRPath result value as plain JSON-able Python data."""
    value = get_data(value)
    if isinstance(value, FP_Type):
        return str(value)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def _numbers(inputs: list[Any], fn: str) -> list[Any]:
    out = []
    for value in inputs:
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            raise ExpressionFailure(f"{fn}() needs numbers, got {to_plain(value)!r}")
        out.append(value)
    return out


def _sum(inputs: list[Any]) -> Any:
    return sum(_numbers(inputs, "sum"), 0)


def _min(inputs: list[Any]) -> Any:
    values = _numbers(inputs, "min")
    return min(values) if values else []


def _max(inputs: list[Any]) -> Any:
    values = _numbers(inputs, "max")
    return max(values) if values else []


def _avg(inputs: list[Any]) -> Any:
    values = _numbers(inputs, "avg")
    return Decimal(sum(values, 0)) / len(values) if values else []


def _typed(kind: str, value: Any) -> Any:
    return ResourceNode.create_node(value, _PRIMITIVES.get(kind, kind))


def _answers(inputs: list[Any]) -> list[Any]:
    out = []
    for node in inputs:
        if not isinstance(node, dict):
            continue
        for item in iter_response_items(node):
            for answer in item.get("answer") or []:
                found = answer_value(answer)
                if found is not None:
                    out.append(_typed(*found))
    return out


def _coded(node: Any) -> bool:
    """Tell whether a weight() input is a Coding or an answer holding one (text is skipped)."""
    if not isinstance(node, dict):
        return False
    found = answer_value(node)
    if found is not None:
        return found[0] == "Coding"
    return "code" in node


class SdcEnvironment:
    """Evaluate FHIRPath over one QuestionnaireResponse with the SDC supplements.

    The response may change between evaluations (calculated answers being
    written): answers are located afresh on every call.
    """

    def __init__(self, questionnaire: Json, response: Json) -> None:
        self.questionnaire = questionnaire
        self.response = response
        self._q_items = questionnaire_items_by_link_id(questionnaire)
        self._owner: dict[int, str] = {}
        self._table: dict[str, dict[str, Any]] = {
            "answers": {"fn": _answers},
            "weight": {"fn": self._weight},
            "ordinal": {"fn": self._weight},
            "sum": {"fn": _sum},
            "min": {"fn": _min},
            "max": {"fn": _max},
            "avg": {"fn": _avg},
        }

    def _index_answers(self) -> None:
        owner: dict[int, str] = {}
        for item in iter_response_items(self.response):
            link_id = item.get("linkId", "")
            for answer in item.get("answer") or []:
                owner[id(answer)] = link_id
                for key, value in answer.items():
                    if key.startswith("value") and isinstance(value, dict):
                        owner[id(value)] = link_id
        self._owner = owner

    def _weight(self, inputs: list[Any]) -> list[Any]:
        out = []
        for node in inputs:
            weight = self._one_weight(node)
            if weight is not None:
                out.append(weight)
            elif _coded(node):
                raise ExpressionFailure(f"weight(): {self._no_weight(node)}")
        return out

    def _no_weight(self, node: Any) -> str:
        """Say which answer has no weight (SDC: weight() fails rather than return nothing)."""
        if isinstance(node, dict):
            found = answer_value(node)
            value = found[1] if found else node
            code = value.get("code") if isinstance(value, dict) else value
            link_id = self._owner.get(id(node), "")
            where = f" (the answer to item {link_id!r})" if link_id else ""
            return (f"{code!r}{where} has no itemWeight/ordinalValue on the answer, its option, "
                    f"its ValueSet or its CodeSystem")
        return f"{to_plain(node)!r} has no itemWeight/ordinalValue"

    def _one_weight(self, node: Any) -> Decimal | None:
        if isinstance(node, str):
            return coding_weight(self.questionnaire, None, node)
        if not isinstance(node, dict):
            return None
        item = self._q_items.get(self._owner.get(id(node), ""))
        if answer_value(node) is not None:  # an answer element or an answerOption
            return answer_weight(self.questionnaire, item, node)
        own = extension_weight(node)
        if own is not None:
            return own
        return coding_weight(self.questionnaire, item, node)

    def evaluate(
        self,
        expression: str,
        *,
        context: Json | None = None,
        qitem: Json | None = None,
        variables: Mapping[str, Any] | None = None,
        raw: bool = False,
    ) -> list[Any]:
        """Evaluate an expression; ``context`` is a response item (None: the response root).

        Return plain data, or fhirpathpy nodes with ``raw`` (for variables, so
        that later expressions still know each value's type and origin).
        Raise :class:`ExpressionFailure` if it cannot be parsed or evaluated.
        """
        parsed = _parsed(expression)
        self._index_answers()
        if context is None:
            root: Any = self.response
        else:
            root = ResourceNode.create_node(context, "QuestionnaireResponse.item")
        env: dict[str, Any] = {"resource": self.response, "questionnaire": self.questionnaire}
        if qitem is not None:
            env["qitem"] = ResourceNode.create_node(qitem, "Questionnaire.item")
        env.update(variables or {})
        options: dict[str, Any] = {"userInvocationTable": self._table}
        if raw:
            options["returnRawData"] = True
        try:
            result = apply_parsed_path(root, parsed, env, _MODEL, options)
        except ExpressionFailure:
            raise
        except Exception as exc:  # fhirpathpy raises bare Exceptions for every failure
            raise ExpressionFailure(_describe(exc)) from exc
        return list(result) if raw else [to_plain(v) for v in result]


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if text.startswith("Not implemented: "):
        return f"unknown function {text.removeprefix('Not implemented: ')}()"
    return text

