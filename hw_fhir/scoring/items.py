"""Walk Questionnaire and QuestionnaireResponse items (nested groups and answers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = [
    "iter_questionnaire_items",
    "questionnaire_items_by_link_id",
    "iter_response_items",
    "answers_by_link_id",
    "answer_value",
    "canonical",
]

Json = dict[str, Any]


def iter_questionnaire_items(questionnaire: Json) -> Iterator[Json]:
    """Yield every Questionnaire item, depth first, in document order."""
    stack = list(reversed(questionnaire.get("item") or []))
    while stack:
        item = stack.pop()
        yield item
        stack.extend(reversed(item.get("item") or []))


def questionnaire_items_by_link_id(questionnaire: Json) -> dict[str, Json]:
    """Return the Questionnaire items keyed by linkId."""
    return {item["linkId"]: item for item in iter_questionnaire_items(questionnaire) if "linkId" in item}


def iter_response_items(node: Json) -> Iterator[Json]:
    """Yield every item below a QuestionnaireResponse (or one of its items), depth first.

    Items nested under an answer (``item.answer.item``) are included.
    """
    stack = list(reversed(_children(node)))
    while stack:
        item = stack.pop()
        yield item
        stack.extend(reversed(_children(item)))


def _children(node: Json) -> list[Json]:
    children = list(node.get("item") or [])
    for answer in node.get("answer") or []:
        children.extend(answer.get("item") or [])
    return children


def answers_by_link_id(response: Json) -> dict[str, list[Json]]:
    """Return every answer element of a response, grouped by the linkId of its item."""
    found: dict[str, list[Json]] = {}
    for item in iter_response_items(response):
        answers = item.get("answer") or []
        if answers:
            found.setdefault(item.get("linkId", ""), []).extend(answers)
    return found


def answer_value(answer: Json) -> tuple[str, Any] | None:
    """Return ``(type suffix, value)`` of an answer or answerOption's ``value[x]``."""
    for key, value in answer.items():
        if key.startswith("value") and len(key) > 5:
            return key[5:], value
    return None


def canonical(questionnaire: Json) -> str:
    """Return ``url|version`` (or ``url``, or ``Questionnaire/<id>``) of a Questionnaire."""
    url = questionnaire.get("url")
    if not url:
        return f"Questionnaire/{questionnaire.get('id', '')}"
    version = questionnaire.get("version")
    return f"{url}|{version}" if version else url
