"""The simple item editor of a clinician's own draft activity.

:func:`editor_rows` gives the items as the editor form shows them (text, type,
required, help text, answer options); :func:`apply_item_editor` applies the submitted
form (edit, add, move, remove) to a copy of the draft. The result is checked and stored
by :func:`hw_fhir.library.edit_draft`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput, Issue
from ..items import walk_items
from .answers import ITEM_CONTROL_EXTENSION, answer_text, help_text, is_calculated, is_help

__all__ = ["EDITABLE_TYPES", "EditorRow", "editor_rows", "apply_item_editor"]

#: Item types the editor offers, with their labels.
EDITABLE_TYPES: Mapping[str, str] = {
    "string": "Short text",
    "text": "Long text",
    "integer": "Whole number",
    "decimal": "Number",
    "boolean": "Yes / no",
    "choice": "Choose from a list",
    "open-choice": "List or own words",
    "date": "Date",
    "time": "Time",
    "dateTime": "Date and time",
    "display": "Text to read",
    "group": "Section",
}
_CHOICE = ("choice", "open-choice")
_HELP_CONTROL = {
    "url": ITEM_CONTROL_EXTENSION,
    "valueCodeableConcept": {
        "coding": [
            {
                "system": "http://hl7.org/fhir/questionnaire-item-control",
                "code": "help",
                "display": "Help-Button",
            }
        ]
    },
}


@dataclass(frozen=True)
class EditorRow:
    """One item in the editor: its fields as the form shows them."""

    link_id: str
    text: str
    type: str
    depth: int
    required: bool
    help: str
    options: str
    calculated: bool
    first: bool
    last: bool


def editor_rows(questionnaire: Mapping[str, Any]) -> list[EditorRow]:
    """Return the editable items in order (help texts are part of their item)."""
    rows: list[EditorRow] = []

    def walk(items: list[dict[str, Any]], depth: int) -> None:
        visible = [i for i in items if not is_help(i)]
        for n, item in enumerate(visible):
            rows.append(
                EditorRow(
                    link_id=str(item.get("linkId")),
                    text=str(item.get("text") or ""),
                    type=str(item.get("type")),
                    depth=depth,
                    required=bool(item.get("required")),
                    help=help_text(item),
                    options="\n".join(answer_text(o) for o in item.get("answerOption") or []),
                    calculated=is_calculated(item),
                    first=n == 0,
                    last=n == len(visible) - 1,
                )
            )
            walk(item.get("item") or [], depth + 1)

    walk(list(questionnaire.get("item") or []), 0)
    return rows


def _first(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else str(value)


def _siblings(items: list[dict[str, Any]], link_id: str) -> tuple[list[dict[str, Any]], int] | None:
    for n, item in enumerate(items):
        if item.get("linkId") == link_id:
            return items, n
        found = _siblings(item.get("item") or [], link_id)
        if found:
            return found
    return None


def _options(
    lines: str, current: list[dict[str, Any]], link_id: str, item_type: str
) -> list[dict[str, Any]]:
    """Turn one option per line into answerOptions; kept labels keep their codes and weights."""
    labels = [line.strip() for line in lines.splitlines() if line.strip()]
    by_label = {answer_text(o): o for o in current}
    system = next(
        (
            o["valueCoding"].get("system")
            for o in current
            if isinstance(o.get("valueCoding"), dict) and o["valueCoding"].get("system")
        ),
        None,
    )
    coded = any("valueCoding" in o for o in current) or not current
    used = {str((o.get("valueCoding") or {}).get("code")) for o in current}
    out = []
    for label in labels:
        if label in by_label:
            out.append(by_label[label])
            continue
        if not coded:
            out.append({"valueString": label})
            continue
        base = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40] or "option"
        code, n = base, 1
        while code in used:
            n += 1
            code = f"{base}-{n}"
        used.add(code)
        coding = {"code": code, "display": label}
        if system:
            coding = {"system": system, **coding}
        out.append({"valueCoding": coding})
    return out


def _set_help(item: dict[str, Any], text: str, link_id: str) -> None:
    children = [c for c in item.get("item") or [] if not is_help(c)]
    if text.strip():
        children.insert(
            0,
            {
                "linkId": f"{link_id}-help",
                "text": text.strip(),
                "type": "display",
                "extension": [_HELP_CONTROL],
            },
        )
    if children:
        item["item"] = children
    else:
        item.pop("item", None)


def _edit_item(item: dict[str, Any], form: Mapping[str, Any]) -> None:
    link_id = str(item.get("linkId"))
    if is_calculated(item):
        return
    text = _first(form, f"text.{link_id}")
    if text is not None:
        if text.strip():
            item["text"] = text.strip()
        else:
            item.pop("text", None)
    new_type = _first(form, f"type.{link_id}")
    if new_type is not None and new_type != item.get("type"):
        if new_type not in EDITABLE_TYPES:
            raise InvalidInput(f"{new_type!r} is not an item type the editor offers")
        if (new_type == "group") != (item.get("type") == "group"):
            raise InvalidInput(
                f"Item {text or link_id!r} cannot change between a section and a question"
            )
        item["type"] = new_type
    kind = item.get("type")
    if f"type.{link_id}" in form and kind not in ("display", "group"):
        if _first(form, f"required.{link_id}"):
            item["required"] = True
        else:
            item.pop("required", None)
    if kind not in _CHOICE:
        item.pop("answerOption", None)
    options = _first(form, f"options.{link_id}")
    if kind in _CHOICE and options is not None:
        item["answerOption"] = _options(
            options, list(item.get("answerOption") or []), link_id, str(kind)
        )
        if not item["answerOption"]:
            item.pop("answerOption")
        item.pop("answerValueSet", None) if item.get("answerOption") else None
    help_text = _first(form, f"help.{link_id}")
    if help_text is not None and kind != "display":
        _set_help(item, help_text, link_id)


def _walk_edit(items: list[dict[str, Any]], form: Mapping[str, Any]) -> None:
    for item in items:
        if is_help(item):
            continue
        _edit_item(item, form)
        _walk_edit(item.get("item") or [], form)


def _new_link_id(questionnaire: Mapping[str, Any], text: str) -> str:
    taken = {str(i.get("linkId")) for i in walk_items(questionnaire.get("item"))}
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:32] or "item"
    link_id, n = base, 1
    while link_id in taken or f"{link_id}-help" in taken:
        n += 1
        link_id = f"{base}-{n}"
    return link_id


def apply_item_editor(questionnaire: Mapping[str, Any], form: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of a draft Questionnaire with the editor form applied.

    ``form`` maps field names to values (or lists of values): ``title``, ``description``;
    per item ``text.<linkId>``, ``type.<linkId>``, ``required.<linkId>``,
    ``help.<linkId>``, ``options.<linkId>`` (one option per line; an option keeps its
    code and weight while its label is unchanged); new item ``new_text``, ``new_type``,
    ``new_options``, ``new_required``, ``new_help``, ``new_parent``; and ``action``:
    ``save``, ``add``, ``up:<linkId>``, ``down:<linkId>`` or ``remove:<linkId>``.
    The result is not checked here: :func:`hw_fhir.library.edit_draft` checks it.
    Raise InvalidInput for a form that cannot be applied (unknown type, unknown item).
    """
    edited = copy.deepcopy(dict(questionnaire))
    for name in ("title", "description"):
        value = _first(form, name)
        if value is not None:
            if value.strip():
                edited[name] = value.strip()
            else:
                edited.pop(name, None)
    _walk_edit(edited.get("item") or [], form)
    action = _first(form, "action") or "save"
    verb, _, link_id = action.partition(":")
    if verb in ("up", "down", "remove"):
        found = _siblings(edited.get("item") or [], link_id)
        if found is None:
            raise InvalidInput(f"The activity has no item {link_id!r}")
        siblings, n = found
        if verb == "remove":
            del siblings[n]
        else:
            target = n - 1 if verb == "up" else n + 1
            while 0 <= target < len(siblings) and is_help(siblings[target]):
                target += -1 if verb == "up" else 1
            if 0 <= target < len(siblings):
                siblings[n], siblings[target] = siblings[target], siblings[n]
    elif verb == "add" or (verb == "save" and (_first(form, "new_text") or "").strip()):
        text = (_first(form, "new_text") or "").strip()
        kind = _first(form, "new_type") or "string"
        if not text:
            raise InvalidInput(
                "Write the new item's question or text first",
                issues=[
                    Issue("Write the new item's question or text first", expression="new_text")
                ],
            )
        if kind not in EDITABLE_TYPES or kind == "group":
            raise InvalidInput(f"{kind!r} is not an item type the editor offers")
        item: dict[str, Any] = {"linkId": _new_link_id(edited, text), "text": text, "type": kind}
        if _first(form, "new_required") and kind not in ("display", "group"):
            item["required"] = True
        if kind in _CHOICE:
            options = _options(_first(form, "new_options") or "", [], item["linkId"], kind)
            if options:
                item["answerOption"] = options
        if kind != "display":
            _set_help(item, _first(form, "new_help") or "", item["linkId"])
        parent = (_first(form, "new_parent") or "").strip()
        if parent:
            found = _siblings(edited.get("item") or [], parent)
            if found is None or found[0][found[1]].get("type") != "group":
                raise InvalidInput(f"There is no section {parent!r} to add the item to")
            found[0][found[1]].setdefault("item", []).append(item)
        else:
            edited.setdefault("item", []).append(item)
    elif verb != "save":
        raise InvalidInput(f"Unknown editor action {action!r}")
    return edited
