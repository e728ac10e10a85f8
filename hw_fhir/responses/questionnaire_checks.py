"""Check a Questionnaire itself: the problems that make its responses ill-defined."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Issue
from ..items import walk_item_paths
from .answer_values import typed_value
from .definitions import as_list, contained_value_sets, index_definitions

__all__ = ["check_questionnaire"]

_OPERATORS = frozenset(["exists", "=", "!=", ">", "<", ">=", "<="])


def check_questionnaire(questionnaire: Mapping[str, Any]) -> list[Issue]:
    """Return the problems of a Questionnaire that make its responses ill-defined."""
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    contained = contained_value_sets(questionnaire)
    for path, item in walk_item_paths(questionnaire.get("item"), "Questionnaire"):
        link_id = item.get("linkId")
        if not isinstance(link_id, str) or not link_id:
            issues.append(Issue("An item has no linkId", expression=path))
            continue
        seen[link_id] = seen.get(link_id, 0) + 1
        if seen[link_id] == 2:
            issues.append(Issue(f"linkId {link_id!r} is used more than once", expression=path))
    index = index_definitions(questionnaire.get("item"))
    for path, item in walk_item_paths(questionnaire.get("item"), "Questionnaire"):
        conditions = as_list(item.get("enableWhen"))
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
            if typed_value(cond, "answer") is None:
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

