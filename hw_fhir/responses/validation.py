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

from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import InvalidResponse, Issue
from .answer_values import (
    VALUE_KEYS,
    limit_problems,
    mismatch_message,
    shape_problem,
    show_options,
    show_value,
    typed_value,
    values_equal,
)
from .definitions import (
    CALCULATED_EXPRESSION,
    INITIAL_EXPRESSION,
    as_list,
    canonical_of,
    contained_value_sets,
    item_label,
    quote_link_id,
    value_set_members,
)
from .form import ResponseForm, ResponseNode, has_answer

__all__ = ["check_response", "validate_response", "ResponseChecker"]

_QUESTION_TYPES = frozenset(VALUE_KEYS) | {"choice", "open-choice"}


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
    form = ResponseForm(questionnaire, response)
    issues.extend(form.structure_issues)
    checker = ResponseChecker(form, value_sets or {})
    checker.check_container(form.root, form.top_items, issues, final=final)
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


class ResponseChecker:
    """Check every item of a :class:`ResponseForm` against its definition."""

    def __init__(self, form: ResponseForm, value_sets: Mapping[str, Mapping[str, Any]]) -> None:
        self.form = form
        self.contained = contained_value_sets(form.questionnaire)
        self.value_sets = value_sets
        self._expansions: dict[str, tuple[set[tuple[str | None, str]], set[str]] | None] = {}

    def check_container(
        self,
        container: ResponseNode,
        definitions: list[dict[str, Any]],
        issues: list[Issue],
        *,
        final: bool,
    ) -> None:
        """Check the items inside one container (root, group instance or answer)."""
        by_link: dict[str, list[ResponseNode]] = {}
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
        if final and self.form.container_enabled(container):
            for definition in definitions:
                self._check_required(definition, container, by_link, issues)

    def _unknown_item(self, node: ResponseNode) -> Issue:
        link_id = node.link_id
        if not isinstance(link_id, str) or not link_id:
            return Issue("An item has no linkId", code="structure", expression=node.path)
        if link_id in self.form.index:
            parent = self.form.parents.get(link_id)
            where = f"inside {parent!r}" if parent else "at the top level"
            return Issue(
                f"Item {link_id!r} is in the wrong place: the questionnaire has it {where}",
                code="structure",
                expression=node.path,
            )
        name = canonical_of(self.form.questionnaire) or "the questionnaire"
        return Issue(
            f"Unknown item {link_id!r}: {name} has no such linkId",
            code="structure",
            expression=node.path,
        )

    def _check_required(
        self,
        definition: dict[str, Any],
        container: ResponseNode,
        by_link: dict[str, list[ResponseNode]],
        issues: list[Issue],
    ) -> None:
        link_id = definition.get("linkId")
        if not definition.get("required") or definition.get("type") == "display":
            return
        if not isinstance(link_id, str) or not self.form.enabled_at(definition, container):
            return
        if any(has_answer(n) for n in by_link.get(link_id, [])):
            return
        what = (
            "needs at least one answered item"
            if definition.get("type") == "group"
            else "is required"
        )
        issues.append(
            Issue(
                f"{item_label(definition)}: {what}",
                code="required",
                expression=_item_path(container, link_id),
            )
        )

    def _check_item(self, node: ResponseNode, issues: list[Issue], *, final: bool) -> None:
        definition = node.definition
        assert definition is not None and node.parent is not None
        label = item_label(definition)
        kind = definition.get("type")
        if (
            not self.form.item_enabled(node)
            and self.form.container_enabled(node.parent)
            and has_answer(node)
        ):
            issues.append(
                Issue(
                    f"{label}: is answered but not enabled by the other answers; remove the answer",
                    code="business-rule",
                    expression=node.path,
                )
            )
        children = [d for d in as_list(definition.get("item")) if isinstance(d, dict)]
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
        answer: ResponseNode,
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
                Issue(mismatch_message(label, allowed, key, value), code="value", expression=path)
            )
            return
        problem = shape_problem(key, value)
        if problem:
            issues.append(Issue(f"{label}: {problem}", code="value", expression=path))
            return
        for code, problem in self._content_problems(definition, key, value):
            issues.append(Issue(f"{label}: {problem}", code=code, expression=path))

    def _allowed_keys(self, definition: dict[str, Any]) -> tuple[str, ...]:
        kind = definition.get("type")
        if kind not in ("choice", "open-choice"):
            return VALUE_KEYS.get(str(kind), ())
        keys = []
        for option in as_list(definition.get("answerOption")):
            typed = typed_value(option, "value") if isinstance(option, dict) else None
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
        options = [o for o in as_list(definition.get("answerOption")) if isinstance(o, dict)]
        option_values = [t for t in (typed_value(o, "value") for o in options) if t is not None]
        same_type = [t for t in option_values if f"value{t[0]}" == key]
        typed = (key[5:], value)
        if kind in ("choice", "open-choice") and same_type and not free_text:
            if not any(values_equal(typed, option) for option in same_type):
                yield "code-invalid", (
                    f"{show_value(typed)} is not one of the options ({show_options(same_type)})"
                )
        value_set = definition.get("answerValueSet")
        if (
            kind in ("choice", "open-choice")
            and key == "valueCoding"
            and isinstance(value_set, str)
        ):
            for problem in self._value_set_problems(value_set, value):
                yield "code-invalid", problem
        for problem in limit_problems(definition, typed):
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
        yield f"{show_value(('Coding', coding))} is not in the answer list {reference}"

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
        result = value_set_members(value_set) if value_set is not None else None
        self._expansions[reference] = result
        return result


def _repeat_issues(container: ResponseNode, definition: dict[str, Any], times: int) -> list[Issue]:
    where = _item_path(container, str(definition.get("linkId")))
    if definition.get("type") != "group":
        message = f"appears {times} times; give all its answers in one item's answer list"
    elif not definition.get("repeats"):
        message = f"appears {times} times but does not repeat"
    else:
        return []
    return [Issue(f"{item_label(definition)}: {message}", code="structure", expression=where)]


def _item_path(container: ResponseNode, link_id: str) -> str:
    return f"{container.path}.item[linkId={quote_link_id(link_id)}]"


def _readonly_answer_allowed(definition: Mapping[str, Any], node: ResponseNode) -> bool:
    urls = {e.get("url") for e in as_list(definition.get("extension")) if isinstance(e, dict)}
    if urls & {CALCULATED_EXPRESSION, INITIAL_EXPRESSION}:
        return True
    initial = [
        t
        for t in (
            typed_value(i, "value")
            for i in as_list(definition.get("initial"))
            if isinstance(i, dict)
        )
        if t is not None
    ]
    initial += [
        t
        for t in (
            typed_value(o, "value")
            for o in as_list(definition.get("answerOption"))
            if isinstance(o, dict) and o.get("initialSelected")
        )
        if t is not None
    ]
    given = [a.value for a in node.answers]
    return bool(initial) and all(
        v is not None and any(values_equal(v, i) for i in initial) for v in given
    )

