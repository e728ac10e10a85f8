"""The form model: a Questionnaire and one response as a tree, with enableWhen evaluated.

:class:`ResponseForm` builds a :class:`ResponseNode` tree (the root, each item
instance, each answer) from a response, pairing every item with its definition, and
answers "is this item enabled here?" as FHIR R4 says: the question is looked up on the
ancestor axis, so inside a repeating group each instance sees its own answers; a
disabled question counts as unanswered; an enableWhen cycle disables the items in it.
Validation, the renderer and pruning of disabled answers all use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import Issue
from .answer_values import compare_values, typed_value, values_equal
from .definitions import as_list, index_definitions, item_label, parent_link_ids, quote_link_id

__all__ = ["ResponseNode", "ResponseForm", "enabled_items", "has_answer", "self_and_descendants"]


class ResponseNode:
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

    def __init__(
        self, kind: str, data: dict[str, Any], parent: ResponseNode | None, path: str
    ) -> None:
        self.kind = kind  # "root" | "item" | "answer"
        self.data = data
        self.parent = parent
        self.path = path
        self.link_id: str | None = data.get("linkId") if kind == "item" else None
        self.items: list[ResponseNode] = []
        self.answers: list[ResponseNode] = []
        self.definition: dict[str, Any] | None = None
        self.value: tuple[str, Any] | None = None


class ResponseForm:
    """A Questionnaire and one response, with cached enableWhen evaluation."""

    def __init__(
        self,
        questionnaire: Mapping[str, Any],
        response: Mapping[str, Any],
    ) -> None:
        self.questionnaire = questionnaire
        self.top_items = [d for d in as_list(questionnaire.get("item")) if isinstance(d, dict)]
        self.index = index_definitions(self.top_items)
        self.parents = parent_link_ids(self.top_items)
        self.structure_issues: list[Issue] = []
        self.root = ResponseNode("root", dict(response), None, "QuestionnaireResponse")
        self._build_items(
            self.root, response.get("item"), self.top_items, "QuestionnaireResponse.item"
        )
        self._enabled: dict[tuple[int, str], bool | None] = {}
        self._occurrences: dict[int, dict[str, list[ResponseNode]]] = {}

    # -- building --

    def _build_items(
        self, container: ResponseNode, raw: Any, definitions: list[dict[str, Any]], where: str
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
            path = f"{container.path}.item[linkId={quote_link_id(link_id)}]"
            if counts.get(link_id, 0) > 1:
                path += f"[{seen.get(link_id, 0)}]"
            seen[link_id] = seen.get(link_id, 0) + 1
            node = ResponseNode("item", entry, container, path)
            node.definition = by_link.get(link_id) if isinstance(link_id, str) else None
            container.items.append(node)
            if node.definition is None:
                continue
            children = [d for d in as_list(node.definition.get("item")) if isinstance(d, dict)]
            self._build_items(node, entry.get("item"), children, f"{path}.item")
            raw_answers = entry.get("answer")
            if raw_answers is not None and not isinstance(raw_answers, list):
                self.structure_issues.append(
                    Issue("answer must be a list", code="structure", expression=path)
                )
                continue
            for a, answer in enumerate(as_list(raw_answers)):
                if not isinstance(answer, dict):
                    self.structure_issues.append(
                        Issue(
                            f"{item_label(node.definition)}: answer {a + 1} must be an object",
                            code="structure",
                            expression=path,
                        )
                    )
                    continue
                answer_node = ResponseNode("answer", answer, node, f"{path}.answer[{a}]")
                answer_node.value = typed_value(answer, "value")
                node.answers.append(answer_node)
                self._build_items(
                    answer_node, answer.get("item"), children, f"{path}.answer[{a}].item"
                )

    # -- enableWhen --

    def item_enabled(self, node: ResponseNode) -> bool:
        """Return whether an item instance is enabled (its container too)."""
        if node.definition is None or node.parent is None:
            return True
        return self.enabled_at(node.definition, node.parent)

    def container_enabled(self, container: ResponseNode) -> bool:
        """Return whether answers may be given inside ``container``."""
        if container.kind == "root":
            return True
        if container.kind == "answer":
            assert container.parent is not None
            return self.item_enabled(container.parent)
        return self.item_enabled(container)

    def enabled_at(self, definition: dict[str, Any], container: ResponseNode) -> bool:
        """Return whether an item defined by ``definition`` is enabled inside ``container``."""
        key = (id(container), str(definition.get("linkId")))
        if key in self._enabled:
            known = self._enabled[key]
            return bool(known)  # None = being evaluated: a cycle counts as disabled
        self._enabled[key] = None
        result = self.container_enabled(container) and self._conditions_met(definition, container)
        self._enabled[key] = result
        return result

    def _conditions_met(self, definition: dict[str, Any], container: ResponseNode) -> bool:
        conditions = [c for c in as_list(definition.get("enableWhen")) if isinstance(c, dict)]
        if not conditions:
            return True
        if definition.get("enableBehavior") == "any":
            return any(self._condition_met(c, container) for c in conditions)
        return all(self._condition_met(c, container) for c in conditions)

    def _condition_met(self, condition: dict[str, Any], container: ResponseNode) -> bool:
        answers = self.answers_for(condition.get("question"), container)
        operator = condition.get("operator")
        expected = typed_value(condition, "answer")
        if operator == "exists":
            wanted = condition.get("answerBoolean")
            return isinstance(wanted, bool) and bool(answers) == wanted
        if expected is None:
            return False
        if operator == "=":
            return any(values_equal(a, expected) for a in answers)
        if operator == "!=":
            return not any(values_equal(a, expected) for a in answers)
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
            order = compare_values(answer, expected)
            if order is not None and test(order):
                return True
        return False

    def answers_for(self, link_id: Any, container: ResponseNode) -> list[tuple[str, Any]]:
        """Return the typed answers of the nearest enabled occurrences of a question."""
        if not isinstance(link_id, str):
            return []
        level: ResponseNode | None = container
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

    def _occurrences_in(self, node: ResponseNode) -> dict[str, list[ResponseNode]]:
        cached = self._occurrences.get(id(node))
        if cached is not None:
            return cached
        found: dict[str, list[ResponseNode]] = {}
        for descendant in self_and_descendants(node):
            if descendant.kind == "item" and descendant.definition is not None:
                found.setdefault(str(descendant.link_id), []).append(descendant)
        self._occurrences[id(node)] = found
        return found

    def collect_enabled(
        self, definitions: list[dict[str, Any]], containers: list[ResponseNode], enabled: set[str]
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
            children = [d for d in as_list(definition.get("item")) if isinstance(d, dict)]
            if not children:
                continue
            inner: list[ResponseNode] = []
            for place in places:
                instances = [n for n in place.items if n.link_id == link_id]
                for instance in instances:
                    inner.append(instance)
                    inner.extend(instance.answers)
                if not instances:
                    inner.append(place)  # not answered yet: evaluate as if it were empty
            self.collect_enabled(children, inner, enabled)


def enabled_items(questionnaire: Mapping[str, Any], response: Mapping[str, Any]) -> set[str]:
    """Return the linkIds enabled by the current answers (in at least one place).

    Items inside a group or answer that is not in the response yet are evaluated as if
    their container existed empty, so a renderer knows what to show next.
    """
    form = ResponseForm(questionnaire, response)
    enabled: set[str] = set()
    form.collect_enabled(form.top_items, [form.root], enabled)
    return enabled


def self_and_descendants(node: ResponseNode) -> Iterator[ResponseNode]:
    """Yield a node, then every item and answer below it (depth first)."""
    yield node
    for child in node.items:
        yield from self_and_descendants(child)
    for answer in node.answers:
        yield from self_and_descendants(answer)


def has_answer(node: ResponseNode) -> bool:
    """Return whether a node or anything below it holds an answer."""
    return any(n.kind == "answer" for n in self_and_descendants(node))

