"""The activity editor's item settings beyond text and type: what the patient renderer supports.

:func:`item_settings` reads them for the editor form; :func:`apply_item_settings` writes the
form back into a draft Questionnaire (the result is checked and stored by
:func:`hw_fhir.library.edit_draft`, which refuses a Questionnaire that would not work).
Per item (``<id>`` is its linkId), only for items whose ``settings.<id>`` marker is in the form:

``min.<id>``, ``max.<id>``
    lowest and highest answer of a number (``minValue``/``maxValue`` extensions).
``slider.<id>``, ``step.<id>``
    show a number as a slider (``itemControl`` slider, ``sliderStepValue``); needs both bounds.
``repeats.<id>``
    a list question where several answers may be picked (``repeats``: check boxes).
``media.<id>``, ``media_type.<id>``
    a picture, audio or video shown with the item (SDC ``itemMedia`` attachment); an
    ``https://`` address or a path on this server.
``when_q.<id>``, ``when_op.<id>``, ``when_a.<id>``
    branching: show the item only when an earlier question's answer meets the condition
    (one ``enableWhen``; an empty question removes it). Items with several conditions keep
    them (the form shows them, read-only).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import InvalidInput, Issue
from .items import walk_items
from .render import ITEM_CONTROL, ITEM_MEDIA, MAX_VALUE, MIN_VALUE, SLIDER_STEP
from .review.answers import answer_text

__all__ = [
    "OPERATORS",
    "MEDIA_TYPES",
    "ItemSettings",
    "item_settings",
    "apply_item_settings",
]

#: enableWhen operators, as the editor names them.
OPERATORS: Mapping[str, str] = {
    "=": "is",
    "!=": "is not",
    ">": "is more than",
    "<": "is less than",
    ">=": "is at least",
    "<=": "is at most",
    "exists": "is answered",
}
#: Media the patient pages can show, by content type.
MEDIA_TYPES: Mapping[str, str] = {
    "image/png": "Picture (PNG)",
    "image/jpeg": "Picture (JPEG)",
    "image/svg+xml": "Picture (SVG)",
    "audio/mpeg": "Audio (MP3)",
    "video/mp4": "Video (MP4)",
}
_NUMBERS = ("integer", "decimal")
_CHOICES = ("choice", "open-choice")
_ANSWERABLE = (*_NUMBERS, *_CHOICES, "boolean", "string", "text", "date", "time", "dateTime")
_CONTROL_SYSTEM = "http://hl7.org/fhir/questionnaire-item-control"
_MEDIA_URL = re.compile(r"^(https://[^\s\"'<>]+|/(?!/)[^\s\"'<>]*)$")
_YES = {"yes", "true", "y", "1"}
_NO = {"no", "false", "n", "0"}


@dataclass(frozen=True)
class ItemSettings:
    """One item's extra settings as the editor form shows them (strings, as typed)."""

    min: str = ""
    max: str = ""
    slider: bool = False
    step: str = ""
    repeats: bool = False
    media_url: str = ""
    media_type: str = ""
    when_q: str = ""
    when_op: str = "="
    when_a: str = ""
    conditions: int = 0  # enableWhen conditions stored (more than one: shown read-only)
    earlier: tuple[tuple[str, str], ...] = ()  # questions before it: (linkId, text)


def _is_help(item: Mapping[str, Any]) -> bool:
    return item.get("type") == "display" and _control(item) in ("help", "flyover")


def _control(item: Mapping[str, Any]) -> str | None:
    for ext in item.get("extension") or []:
        if ext.get("url") == ITEM_CONTROL:
            for coding in (ext.get("valueCodeableConcept") or {}).get("coding") or []:
                return str(coding.get("code"))
    return None


def _ext(item: Mapping[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in item.get("extension") or [] if e.get("url") == url), None)


def _number_text(ext: Mapping[str, Any] | None) -> str:
    if not ext:
        return ""
    for key in ("valueInteger", "valueDecimal"):
        if isinstance(ext.get(key), (int, float)):
            return f"{ext[key]:g}"
    return ""


def _answer_text(condition: Mapping[str, Any]) -> str:
    if "answerBoolean" in condition and condition.get("operator") == "exists":
        return ""
    return answer_text({k.replace("answer", "value", 1): v for k, v in condition.items()
                        if k.startswith("answer")})


def item_settings(
    questionnaire: Mapping[str, Any], typed: Mapping[str, Any] | None = None
) -> dict[str, ItemSettings]:
    """Return each item's settings (by linkId) for the editor form.

    ``typed`` is a refused form: what was typed is shown again rather than what is stored.
    """
    out: dict[str, ItemSettings] = {}
    earlier: list[tuple[str, str]] = []
    for item in walk_items(list(questionnaire.get("item") or [])):
        if _is_help(item):
            continue
        link_id = str(item.get("linkId"))
        conditions = [c for c in item.get("enableWhen") or [] if isinstance(c, dict)]
        first = conditions[0] if conditions else {}
        media = (_ext(item, ITEM_MEDIA) or {}).get("valueAttachment") or {}
        out[link_id] = ItemSettings(
            min=_number_text(_ext(item, MIN_VALUE)),
            max=_number_text(_ext(item, MAX_VALUE)),
            slider=_control(item) == "slider",
            step=_number_text(_ext(item, SLIDER_STEP)),
            repeats=bool(item.get("repeats")),
            media_url=str(media.get("url") or ""),
            media_type=str(media.get("contentType") or ""),
            when_q=str(first.get("question") or ""),
            when_op=str(first.get("operator") or "="),
            when_a=_answer_text(first),
            conditions=len(conditions),
            earlier=tuple(earlier),
        )
        if typed and _first(typed, f"settings.{link_id}"):
            out[link_id] = _as_typed(out[link_id], typed, link_id)
        if item.get("type") in _ANSWERABLE:
            earlier.append((link_id, str(item.get("text") or link_id)))
    return out


def _as_typed(stored: ItemSettings, typed: Mapping[str, Any], lid: str) -> ItemSettings:
    def text(name: str, default: str) -> str:
        return _first(typed, f"{name}.{lid}") if f"{name}.{lid}" in typed else default

    return replace(
        stored,
        min=text("min", stored.min),
        max=text("max", stored.max),
        slider=bool(_first(typed, f"slider.{lid}")),
        step=text("step", stored.step),
        repeats=bool(_first(typed, f"repeats.{lid}")),
        media_url=text("media", stored.media_url),
        media_type=text("media_type", stored.media_type),
        when_q=text("when_q", stored.when_q),
        when_op=text("when_op", stored.when_op),
        when_a=text("when_a", stored.when_a),
    )


def _first(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return "" if value is None else str(value).strip()


def _refuse(message: str, field: str) -> InvalidInput:
    return InvalidInput(message, issues=[Issue(message, expression=field)])


def _number(text: str, kind: str, field: str, label: str) -> int | float | None:
    if not text:
        return None
    try:
        value: int | float = int(text) if kind == "integer" else float(text)
    except ValueError:
        whole = "a whole number" if kind == "integer" else "a number"
        raise _refuse(f"{label} must be {whole}, not {text!r}", field) from None
    return value


def _without(item: dict[str, Any], *urls: str) -> None:
    kept = [e for e in item.get("extension") or [] if e.get("url") not in urls]
    if kept:
        item["extension"] = kept
    else:
        item.pop("extension", None)


def _add(item: dict[str, Any], ext: dict[str, Any]) -> None:
    item.setdefault("extension", []).append(ext)


def _apply_numbers(item: dict[str, Any], form: Mapping[str, Any], lid: str, name: str) -> None:
    kind = str(item.get("type"))
    slider_control = _control(item) == "slider"
    _without(item, MIN_VALUE, MAX_VALUE, SLIDER_STEP)
    if slider_control:
        _without(item, ITEM_CONTROL)
    if kind not in _NUMBERS:
        return
    value_key = "valueInteger" if kind == "integer" else "valueDecimal"
    low = _number(_first(form, f"min.{lid}"), kind, f"min.{lid}", f"The lowest answer of {name!r}")
    high = _number(_first(form, f"max.{lid}"), kind, f"max.{lid}",
                   f"The highest answer of {name!r}")
    if low is not None and high is not None and low >= high:
        raise _refuse(f"The lowest answer of {name!r} must be below the highest", f"min.{lid}")
    if low is not None:
        _add(item, {"url": MIN_VALUE, value_key: low})
    if high is not None:
        _add(item, {"url": MAX_VALUE, value_key: high})
    if not _first(form, f"slider.{lid}"):
        return
    if low is None or high is None:
        raise _refuse(f"A slider needs a lowest and a highest answer ({name!r})", f"slider.{lid}")
    step = _number(_first(form, f"step.{lid}") or "1", kind, f"step.{lid}", f"The step of {name!r}")
    if step is None or step <= 0 or step > high - low:
        raise _refuse(f"The slider step of {name!r} must be above 0 and at most "
                      f"{high - low:g}", f"step.{lid}")
    _add(item, {"url": ITEM_CONTROL, "valueCodeableConcept": {
        "coding": [{"system": _CONTROL_SYSTEM, "code": "slider", "display": "Slider"}]}})
    _add(item, {"url": SLIDER_STEP, "valueInteger" if kind == "integer" else "valueDecimal": step})


def _apply_media(item: dict[str, Any], form: Mapping[str, Any], lid: str, name: str) -> None:
    url = _first(form, f"media.{lid}")
    _without(item, ITEM_MEDIA)
    if not url:
        return
    if not _MEDIA_URL.match(url):
        raise _refuse(f"The media of {name!r} must be an https:// address or a path on this "
                      "server (starting with /)", f"media.{lid}")
    content_type = _first(form, f"media_type.{lid}")
    if content_type not in MEDIA_TYPES:
        raise _refuse(f"Choose what kind of media {url!r} is", f"media_type.{lid}")
    _add(item, {"url": ITEM_MEDIA, "valueAttachment": {
        "contentType": content_type, "url": url, "title": name[:200]}})


def _condition_answer(target: Mapping[str, Any], operator: str, text: str, field: str
                      ) -> dict[str, Any]:
    kind = str(target.get("type"))
    label = str(target.get("text") or target.get("linkId"))
    if operator == "exists":
        return {"answerBoolean": text.lower() not in _NO}
    if not text:
        raise _refuse(f"Write the answer to {label!r} that shows the item", field)
    if kind in _CHOICES:
        for option in target.get("answerOption") or []:
            coding = option.get("valueCoding")
            if answer_text(option).lower() == text.lower() or (
                isinstance(coding, dict) and str(coding.get("code")) == text):
                if isinstance(coding, dict):
                    return {"answerCoding": coding}
                return {k.replace("value", "answer", 1): v for k, v in option.items()
                        if k.startswith("value")}
        if kind == "open-choice" or not target.get("answerOption"):
            return {"answerString": text}
        choices = ", ".join(answer_text(o) for o in target.get("answerOption") or [])
        raise _refuse(f"{text!r} is not an answer of {label!r} (choose from: {choices})", field)
    if kind == "boolean":
        if text.lower() in _YES | _NO:
            return {"answerBoolean": text.lower() in _YES}
        raise _refuse(f"The answer to {label!r} is yes or no", field)
    if kind in _NUMBERS:
        number = _number(text, kind, field, f"The answer to {label!r}")
        return {"answerInteger" if kind == "integer" else "answerDecimal": number}
    key = {"date": "answerDate", "time": "answerTime", "dateTime": "answerDateTime"}
    return {key.get(kind, "answerString"): text}


def _apply_branching(item: dict[str, Any], form: Mapping[str, Any], lid: str, name: str,
                     earlier: Mapping[str, dict[str, Any]]) -> None:
    if f"when_q.{lid}" not in form or len(item.get("enableWhen") or []) > 1:
        return
    question = _first(form, f"when_q.{lid}")
    if not question:
        item.pop("enableWhen", None)
        item.pop("enableBehavior", None)
        return
    target = earlier.get(question)
    current = (item.get("enableWhen") or [{}])[0]
    if target is None and current.get("question") == question:
        return  # unchanged (its question moved or went: the Questionnaire check decides)
    if target is None:
        raise _refuse(f"{name!r} can only depend on a question before it", f"when_q.{lid}")
    operator = _first(form, f"when_op.{lid}") or "="
    if operator not in OPERATORS:
        raise _refuse(f"Unknown condition {operator!r}", f"when_op.{lid}")
    if operator in (">", "<", ">=", "<=") and target.get("type") not in (*_NUMBERS, "date"):
        raise _refuse(f"{OPERATORS[operator]!r} only works with a number or a date "
                      f"({name!r})", f"when_op.{lid}")
    answer = _condition_answer(target, operator, _first(form, f"when_a.{lid}"), f"when_a.{lid}")
    item["enableWhen"] = [{"question": question, "operator": operator, **answer}]


def apply_item_settings(questionnaire: Mapping[str, Any], form: Mapping[str, Any]
                        ) -> dict[str, Any]:
    """Return a copy of a draft with the settings of the form applied (see the module doc).

    Raise InvalidInput, naming the field, for a setting that cannot be applied.
    """
    edited = copy.deepcopy(dict(questionnaire))
    earlier: dict[str, dict[str, Any]] = {}
    for item in walk_items(list(edited.get("item") or [])):
        if _is_help(item):
            continue
        lid = str(item.get("linkId"))
        name = str(item.get("text") or lid)
        if _first(form, f"settings.{lid}"):
            _apply_numbers(item, form, lid, name)
            if item.get("type") in _CHOICES and _first(form, f"repeats.{lid}"):
                item["repeats"] = True
            elif item.get("type") in _CHOICES:
                item.pop("repeats", None)
            _apply_media(item, form, lid, name)
            _apply_branching(item, form, lid, name, earlier)
        if item.get("type") in _ANSWERABLE:
            earlier[lid] = item
    return edited
