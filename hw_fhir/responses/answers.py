"""Read answer values out of a QuestionnaireResponse, without its Questionnaire."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .definitions import as_list

__all__ = ["flatten_answers"]


def flatten_answers(response: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Return every answer value by linkId, in document order, from anywhere in the response."""
    answers: dict[str, list[Any]] = {}

    def walk(items: Any) -> None:
        for item in as_list(items):
            if not isinstance(item, dict):
                continue
            link_id = item.get("linkId")
            for answer in as_list(item.get("answer")):
                if not isinstance(answer, dict):
                    continue
                for key, value in answer.items():
                    if key.startswith("value") and isinstance(link_id, str):
                        answers.setdefault(link_id, []).append(value)
                walk(answer.get("item"))
            walk(item.get("item"))

    walk(response.get("item"))
    return answers
