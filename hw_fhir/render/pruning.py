"""enableWhen on the server: drop answers to items that enableWhen switched off."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..responses.definitions import as_list
from ..responses.form import ResponseForm

__all__ = ["prune_disabled"]


def prune_disabled(questionnaire: Mapping[str, Any], response: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of the response without answers to items enableWhen switched off.

    Group instances and questions left with nothing inside are dropped too, so what the
    browser hid (or what a person without JavaScript filled in anyway) is never stored.
    """
    form = ResponseForm(questionnaire, response)
    drop: set[int] = set()

    def walk(node: Any) -> None:
        for child in node.items:
            if child.definition is not None and not form.item_enabled(child):
                drop.add(id(child.data))
                continue
            walk(child)
        for answer in node.answers:
            walk(answer)

    walk(form.root)

    def clean(items: Any) -> list[dict[str, Any]]:
        out = []
        for item in as_list(items):
            if not isinstance(item, dict) or id(item) in drop:
                continue
            kept = {k: v for k, v in item.items() if k not in ("item", "answer")}
            inner = clean(item.get("item"))
            if inner:
                kept["item"] = inner
            answers = []
            for answer in as_list(item.get("answer")):
                if not isinstance(answer, dict):
                    continue
                copied = {k: copy.deepcopy(v) for k, v in answer.items() if k != "item"}
                nested = clean(answer.get("item"))
                if nested:
                    copied["item"] = nested
                answers.append(copied)
            if answers:
                kept["answer"] = answers
            if "item" in kept or "answer" in kept:
                out.append(kept)
        return out

    result = {k: copy.deepcopy(v) for k, v in response.items() if k != "item"}
    items = clean(response.get("item"))
    if items:
        result["item"] = items
    return result
