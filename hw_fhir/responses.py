"""Validate a QuestionnaireResponse against the exact Questionnaire version it answers.

:func:`check_response` returns every problem as an :class:`~hw_fhir.errors.Issue` whose
``expression`` names the item, e.g. ``QuestionnaireResponse.item[linkId='mood']``; nested
items continue the path (``...item[linkId='sleep'].item[linkId='hours']``, items under a
question's answer go through ``.answer[0]``) and a repeated group instance gets its
position (``item[linkId='episode'][1]``). :func:`validate_response` raises
:class:`~hw_fhir.errors.InvalidResponse` (422) with those issues.

What is checked (FHIR R4 Questionnaire/QuestionnaireResponse, plus the SDC and core
extensions named below):

* ``QuestionnaireResponse.questionnaire`` equals ``url|version`` (``url`` when the
  Questionnaire has no version);
* every ``linkId`` exists at that place in the Questionnaire; ``display`` items and
  groups carry no answers; a question's children sit under its ``answer``;
* each answer's ``value[x]`` matches the item type and is well formed; ``choice`` answers
  are among ``answerOption`` or the ``answerValueSet`` (contained ``#id`` ValueSets,
  from ``expansion.contains`` or ``compose.include.concept``; other canonical URLs only
  when given in ``value_sets``, otherwise not checked: there is no terminology server);
* ``repeats`` (several answers, or several instances of a group); a question that is not
  a group appears once per container with all its answers in one ``answer`` list;
* ``required`` items are answered, on submit only (``final=True``): a draft may be
  incomplete. A required group needs at least one answered item inside;
* ``minValue``/``maxValue``, ``maxLength``, ``minLength``, ``maxDecimalPlaces`` and
  the SDC ``minQuantity``/``maxQuantity`` extensions;
* ``enableWhen`` (all operators, ``enableBehavior`` all/any): answers to disabled items
  are errors. The question is looked up as R4 says: the nearest occurrence on the
  ancestor axis, so inside a repeating group each instance sees its own answers. When
  the nearest level holds several occurrences (a question in a *separate* repeating
  group, which R5 calls an error) the answers of all of them count. A disabled
  question counts as unanswered; an enableWhen cycle disables the items in it.
  ``sdc-questionnaire-enableWhenExpression`` is not evaluated (such items count as
  enabled).
* ``readOnly`` items: the respondent cannot type into them, so an answer is accepted
  only when the form filler produced it: the item has an SDC ``calculatedExpression``
  or ``initialExpression`` (its value is not recomputed here: scoring does that), or
  the answers equal the item's static ``initial`` values / ``initialSelected`` options.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import InvalidResponse, Issue

__all__ = [
    "check_response",
    "validate_response",
    "check_questionnaire",
    "enabled_items",
    "flatten_answers",
    "canonical_of",
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

#: value[x] accepted for each item type (choice/open-choice also depend on answerOption).
_VALUE_KEYS: dict[str, tuple[str, ...]] = {
    "boolean": ("valueBoolean",),
    "decimal": ("valueDecimal",),
    "integer": ("valueInteger",),
    "date": ("valueDate",),
    "dateTime": ("valueDateTime",),
    "time": ("valueTime",),
    "string": ("valueString",),
    "text": ("valueString",),
    "url": ("valueUri",),
    "attachment": ("valueAttachment",),
    "reference": ("valueReference",),
    "quantity": ("valueQuantity",),
}
_ANSWER_VALUE_KEYS = frozenset(
    "valueBoolean valueDecimal valueInteger valueDate valueDateTime valueTime valueString "
    "valueUri valueAttachment valueCoding valueQuantity valueReference".split()
)
_WHAT = {
    "valueBoolean": "yes or no (valueBoolean)",
    "valueDecimal": "a number (valueDecimal)",
    "valueInteger": "a whole number (valueInteger)",
    "valueDate": "a date (valueDate)",
    "valueDateTime": "a date and time (valueDateTime)",
    "valueTime": "a time of day (valueTime)",
    "valueString": "text (valueString)",
    "valueUri": "a web address (valueUri)",
    "valueAttachment": "a file (valueAttachment)",
    "valueCoding": "one of the listed choices (valueCoding)",
    "valueQuantity": "a quantity (valueQuantity)",
    "valueReference": "a reference (valueReference)",
}
_OPERATORS = frozenset(["exists", "=", "!=", ">", "<", ">=", "<="])
_QUESTION_TYPES = frozenset(_VALUE_KEYS) | {"choice", "open-choice"}

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH_DAY = r"-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
_CLOCK = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_DATE = re.compile(f"{_YEAR}({_MONTH_DAY})?)?")
_DATETIME = re.compile(f"{_YEAR}({_MONTH_DAY}(T{_CLOCK}{_ZONE})?)?)?")
_TIME = re.compile(_CLOCK)
_INT32 = (-(2**31), 2**31 - 1)


# -- public API ---------------------------------------------------------------------------


def canonical_of(questionnaire: Mapping[str, Any]) -> str | None:
    """Return the versioned canonical a response must name: ``url|version`` or ``url``."""
    url = questionnaire.get("url")
    if not url:
        return None
    version = questionnaire.get("version")
    return f"{url}|{version}" if version else str(url)


def check_response(
    questionnaire: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    final: bool = False,
    value_sets: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Issue]:
    """Return every problem of a QuestionnaireResponse against its Questionnaire.

    ``final`` enforces ``required`` (a submitted response); drafts may be incomplete.
    ``value_sets`` maps non-contained ``answerValueSet`` canonicals to ValueSets.
    """
    if not isinstance(response, Mapping) or not isinstance(questionnaire, Mapping):
        return [Issue("A QuestionnaireResponse and its Questionnaire must be JSON objects")]
    issues: list[Issue] = []
    if response.get("resourceType") not in (None, "QuestionnaireResponse"):
        issues.append(
            Issue(
                f"Expected a QuestionnaireResponse but got a {response.get('resourceType')}",
                expression="resourceType",
            )
        )
    issues.extend(_canonical_issues(questionnaire, response))
    form = _Form(questionnaire, response, value_sets or {})
    issues.extend(form.structure_issues)
    form.check_container(form.root, form.top_items, issues, final=final)
    return issues


def validate_response(
    questionnaire: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    final: bool,
    value_sets: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Raise :class:`InvalidResponse` (422) listing every problem, or return None."""
    issues = [
        i
        for i in check_response(questionnaire, response, final=final, value_sets=value_sets)
        if i.severity in ("error", "fatal")
    ]
    if not issues:
        return
    name = canonical_of(questionnaire) or "its Questionnaire"
    count = f"{len(issues)} problems" if len(issues) > 1 else "1 problem"
    raise InvalidResponse(
        f"The response does not satisfy {name} ({count}): {issues[0].message}",
        issues=issues,
        resource=response,
    )


def enabled_items(questionnaire: Mapping[str, Any], response: Mapping[str, Any]) -> set[str]:
    """Return the linkIds enabled by the current answers (in at least one place).

    Items inside a group or answer that is not in the response yet are evaluated as if
    their container existed empty, so a renderer knows what to show next.
    """
    form = _Form(questionnaire, response, {})
    enabled: set[str] = set()
    form.collect_enabled(form.top_items, [form.root], enabled)
    return enabled


def flatten_answers(response: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Return every answer value by linkId, in document order, from anywhere in the response."""
    answers: dict[str, list[Any]] = {}

    def walk(items: Any) -> None:
        for item in _list(items):
            if not isinstance(item, dict):
                continue
            link_id = item.get("linkId")
            for answer in _list(item.get("answer")):
                if not isinstance(answer, dict):
                    continue
                for key, value in answer.items():
                    if key.startswith("value") and isinstance(link_id, str):
                        answers.setdefault(link_id, []).append(value)
                walk(answer.get("item"))
            walk(item.get("item"))

    walk(response.get("item"))
    return answers


def check_questionnaire(questionnaire: Mapping[str, Any]) -> list[Issue]:
    """Return the problems of a Questionnaire that make its responses ill-defined."""
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    contained = _contained_value_sets(questionnaire)
    for path, item in _walk_definitions(questionnaire.get("item"), "Questionnaire"):
        link_id = item.get("linkId")
        if not isinstance(link_id, str) or not link_id:
            issues.append(Issue("An item has no linkId", expression=path))
            continue
        seen[link_id] = seen.get(link_id, 0) + 1
        if seen[link_id] == 2:
            issues.append(Issue(f"linkId {link_id!r} is used more than once", expression=path))
    index = _index_definitions(questionnaire.get("item"))
    for path, item in _walk_definitions(questionnaire.get("item"), "Questionnaire"):
        conditions = _list(item.get("enableWhen"))
        if len(conditions) > 1 and item.get("enableBehavior") not in ("all", "any"):
            issues.append(
                Issue(
                    "Several enableWhen conditions need enableBehavior all or any (que-12)",
                    expression=f"{path}.enableBehavior",
                )
            )
        for n, cond in enumerate(conditions):
            where = f"{path}.enableWhen[{n}]"
            if not isinstance(cond, dict):
                issues.append(Issue("enableWhen must be an object", expression=where))
                continue
            if cond.get("question") not in index:
                issues.append(
                    Issue(
                        f"enableWhen refers to unknown linkId {cond.get('question')!r}",
                        expression=f"{where}.question",
                    )
                )
            operator = cond.get("operator")
            if operator not in _OPERATORS:
                issues.append(
                    Issue(
                        f"Unknown enableWhen operator {operator!r}", expression=f"{where}.operator"
                    )
                )
            if operator == "exists" and not isinstance(cond.get("answerBoolean"), bool):
                issues.append(
                    Issue("The exists operator needs answerBoolean (que-7)", expression=where)
                )
            if _typed(cond, "answer") is None:
                issues.append(Issue("enableWhen needs exactly one answer[x]", expression=where))
        vs = item.get("answerValueSet")
        if isinstance(vs, str) and vs.startswith("#") and vs[1:] not in contained:
            issues.append(
                Issue(
                    f"answerValueSet {vs} is not a contained ValueSet",
                    expression=f"{path}.answerValueSet",
                )
            )
        if item.get("type") == "display" and (item.get("required") or item.get("repeats")):
            issues.append(
                Issue("A display item cannot be required or repeat (que-6)", expression=path)
            )
    return issues


def _canonical_issues(questionnaire: Mapping[str, Any], response: Mapping[str, Any]) -> list[Issue]:
    expected = canonical_of(questionnaire)
    named = response.get("questionnaire")
    where = "QuestionnaireResponse.questionnaire"
    if expected is None:
        return [
            Issue(
                "The Questionnaire has no canonical url to check the response against",
                expression="Questionnaire.url",
            )
        ]
    if not isinstance(named, str) or not named:
        return [
            Issue(
                f"The response does not say which questionnaire it answers (expected {expected})",
                code="required",
                expression=where,
            )
        ]
    if named == expected:
        return []
    url, _, version = named.partition("|")
    if url != questionnaire.get("url"):
        return [Issue(f"The response answers {named}, not {expected}", expression=where)]
    if not version:
        return [
            Issue(
                f"The response must name the exact questionnaire version: {expected}",
                expression=where,
            )
        ]
    if not questionnaire.get("version"):
        return [
            Issue(
                f"The response answers version {version} but {url} has no version", expression=where
            )
        ]
    return [
        Issue(
            f"The response answers version {version} of {url} but this is version "
            f"{questionnaire.get('version')}",
            expression=where,
        )
    ]


# -- the response as a tree -------------------------------------------------------------


class _Node:
    """One place in the response: the root, an item instance, or an answer."""

    __slots__ = (
        "kind",
        "link_id",
        "data",
        "parent",
        "items",
        "answers",
        "definition",
        "path",
        "value",
    )

    def __init__(self, kind: str, data: dict[str, Any], parent: _Node | None, path: str) -> None:
        self.kind = kind  # "root" | "item" | "answer"
        self.data = data
        self.parent = parent
        self.path = path
        self.link_id: str | None = data.get("linkId") if kind == "item" else None
        self.items: list[_Node] = []
        self.answers: list[_Node] = []
        self.definition: dict[str, Any] | None = None
        self.value: tuple[str, Any] | None = None


class _Form:
    """A Questionnaire and one response, with cached enableWhen evaluation."""

    def __init__(
        self,
        questionnaire: Mapping[str, Any],
        response: Mapping[str, Any],
        value_sets: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.questionnaire = questionnaire
        self.top_items = [d for d in _list(questionnaire.get("item")) if isinstance(d, dict)]
        self.index = _index_definitions(self.top_items)
        self.parents = _parent_link_ids(self.top_items)
        self.contained = _contained_value_sets(questionnaire)
        self.value_sets = value_sets
        self.structure_issues: list[Issue] = []
        self.root = _Node("root", dict(response), None, "QuestionnaireResponse")
        self._build_items(
            self.root, response.get("item"), self.top_items, "QuestionnaireResponse.item"
        )
        self._enabled: dict[tuple[int, str], bool | None] = {}
        self._occurrences: dict[int, dict[str, list[_Node]]] = {}
        self._expansions: dict[str, tuple[set[tuple[str | None, str]], set[str]] | None] = {}

    # -- building --

    def _build_items(
        self, container: _Node, raw: Any, definitions: list[dict[str, Any]], where: str
    ) -> None:
        if raw is None:
            return
        if not isinstance(raw, list):
            self.structure_issues.append(
                Issue("item must be a list", code="structure", expression=where)
            )
            return
        by_link = {d.get("linkId"): d for d in definitions}
        counts: dict[Any, int] = {}
        for entry in raw:
            if isinstance(entry, dict):
                counts[entry.get("linkId")] = counts.get(entry.get("linkId"), 0) + 1
        seen: dict[Any, int] = {}
        for n, entry in enumerate(raw):
            if not isinstance(entry, dict):
                self.structure_issues.append(
                    Issue(
                        "Each item must be an object", code="structure", expression=f"{where}[{n}]"
                    )
                )
                continue
            link_id = entry.get("linkId")
            path = f"{container.path}.item[linkId={_quote(link_id)}]"
            if counts.get(link_id, 0) > 1:
                path += f"[{seen.get(link_id, 0)}]"
            seen[link_id] = seen.get(link_id, 0) + 1
            node = _Node("item", entry, container, path)
            node.definition = by_link.get(link_id) if isinstance(link_id, str) else None
            container.items.append(node)
            if node.definition is None:
                continue
            children = [d for d in _list(node.definition.get("item")) if isinstance(d, dict)]
            self._build_items(node, entry.get("item"), children, f"{path}.item")
            raw_answers = entry.get("answer")
            if raw_answers is not None and not isinstance(raw_answers, list):
                self.structure_issues.append(
                    Issue("answer must be a list", code="structure", expression=path)
                )
                continue
            for a, answer in enumerate(_list(raw_answers)):
                if not isinstance(answer, dict):
                    self.structure_issues.append(
                        Issue(
                            f"{_label(node.definition)}: answer {a + 1} must be an object",
                            code="structure",
                            expression=path,
                        )
                    )
                    continue
                answer_node = _Node("answer", answer, node, f"{path}.answer[{a}]")
                answer_node.value = _typed(answer, "value")
                node.answers.append(answer_node)
                self._build_items(
                    answer_node, answer.get("item"), children, f"{path}.answer[{a}].item"
                )

    # -- enableWhen --

    def item_enabled(self, node: _Node) -> bool:
        """Return whether an item instance is enabled (its container too)."""
        if node.definition is None or node.parent is None:
            return True
        return self.enabled_at(node.definition, node.parent)

    def container_enabled(self, container: _Node) -> bool:
        """Return whether answers may be given inside ``container``."""
        if container.kind == "root":
            return True
        if container.kind == "answer":
            assert container.parent is not None
            return self.item_enabled(container.parent)
        return self.item_enabled(container)

    def enabled_at(self, definition: dict[str, Any], container: _Node) -> bool:
        """Return whether an item defined by ``definition`` is enabled inside ``container``."""
        key = (id(container), str(definition.get("linkId")))
        if key in self._enabled:
            known = self._enabled[key]
            return bool(known)  # None = being evaluated: a cycle counts as disabled
        self._enabled[key] = None
        result = self.container_enabled(container) and self._conditions_met(definition, container)
        self._enabled[key] = result
        return result

    def _conditions_met(self, definition: dict[str, Any], container: _Node) -> bool:
        conditions = [c for c in _list(definition.get("enableWhen")) if isinstance(c, dict)]
        if not conditions:
            return True
        if definition.get("enableBehavior") == "any":
            return any(self._condition_met(c, container) for c in conditions)
        return all(self._condition_met(c, container) for c in conditions)

    def _condition_met(self, condition: dict[str, Any], container: _Node) -> bool:
        answers = self.answers_for(condition.get("question"), container)
        operator = condition.get("operator")
        expected = _typed(condition, "answer")
        if operator == "exists":
            wanted = condition.get("answerBoolean")
            return isinstance(wanted, bool) and bool(answers) == wanted
        if expected is None:
            return False
        if operator == "=":
            return any(_equal(a, expected) for a in answers)
        if operator == "!=":
            return not any(_equal(a, expected) for a in answers)
        tests = {
            ">": lambda c: c > 0,
            "<": lambda c: c < 0,
            ">=": lambda c: c >= 0,
            "<=": lambda c: c <= 0,
        }
        test = tests.get(str(operator))
        if test is None:
            return False
        for answer in answers:
            order = _compare(answer, expected)
            if order is not None and test(order):
                return True
        return False

    def answers_for(self, link_id: Any, container: _Node) -> list[tuple[str, Any]]:
        """Return the typed answers of the nearest enabled occurrences of a question."""
        if not isinstance(link_id, str):
            return []
        level: _Node | None = container
        while level is not None:
            found = self._occurrences_in(level).get(link_id)
            if found:
                return [
                    answer.value
                    for node in found
                    if self.item_enabled(node)
                    for answer in node.answers
                    if answer.value is not None
                ]
            level = level.parent
        return []

    def _occurrences_in(self, node: _Node) -> dict[str, list[_Node]]:
        cached = self._occurrences.get(id(node))
        if cached is not None:
            return cached
        found: dict[str, list[_Node]] = {}
        for descendant in _self_and_descendants(node):
            if descendant.kind == "item" and descendant.definition is not None:
                found.setdefault(str(descendant.link_id), []).append(descendant)
        self._occurrences[id(node)] = found
        return found

    def collect_enabled(
        self, definitions: list[dict[str, Any]], containers: list[_Node], enabled: set[str]
    ) -> None:
        """Add the linkIds of ``definitions`` enabled in any of ``containers``."""
        for definition in definitions:
            link_id = definition.get("linkId")
            if not isinstance(link_id, str):
                continue
            places = [c for c in containers if self.enabled_at(definition, c)]
            if not places:
                continue
            enabled.add(link_id)
            children = [d for d in _list(definition.get("item")) if isinstance(d, dict)]
            if not children:
                continue
            inner: list[_Node] = []
            for place in places:
                instances = [n for n in place.items if n.link_id == link_id]
                for instance in instances:
                    inner.append(instance)
                    inner.extend(instance.answers)
                if not instances:
                    inner.append(place)  # not answered yet: evaluate as if it were empty
            self.collect_enabled(children, inner, enabled)

    # -- checks --

    def check_container(
        self,
        container: _Node,
        definitions: list[dict[str, Any]],
        issues: list[Issue],
        *,
        final: bool,
    ) -> None:
        """Check the items inside one container (root, group instance or answer)."""
        by_link: dict[str, list[_Node]] = {}
        for node in container.items:
            if node.definition is not None:
                by_link.setdefault(str(node.link_id), []).append(node)
        for node in container.items:
            if node.definition is None:
                issues.append(self._unknown_item(node))
                continue
            nodes = by_link[str(node.link_id)]
            if len(nodes) > 1 and node is nodes[0]:
                issues.extend(_repeat_issues(container, node.definition, len(nodes)))
            self._check_item(node, issues, final=final)
        if final and self.container_enabled(container):
            for definition in definitions:
                self._check_required(definition, container, by_link, issues)

    def _unknown_item(self, node: _Node) -> Issue:
        link_id = node.link_id
        if not isinstance(link_id, str) or not link_id:
            return Issue("An item has no linkId", code="structure", expression=node.path)
        if link_id in self.index:
            parent = self.parents.get(link_id)
            where = f"inside {parent!r}" if parent else "at the top level"
            return Issue(
                f"Item {link_id!r} is in the wrong place: the questionnaire has it {where}",
                code="structure",
                expression=node.path,
            )
        name = canonical_of(self.questionnaire) or "the questionnaire"
        return Issue(
            f"Unknown item {link_id!r}: {name} has no such linkId",
            code="structure",
            expression=node.path,
        )

    def _check_required(
        self,
        definition: dict[str, Any],
        container: _Node,
        by_link: dict[str, list[_Node]],
        issues: list[Issue],
    ) -> None:
        link_id = definition.get("linkId")
        if not definition.get("required") or definition.get("type") == "display":
            return
        if not isinstance(link_id, str) or not self.enabled_at(definition, container):
            return
        if any(_has_answer(n) for n in by_link.get(link_id, [])):
            return
        what = (
            "needs at least one answered item"
            if definition.get("type") == "group"
            else "is required"
        )
        issues.append(
            Issue(
                f"{_label(definition)}: {what}",
                code="required",
                expression=_item_path(container, link_id),
            )
        )

    def _check_item(self, node: _Node, issues: list[Issue], *, final: bool) -> None:
        definition = node.definition
        assert definition is not None and node.parent is not None
        label = _label(definition)
        kind = definition.get("type")
        if (
            not self.item_enabled(node)
            and self.container_enabled(node.parent)
            and _has_answer(node)
        ):
            issues.append(
                Issue(
                    f"{label}: is answered but not enabled by the other answers; remove the answer",
                    code="business-rule",
                    expression=node.path,
                )
            )
        children = [d for d in _list(definition.get("item")) if isinstance(d, dict)]
        if kind == "display":
            if node.answers or node.items:
                issues.append(
                    Issue(
                        f"{label}: is display text and cannot have answers",
                        code="structure",
                        expression=node.path,
                    )
                )
            return
        if kind == "group":
            if node.answers:
                issues.append(
                    Issue(
                        f"{label}: is a group; put the answers in its items",
                        code="structure",
                        expression=node.path,
                    )
                )
            self.check_container(node, children, issues, final=final)
            return
        if node.items:
            issues.append(
                Issue(
                    f"{label}: items nested under a question belong inside its answer "
                    "(answer.item)",
                    code="structure",
                    expression=node.path,
                )
            )
        if kind not in _QUESTION_TYPES:
            if node.answers:
                issues.append(
                    Issue(
                        f"{label}: items of type {kind!r} cannot be answered",
                        code="structure",
                        expression=node.path,
                    )
                )
            return
        if len(node.answers) > 1 and not definition.get("repeats"):
            issues.append(
                Issue(
                    f"{label}: allows one answer but has {len(node.answers)}",
                    code="structure",
                    expression=node.path,
                )
            )
        if (
            definition.get("readOnly")
            and node.answers
            and not _readonly_answer_allowed(definition, node)
        ):
            issues.append(
                Issue(
                    f"{label}: is read-only and cannot be answered",
                    code="business-rule",
                    expression=node.path,
                )
            )
        for n, answer in enumerate(node.answers):
            prefix = f"{label}: answer {n + 1}" if len(node.answers) > 1 else label
            self._check_answer(definition, answer, prefix, node.path, issues)
            self.check_container(answer, children, issues, final=final)

    def _check_answer(
        self,
        definition: dict[str, Any],
        answer: _Node,
        label: str,
        path: str,
        issues: list[Issue],
    ) -> None:
        keys = [k for k in answer.data if k.startswith("value")]
        if not keys:
            if not answer.items:
                issues.append(
                    Issue(f"{label}: the answer has no value", code="invalid", expression=path)
                )
            return
        if len(keys) > 1:
            issues.append(
                Issue(
                    f"{label}: an answer has one value, not {', '.join(keys)}",
                    code="structure",
                    expression=path,
                )
            )
            return
        key, value = keys[0], answer.data[keys[0]]
        allowed = self._allowed_keys(definition)
        if key not in allowed:
            issues.append(
                Issue(_mismatch(label, allowed, key, value), code="value", expression=path)
            )
            return
        problem = _shape_problem(key, value)
        if problem:
            issues.append(Issue(f"{label}: {problem}", code="value", expression=path))
            return
        for code, problem in self._content_problems(definition, key, value):
            issues.append(Issue(f"{label}: {problem}", code=code, expression=path))

    def _allowed_keys(self, definition: dict[str, Any]) -> tuple[str, ...]:
        kind = definition.get("type")
        if kind not in ("choice", "open-choice"):
            return _VALUE_KEYS.get(str(kind), ())
        keys = []
        for option in _list(definition.get("answerOption")):
            typed = _typed(option, "value") if isinstance(option, dict) else None
            if typed is not None and f"value{typed[0]}" not in keys:
                keys.append(f"value{typed[0]}")
        if definition.get("answerValueSet") or not keys:
            keys.append("valueCoding")
        if kind == "open-choice":
            keys += [k for k in ("valueCoding", "valueString") if k not in keys]
        return tuple(dict.fromkeys(keys))

    def _content_problems(
        self, definition: dict[str, Any], key: str, value: Any
    ) -> Iterator[tuple[str, str]]:
        kind = definition.get("type")
        free_text = kind == "open-choice" and key == "valueString"
        options = [o for o in _list(definition.get("answerOption")) if isinstance(o, dict)]
        option_values = [t for t in (_typed(o, "value") for o in options) if t is not None]
        same_type = [t for t in option_values if f"value{t[0]}" == key]
        typed = (key[5:], value)
        if kind in ("choice", "open-choice") and same_type and not free_text:
            if not any(_equal(typed, option) for option in same_type):
                yield "code-invalid", (
                    f"{_show(typed)} is not one of the options ({_show_options(same_type)})"
                )
        value_set = definition.get("answerValueSet")
        if (
            kind in ("choice", "open-choice")
            and key == "valueCoding"
            and isinstance(value_set, str)
        ):
            for problem in self._value_set_problems(value_set, value):
                yield "code-invalid", problem
        for problem in _limit_problems(definition, typed):
            yield "value", problem

    def _value_set_problems(self, reference: str, coding: dict[str, Any]) -> Iterator[str]:
        members = self._expand(reference)
        if members is None:
            if reference.startswith("#"):
                yield f"its answer list {reference} is missing from the questionnaire"
            return
        codes, whole_systems = members
        system, code = coding.get("system"), coding.get("code")
        if system in whole_systems:
            return
        if (system, code) in codes or (system is None and any(c == code for _, c in codes)):
            return
        yield f"{_show(('Coding', coding))} is not in the answer list {reference}"

    def _expand(self, reference: str) -> tuple[set[tuple[str | None, str]], set[str]] | None:
        if reference in self._expansions:
            return self._expansions[reference]
        value_set: Mapping[str, Any] | None
        if reference.startswith("#"):
            value_set = self.contained.get(reference[1:])
        else:
            value_set = self.value_sets.get(reference) or self.value_sets.get(
                reference.split("|")[0]
            )
        result = _value_set_members(value_set) if value_set is not None else None
        self._expansions[reference] = result
        return result


# -- helpers: structure -----------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _quote(link_id: Any) -> str:
    text = str(link_id) if link_id is not None else ""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _repeat_issues(container: _Node, definition: dict[str, Any], times: int) -> list[Issue]:
    where = _item_path(container, str(definition.get("linkId")))
    if definition.get("type") != "group":
        message = f"appears {times} times; give all its answers in one item's answer list"
    elif not definition.get("repeats"):
        message = f"appears {times} times but does not repeat"
    else:
        return []
    return [Issue(f"{_label(definition)}: {message}", code="structure", expression=where)]


def _item_path(container: _Node, link_id: str) -> str:
    return f"{container.path}.item[linkId={_quote(link_id)}]"


def _label(definition: Mapping[str, Any]) -> str:
    text = definition.get("text")
    if isinstance(text, str) and text.strip():
        text = " ".join(text.split())
        return f'"{text[:77]}..."' if len(text) > 80 else f'"{text}"'
    return f"Item {definition.get('linkId')!r}"


def _self_and_descendants(node: _Node) -> Iterator[_Node]:
    yield node
    for child in node.items:
        yield from _self_and_descendants(child)
    for answer in node.answers:
        yield from _self_and_descendants(answer)


def _has_answer(node: _Node) -> bool:
    return any(n.kind == "answer" for n in _self_and_descendants(node))


def _walk_definitions(items: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for n, item in enumerate(_list(items)):
        if not isinstance(item, dict):
            continue
        here = f"{path}.item[{n}]"
        yield here, item
        yield from _walk_definitions(item.get("item"), here)


def _index_definitions(items: Any) -> dict[str, dict[str, Any]]:
    return {
        item["linkId"]: item
        for _, item in _walk_definitions(items, "")
        if isinstance(item.get("linkId"), str)
    }


def _parent_link_ids(items: Any, parent: str | None = None) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for item in _list(items):
        if isinstance(item, dict) and isinstance(item.get("linkId"), str):
            found[item["linkId"]] = parent
            found.update(_parent_link_ids(item.get("item"), item["linkId"]))
    return found


def _contained_value_sets(questionnaire: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        r["id"]: r
        for r in _list(questionnaire.get("contained"))
        if isinstance(r, dict) and r.get("resourceType") == "ValueSet" and r.get("id")
    }


def _value_set_members(
    value_set: Mapping[str, Any],
) -> tuple[set[tuple[str | None, str]], set[str]]:
    """Return ``({(system, code)}, {systems included whole})`` of a ValueSet."""
    codes: set[tuple[str | None, str]] = set()
    whole: set[str] = set()

    def contains(entries: Any) -> None:
        for entry in _list(entries):
            if isinstance(entry, dict):
                if entry.get("code") and not entry.get("abstract"):
                    codes.add((entry.get("system"), entry["code"]))
                contains(entry.get("contains"))

    expansion = value_set.get("expansion")
    if isinstance(expansion, dict) and expansion.get("contains"):
        contains(expansion.get("contains"))
        return codes, whole
    compose = value_set.get("compose") if isinstance(value_set.get("compose"), dict) else {}
    for include in _list(compose.get("include")):
        if not isinstance(include, dict):
            continue
        concepts = _list(include.get("concept"))
        if include.get("system") and not concepts and not include.get("filter"):
            whole.add(include["system"])
        for concept in concepts:
            if isinstance(concept, dict) and concept.get("code"):
                codes.add((include.get("system"), concept["code"]))
    for exclude in _list(compose.get("exclude")):
        if isinstance(exclude, dict):
            for concept in _list(exclude.get("concept")):
                if isinstance(concept, dict):
                    codes.discard((exclude.get("system"), concept.get("code")))
    return codes, whole


# -- helpers: values ----------------------------------------------------------------------


def _typed(element: Mapping[str, Any], prefix: str) -> tuple[str, Any] | None:
    """Return ``(type, value)`` of the single ``<prefix>[x]`` of an element, or None."""
    found = [
        (key[len(prefix) :], value)
        for key, value in element.items()
        if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper()
    ]
    return found[0] if len(found) == 1 else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _shape_problem(key: str, value: Any) -> str | None:
    """Return what is malformed about a value[x], or None."""
    if key == "valueBoolean":
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    if key == "valueInteger":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{value!r} is not a whole number"
        if not _INT32[0] <= value <= _INT32[1]:
            return f"{value} is too large for a FHIR integer"
        return None
    if key == "valueDecimal":
        if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
            return f"{value!r} is not a number"
        return None
    if key in ("valueString", "valueUri"):
        if not isinstance(value, str):
            return f"{value!r} is not text"
        if not value.strip():
            return "the answer is empty; leave the question unanswered instead"
        if key == "valueUri" and re.search(r"\s", value):
            return f"{value!r} is not a valid web address (it contains spaces)"
        return None
    if key == "valueDate":
        return (
            None
            if isinstance(value, str) and _valid_date(value, _DATE)
            else (f"{value!r} is not a date (YYYY, YYYY-MM or YYYY-MM-DD)")
        )
    if key == "valueDateTime":
        return (
            None
            if isinstance(value, str) and _valid_date(value, _DATETIME)
            else (f"{value!r} is not a date-time (e.g. 2026-03-08T20:00:00+01:00)")
        )
    if key == "valueTime":
        return (
            None
            if isinstance(value, str) and _TIME.fullmatch(value)
            else (f"{value!r} is not a time of day (hh:mm:ss)")
        )
    if key == "valueCoding":
        if not isinstance(value, dict) or not (value.get("code") or value.get("display")):
            return "a coded answer needs a code"
        return None
    if key == "valueQuantity":
        if not isinstance(value, dict) or not _is_number(value.get("value")):
            return "a quantity needs a numeric value"
        return None
    if key == "valueReference":
        if not isinstance(value, dict) or not (
            value.get("reference") or value.get("identifier") or value.get("display")
        ):
            return "a reference needs a reference, identifier or display"
        return None
    if key == "valueAttachment":
        if not isinstance(value, dict):
            return "an attachment must be an object"
        if value.get("data") and not value.get("contentType"):
            return "an attachment with data needs a contentType"
        return None
    return f"{key} is not a valid answer type"


def _valid_date(value: str, pattern: re.Pattern[str]) -> bool:
    if not pattern.fullmatch(value):
        return False
    if len(value) >= 10:
        try:
            date.fromisoformat(value[:10])
        except ValueError:
            return False
    return True


def _mismatch(label: str, allowed: tuple[str, ...], key: str, value: Any) -> str:
    expected = " or ".join(_WHAT.get(k, k) for k in allowed) or "no answer"
    if key not in _ANSWER_VALUE_KEYS:
        return f"{label}: {key} is not a valid answer type; expected {expected}"
    if key == "valueString" and isinstance(value, str):
        got = f"the text {value!r}"
    else:
        got = _WHAT[key]
    return f"{label}: expected {expected} but got {got}"


def _readonly_answer_allowed(definition: Mapping[str, Any], node: _Node) -> bool:
    urls = {e.get("url") for e in _list(definition.get("extension")) if isinstance(e, dict)}
    if urls & {CALCULATED_EXPRESSION, INITIAL_EXPRESSION}:
        return True
    initial = [
        t
        for t in (
            _typed(i, "value") for i in _list(definition.get("initial")) if isinstance(i, dict)
        )
        if t is not None
    ]
    initial += [
        t
        for t in (
            _typed(o, "value")
            for o in _list(definition.get("answerOption"))
            if isinstance(o, dict) and o.get("initialSelected")
        )
        if t is not None
    ]
    given = [a.value for a in node.answers]
    return bool(initial) and all(
        v is not None and any(_equal(v, i) for i in initial) for v in given
    )


def _extension_value(definition: Mapping[str, Any], url: str) -> tuple[str, Any] | None:
    for ext in _list(definition.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == url:
            return _typed(ext, "value")
    return None


def _limit_problems(definition: Mapping[str, Any], typed: tuple[str, Any]) -> Iterator[str]:
    kind, value = typed
    low = _extension_value(definition, MIN_VALUE)
    high = _extension_value(definition, MAX_VALUE)
    if kind == "Quantity":
        low = _extension_value(definition, MIN_QUANTITY) or low
        high = _extension_value(definition, MAX_QUANTITY) or high
    if low is not None:
        order = _compare(typed, low)
        if order is not None and order < 0:
            yield f"{_show(typed)} is below the minimum {_show(low)}"
    if high is not None:
        order = _compare(typed, high)
        if order is not None and order > 0:
            yield f"{_show(typed)} is above the maximum {_show(high)}"
    if kind in ("String", "Uri") and isinstance(value, str):
        longest = definition.get("maxLength")
        if isinstance(longest, int) and len(value) > longest:
            yield f"is {len(value)} characters long; at most {longest} allowed"
        shortest = _extension_value(definition, MIN_LENGTH)
        if shortest and isinstance(shortest[1], int) and len(value) < shortest[1]:
            yield f"is {len(value)} characters long; at least {shortest[1]} needed"
    if kind == "Decimal":
        places = _extension_value(definition, MAX_DECIMAL_PLACES)
        if places and isinstance(places[1], int):
            exponent = Decimal(str(value)).as_tuple().exponent
            if isinstance(exponent, int) and -exponent > places[1]:
                yield f"{value} has more than {places[1]} decimal places"


def _number(value: Any) -> Decimal | None:
    if not _is_number(value):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _temporal(kind: str, value: Any) -> tuple[int, Any] | None:
    """Return ``(precision, comparable)`` for a date/dateTime/instant string."""
    if not isinstance(value, str):
        return None
    if kind in ("DateTime", "Instant") and "T" in value:
        try:
            return 4, datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    parts = value[:10].split("-")
    try:
        return len(parts), tuple(int(p) for p in parts)
    except ValueError:
        return None


def _compare(a: tuple[str, Any], b: tuple[str, Any]) -> int | None:
    """Return -1/0/1 ordering two typed values, or None when they cannot be ordered."""
    (ka, va), (kb, vb) = a, b
    numbers = ("Integer", "Decimal")
    if ka in numbers and kb in numbers:
        na, nb = _number(va), _number(vb)
        if na is None or nb is None:
            return None
        return (na > nb) - (na < nb)
    dates = ("Date", "DateTime", "Instant")
    if ka in dates and kb in dates:
        ta, tb = _temporal(ka, va), _temporal(kb, vb)
        if ta is None or tb is None:
            return None
        if ta[0] == 4 and tb[0] == 4:
            if (ta[1].tzinfo is None) != (tb[1].tzinfo is None):
                return None
            return (ta[1] > tb[1]) - (ta[1] < tb[1])
        da = ta[1] if ta[0] < 4 else (ta[1].year, ta[1].month, ta[1].day)
        db = tb[1] if tb[0] < 4 else (tb[1].year, tb[1].month, tb[1].day)
        common = min(len(da), len(db))
        if da[:common] != db[:common]:
            return (da[:common] > db[:common]) - (da[:common] < db[:common])
        return 0 if len(da) == len(db) and ta[0] < 4 and tb[0] < 4 else None
    if ka == kb == "Time":
        try:
            x, y = time.fromisoformat(va), time.fromisoformat(vb)
        except (TypeError, ValueError):
            return None
        return (x > y) - (x < y)
    if ka == kb and ka in ("String", "Uri") and isinstance(va, str) and isinstance(vb, str):
        return (va > vb) - (va < vb)
    if ka == kb == "Quantity" and isinstance(va, dict) and isinstance(vb, dict):
        if not _same_unit(va, vb):
            return None
        na, nb = _number(va.get("value")), _number(vb.get("value"))
        if na is None or nb is None:
            return None
        return (na > nb) - (na < nb)
    return None


def _same_unit(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.get("code") or b.get("code"):
        return a.get("code") == b.get("code") and a.get("system") == b.get("system")
    return a.get("unit") == b.get("unit")


def _equal(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    """Return whether two typed values are equal in the FHIR enableWhen/answerOption sense."""
    (ka, va), (kb, vb) = a, b
    if ka == kb == "Coding":
        if not isinstance(va, dict) or not isinstance(vb, dict):
            return False
        if va.get("code") is None or vb.get("code") is None:
            return (
                va.get("display") is not None
                and va.get("display") == vb.get("display")
                and va.get("code") == vb.get("code")
            )
        systems = va.get("system"), vb.get("system")
        return va.get("code") == vb.get("code") and (None in systems or systems[0] == systems[1])
    if ka == kb == "Reference":
        return (
            isinstance(va, dict)
            and isinstance(vb, dict)
            and va.get("reference") is not None
            and va.get("reference") == vb.get("reference")
        )
    if ka == kb == "Boolean":
        return va is vb
    if ka == kb == "Attachment":
        return False
    return _compare(a, b) == 0


def _show(typed: tuple[str, Any]) -> str:
    kind, value = typed
    if kind == "Coding" and isinstance(value, dict):
        return repr(value.get("display") or value.get("code"))
    if kind == "Quantity" and isinstance(value, dict):
        return f"{value.get('value')} {value.get('unit') or value.get('code') or ''}".strip()
    if kind == "Reference" and isinstance(value, dict):
        return repr(value.get("reference") or value.get("display"))
    if isinstance(value, str):
        return repr(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _show_options(options: list[tuple[str, Any]], limit: int = 8) -> str:
    shown = ", ".join(_show(o) for o in options[:limit])
    return shown + (f", ... {len(options) - limit} more" if len(options) > limit else "")
