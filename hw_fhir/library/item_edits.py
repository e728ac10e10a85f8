"""Pure editing helpers: change one item of a Questionnaire dict, returning a changed copy.

:func:`find_item`, :func:`replace_item`, :func:`add_item`, :func:`remove_item` and
:func:`set_answer_options` find an item by linkId at any depth; the result is stored
with :func:`hw_fhir.library.edit_draft`, which checks it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import InvalidInput, NotFound

__all__ = ["find_item", "replace_item", "add_item", "remove_item", "set_answer_options"]


def _items_with_parent(items: list[dict[str, Any]]) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Yield ``(siblings, index)`` of every item, depth first, so it can be changed in place."""
    for n, item in enumerate(items):
        yield items, n
        if isinstance(item.get("item"), list):
            yield from _items_with_parent(item["item"])


def _locate(questionnaire: dict[str, Any], link_id: str) -> tuple[list[dict[str, Any]], int]:
    for siblings, n in _items_with_parent(questionnaire.get("item") or []):
        if siblings[n].get("linkId") == link_id:
            return siblings, n
    raise NotFound(f"The Questionnaire has no item {link_id!r}")


def find_item(questionnaire: Mapping[str, Any], link_id: str) -> dict[str, Any]:
    """Return (a copy of) the item with this linkId, at any depth; NotFound."""
    siblings, n = _locate(copy.deepcopy(dict(questionnaire)), link_id)
    return siblings[n]


def replace_item(questionnaire: Mapping[str, Any], link_id: str, **changes: Any) -> dict[str, Any]:
    """Return a copy with the item's elements changed (a value of None removes the element)."""
    edited = copy.deepcopy(dict(questionnaire))
    siblings, n = _locate(edited, link_id)
    item = dict(siblings[n])
    for key, value in changes.items():
        if value is None:
            item.pop(key, None)
        else:
            item[key] = copy.deepcopy(value)
    siblings[n] = item
    return edited


def add_item(
    questionnaire: Mapping[str, Any],
    item: Mapping[str, Any],
    *,
    parent: str | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """Return a copy with ``item`` added under ``parent`` (top level when None), after ``after``."""
    edited = copy.deepcopy(dict(questionnaire))
    if parent is None:
        siblings = edited.setdefault("item", [])
    else:
        holder_list, n = _locate(edited, parent)
        siblings = holder_list[n].setdefault("item", [])
    position = len(siblings)
    if after is not None:
        matches = [k for k, sibling in enumerate(siblings) if sibling.get("linkId") == after]
        if not matches:
            raise NotFound(f"No item {after!r} at that level to add after")
        position = matches[0] + 1
    siblings.insert(position, copy.deepcopy(dict(item)))
    return edited


def remove_item(questionnaire: Mapping[str, Any], link_id: str) -> dict[str, Any]:
    """Return a copy without the item (and its children)."""
    edited = copy.deepcopy(dict(questionnaire))
    siblings, n = _locate(edited, link_id)
    del siblings[n]
    return edited


def set_answer_options(
    questionnaire: Mapping[str, Any],
    link_id: str,
    options: Sequence[Any],
    *,
    system: str | None = None,
) -> dict[str, Any]:
    """Return a copy whose item offers these options.

    An option is an ``answerOption`` dict, a ``(code, display)`` pair (a Coding in
    ``system``) or a plain string/integer value.
    """
    built = []
    for option in options:
        if isinstance(option, Mapping):
            built.append(dict(option))
        elif isinstance(option, tuple) and len(option) == 2:
            coding = {"code": str(option[0]), "display": str(option[1])}
            if system:
                coding = {"system": system, **coding}
            built.append({"valueCoding": coding})
        elif isinstance(option, bool):
            raise InvalidInput("A boolean cannot be an answer option; use a boolean item")
        elif isinstance(option, int):
            built.append({"valueInteger": option})
        elif isinstance(option, str):
            built.append({"valueString": option})
        else:
            raise InvalidInput(f"{option!r} is not an answer option")
    return replace_item(questionnaire, link_id, answerOption=built, answerValueSet=None)
