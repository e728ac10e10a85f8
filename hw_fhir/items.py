"""The one walker over Questionnaire and QuestionnaireResponse item trees.

Every module that visits items (validation, rendering, scoring views, the item
editor, translation, the library's checks) walks them here, so "depth first, in
the order the patient meets them" means the same thing everywhere. The walkers
are tolerant: a value that is not a list, or an entry that is not an object, is
skipped (validators report such content; walkers never raise on it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["walk_items", "walk_item_paths"]


def walk_items(items: Any, *, answers: bool = False) -> Iterator[dict[str, Any]]:
    """Yield every item, depth first, in the order the patient meets them.

    With ``answers=True`` the items nested under a response item's answers
    (``item.answer[].item``) are visited too, after the item's own children.
    """
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        yield item
        yield from walk_items(item.get("item"), answers=answers)
        if answers:
            for answer in item.get("answer") if isinstance(item.get("answer"), list) else ():
                if isinstance(answer, dict):
                    yield from walk_items(answer.get("item"), answers=True)


def walk_item_paths(items: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(path, item)`` for every item, depth first; ``path`` is like ``.item[0].item[2]``.

    The path is relative to ``path`` (pass ``"Questionnaire"`` to get
    ``Questionnaire.item[0]...``), for messages that point at one item.
    """
    for n, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict):
            continue
        here = f"{path}.item[{n}]"
        yield here, item
        yield from walk_item_paths(item.get("item"), here)
