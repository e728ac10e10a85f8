"""Render a Questionnaire for a person: a view model of items, and form fields back to answers.

Nothing here knows about a web framework: :func:`build_form` turns a Questionnaire and
(optionally) a QuestionnaireResponse into :class:`FormView` (items with their widget,
options, current values, errors and enableWhen conditions); :func:`parse_form` turns the
submitted fields (a mapping of name → list of strings, e.g. a werkzeug ``MultiDict``)
back into ``QuestionnaireResponse.item`` plus per-item :class:`~hw_fhir.errors.Issue`\\ s
for what cannot be read (a word where a number was asked...); :func:`prune_disabled`
drops answers that ``enableWhen`` switched off, as the server must do whatever the
browser showed.

Field names
    Every answer field is named ``q:<path>``. A path is the item's ``linkId`` (characters
    other than ``A-Z a-z 0-9 _ -`` percent-encoded), children of a group follow a ``/``
    and an instance of a repeating group carries ``.<n>``: ``q:entry.1/situation``.
    Children of a question (nested under its answer) follow ``/`` too. The free text of
    an ``open-choice`` question is ``q:<path>~other``. Instance numbers may have gaps
    (an instance removed in the browser); instances are kept in number order.

Widgets (``ItemView.widget``)
    ``group``, ``display``, ``string``, ``text`` (textarea), ``integer``, ``decimal``
    (both with ``unit`` from ``questionnaire-unit``), ``slider`` (``itemControl`` slider
    on an integer/decimal with ``minValue``/``maxValue``/``sliderStepValue``: a number
    field the browser upgrades to a slider, so an untouched slider sends nothing),
    ``boolean`` (Yes/No radios), ``radio``, ``select`` (drop-down), ``checkbox``
    (repeating choice), ``date``, ``time``, ``dateTime`` (local date and time, read in
    the person's time zone), ``url``, ``readonly`` (shown, never sent) and
    ``unsupported`` (attachment, reference, quantity: shown as not answerable here).
    A choice is a drop-down with ``itemControl`` ``drop-down`` or more than
    :data:`RADIO_LIMIT` options, radios otherwise; a repeating choice is check boxes.

Items with an SDC ``calculatedExpression`` (scores) are neither shown nor sent: scoring
fills them in. Display text with ``rendering-xhtml`` is sanitised to ``p ol ul li a
strong em b i br`` (links: relative, https, http, tel, mailto); SDC ``itemMedia`` is
returned as :class:`Media` to embed.
"""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, unquote

from .errors import Issue
from .i18n import N_, translator
from .responses import _Form, _label, canonical_of
from .urls import safe_link, safe_media

__all__ = [
    "FIELD_PREFIX",
    "RADIO_LIMIT",
    "Option",
    "Media",
    "Condition",
    "ItemView",
    "Instance",
    "FormError",
    "FormView",
    "ParsedForm",
    "build_form",
    "parse_form",
    "prune_disabled",
    "sanitize_xhtml",
    "item_text",
    "field_id",
]

FIELD_PREFIX = "q:"
OTHER_SUFFIX = "~other"
#: A choice with more options than this is a drop-down unless itemControl says otherwise.
RADIO_LIMIT = 7

_EXT = "http://hl7.org/fhir/StructureDefinition/"
_SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
ITEM_CONTROL = _EXT + "questionnaire-itemControl"
SLIDER_STEP = _EXT + "questionnaire-sliderStepValue"
UNIT = _EXT + "questionnaire-unit"
MIN_VALUE = _EXT + "minValue"
MAX_VALUE = _EXT + "maxValue"
RENDERING_XHTML = _EXT + "rendering-xhtml"
ITEM_MEDIA = _SDC + "sdc-questionnaire-itemMedia"
CALCULATED = _SDC + "sdc-questionnaire-calculatedExpression"

_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_INTEGER = re.compile(r"^[+-]?\d+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")
_LOCAL_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)$")
_INT32 = (-(2**31), 2**31 - 1)


# -- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One answer option: the token sent by the form, its label, whether it is chosen."""

    token: str
    label: str
    selected: bool = False


@dataclass(frozen=True)
class Media:
    """An image, audio or video attached to an item (SDC itemMedia)."""

    url: str
    content_type: str
    title: str

    @property
    def kind(self) -> str:
        """``audio``, ``video``, ``image`` or ``link``."""
        major = self.content_type.split("/", 1)[0]
        return major if major in ("audio", "video", "image") else "link"


@dataclass(frozen=True)
class Condition:
    """One enableWhen condition, in the terms the browser evaluates.

    ``kind`` is ``token`` (compare chosen option tokens: choice and boolean questions),
    ``number``, ``text`` (strings, dates and times, compared as text) or ``any`` (the
    browser cannot tell: the item stays visible, the server decides).
    """

    question: str
    operator: str
    kind: str
    value: Any

    def as_json(self) -> dict[str, Any]:
        """Return the condition as the browser script reads it."""
        return {"q": self.question, "op": self.operator, "kind": self.kind, "v": self.value}


@dataclass(frozen=True)
class FormError:
    """A problem to list at the top of the form, linking to its field when there is one."""

    message: str
    field_id: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Instance:
    """One instance of a repeating group: its number (1-based), name and items."""

    number: int
    name: str
    items: tuple["ItemView", ...]
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ItemView:
    """One item to render (see the module doc for ``widget``)."""

    link_id: str
    type: str
    widget: str
    name: str
    id: str
    expression: str
    text: str = ""
    prefix: str = ""
    html: str | None = None
    required: bool = False
    repeats: bool = False
    options: tuple[Option, ...] = ()
    values: tuple[str, ...] = ()
    other: str = ""
    open_choice: bool = False
    minimum: str | None = None
    maximum: str | None = None
    step: str | None = None
    unit: str | None = None
    max_length: int | None = None
    media: Media | None = None
    conditions: tuple[Condition, ...] = ()
    behavior: str = "all"
    condition_text: str = ""
    errors: tuple[str, ...] = ()
    children: tuple["ItemView", ...] = ()
    instances: tuple[Instance, ...] = ()
    template: Instance | None = None
    placeholder: str = ""
    depth: int = 0
    enabled: bool = True

    @property
    def input_name(self) -> str:
        """The form field name of this item's answers."""
        return FIELD_PREFIX + self.name

    @property
    def other_name(self) -> str:
        """The form field name of an open-choice question's free text."""
        return FIELD_PREFIX + self.name + OTHER_SUFFIX

    @property
    def value(self) -> str:
        """The first value (single-answer inputs)."""
        return self.values[0] if self.values else ""

    @property
    def conditions_json(self) -> list[dict[str, Any]]:
        """The enableWhen conditions for the browser script."""
        return [c.as_json() for c in self.conditions]

    @property
    def described_by(self) -> str:
        """Ids of the hint/error elements describing the input (for aria-describedby)."""
        ids = []
        if self.unit or self.condition_text or self.widget == "slider":
            ids.append(f"{self.id}-hint")
        if self.errors:
            ids.append(f"{self.id}-error")
        return " ".join(ids)


@dataclass(frozen=True)
class FormView:
    """A whole Questionnaire ready to render: its items and the problems to list on top."""

    title: str
    description: str
    items: tuple[ItemView, ...]
    errors: tuple[FormError, ...] = ()

    @property
    def has_errors(self) -> bool:
        """Whether any problem is shown."""
        return bool(self.errors)


@dataclass(frozen=True)
class ParsedForm:
    """Submitted fields read back: response items, unreadable fields, and the raw values."""

    items: list[dict[str, Any]]
    issues: tuple[Issue, ...] = ()
    raw: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def response(self, questionnaire: Mapping[str, Any]) -> dict[str, Any]:
        """Return a QuestionnaireResponse skeleton (questionnaire + items) for the domain."""
        out: dict[str, Any] = {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": canonical_of(questionnaire),
        }
        if self.items:
            out["item"] = copy.deepcopy(self.items)
        return out


# -- small helpers --------------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _segment(link_id: str) -> str:
    return quote(link_id, safe="").replace(".", "%2E").replace("~", "%7E")


def _join(prefix: str, link_id: str) -> str:
    return f"{prefix}/{_segment(link_id)}" if prefix else _segment(link_id)


def field_id(name: str) -> str:
    """Return an HTML id for a field path (stable, letters, digits, ``-`` and ``_``)."""
    return "f-" + _SAFE.sub("-", unquote(name).replace("/", "--"))


def _quote_link(link_id: str) -> str:
    return "'" + link_id.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ext(definition: Mapping[str, Any], url: str) -> Any:
    for ext in _list(definition.get("extension")):
        if isinstance(ext, dict) and ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def _control(definition: Mapping[str, Any]) -> str | None:
    concept = _ext(definition, ITEM_CONTROL)
    for coding in _list((concept or {}).get("coding")):
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return None


def _typed(element: Mapping[str, Any], prefix: str) -> tuple[str, Any] | None:
    for key, value in element.items():
        if key.startswith(prefix) and key != prefix and key[len(prefix) :][:1].isupper():
            return key[len(prefix) :], value
    return None


def _number_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def item_text(definition: Mapping[str, Any]) -> str:
    """Return an item's text with its prefix, on one line."""
    text = " ".join(str(definition.get("text") or "").split())
    prefix = str(definition.get("prefix") or "").strip()
    return f"{prefix} {text}".strip() if prefix else text


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _is_calculated(definition: Mapping[str, Any]) -> bool:
    return _ext(definition, CALCULATED) is not None


# -- options --------------------------------------------------------------------------------------


def _options(
    definition: Mapping[str, Any], questionnaire: Mapping[str, Any]
) -> list[tuple[str, Any, str]]:
    """Return (value key, value, label) for each option of a choice item."""
    out: list[tuple[str, Any, str]] = []
    for option in _list(definition.get("answerOption")):
        typed = _typed(option, "value") if isinstance(option, dict) else None
        if typed is None:
            continue
        kind, value = typed
        out.append((kind, value, _option_label(kind, value)))
    vs = definition.get("answerValueSet")
    if isinstance(vs, str) and vs.startswith("#"):
        for resource in _list(questionnaire.get("contained")):
            if isinstance(resource, dict) and resource.get("id") == vs[1:]:
                out.extend(
                    ("Coding", c, _option_label("Coding", c)) for c in _value_set_codings(resource)
                )
    return out


def _value_set_codings(value_set: Mapping[str, Any]) -> list[dict[str, Any]]:
    expansion = (value_set.get("expansion") or {}).get("contains")
    if isinstance(expansion, list):
        return [
            {k: c[k] for k in ("system", "code", "display") if k in c}
            for c in expansion
            if isinstance(c, dict) and c.get("code")
        ]
    out = []
    for include in _list((value_set.get("compose") or {}).get("include")):
        for concept in _list(include.get("concept")):
            if isinstance(concept, dict) and concept.get("code"):
                coding = {"system": include.get("system"), "code": concept["code"]}
                if concept.get("display"):
                    coding["display"] = concept["display"]
                out.append({k: v for k, v in coding.items() if v})
    return out


def _option_label(kind: str, value: Any) -> str:
    if kind == "Coding" and isinstance(value, dict):
        return str(value.get("display") or value.get("code") or "")
    if kind == "Reference" and isinstance(value, dict):
        return str(value.get("display") or value.get("reference") or "")
    return str(value)


def _same(kind: str, a: Any, b: Any) -> bool:
    if kind == "Coding":
        if not isinstance(a, dict) or not isinstance(b, dict):
            return False
        if a.get("code") != b.get("code"):
            return False
        return not (a.get("system") and b.get("system")) or bool(a.get("system") == b.get("system"))
    return bool(a == b)


def _option_token(options: list[tuple[str, Any, str]], kind: str, value: Any) -> str | None:
    for index, (okind, ovalue, _) in enumerate(options):
        if okind == kind and _same(kind, ovalue, value):
            return str(index)
    return None


# -- xhtml ----------------------------------------------------------------------------------------


_ALLOWED_TAGS = frozenset({"p", "ol", "ul", "li", "a", "strong", "em", "b", "i", "br"})
_DROP_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "template", "svg", "math"}
)


class _Sanitizer(HTMLParser):
    """Rebuild markup from allowed tags and escaped text only."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT:
            self.dropping += 1
            return
        if self.dropping or tag not in _ALLOWED_TAGS:
            return
        if tag == "br":
            self.out.append("<br>")
            return
        if tag == "a":
            href = safe_link(next((v for k, v in attrs if k == "href" and v), "").strip())
            if href is None:
                self.out.append("<a>")
            else:
                extra = (
                    ' target="_blank" rel="noopener noreferrer"'
                    if not href.lower().startswith(("tel:", "mailto:", "#"))
                    else ""
                )
                self.out.append(f'<a href="{html.escape(href, quote=True)}"{extra}>')
        else:
            self.out.append(f"<{tag}>")
        self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and not self.dropping:
            self.out.append("<br>")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT:
            self.dropping = max(0, self.dropping - 1)
            return
        if self.dropping or tag not in self.open:
            return
        while self.open:
            current = self.open.pop()
            self.out.append(f"</{current}>")
            if current == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        while self.open:
            self.out.append(f"</{self.open.pop()}>")
        return "".join(self.out).strip()


def sanitize_xhtml(markup: str) -> str:
    """Return markup reduced to safe formatting tags and links; everything else is text."""
    parser = _Sanitizer()
    parser.feed(markup if isinstance(markup, str) else "")
    parser.close()
    return parser.result()


def _xhtml(definition: Mapping[str, Any]) -> str | None:
    text_element = definition.get("_text")
    if not isinstance(text_element, dict):
        return None
    markup = _ext(text_element, RENDERING_XHTML)
    if not isinstance(markup, str) or not markup.strip():
        return None
    return sanitize_xhtml(markup) or None


def _media(definition: Mapping[str, Any]) -> Media | None:
    attachment = _ext(definition, ITEM_MEDIA)
    if not isinstance(attachment, dict):
        return None
    content_type = str(attachment.get("contentType") or "")
    url = safe_media(attachment.get("url"), allow_data_images=content_type.startswith("image/"))
    if url is None or (url.startswith("data:") and not url.lower().startswith(f"data:{content_type.lower()};")):
        return None
    return Media(
        url=url,
        content_type=content_type,
        title=str(attachment.get("title") or definition.get("text") or "Media"),
    )


# -- widgets --------------------------------------------------------------------------------------


def _widget(definition: Mapping[str, Any], options: list[tuple[str, Any, str]]) -> str:
    kind = str(definition.get("type"))
    control = _control(definition)
    if kind in ("group", "display"):
        return kind
    if definition.get("readOnly"):
        return "readonly"
    if kind in ("choice", "open-choice"):
        if definition.get("repeats"):
            return "checkbox"
        if control == "drop-down" or (control != "radio-button" and len(options) > RADIO_LIMIT):
            return "select"
        return "radio"
    if kind in ("integer", "decimal") and control == "slider":
        return "slider"
    if kind in (
        "string",
        "text",
        "integer",
        "decimal",
        "boolean",
        "date",
        "time",
        "dateTime",
        "url",
    ):
        return kind
    return "unsupported"


def _limits(definition: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    low = _number_text(_ext(definition, MIN_VALUE))
    high = _number_text(_ext(definition, MAX_VALUE))
    step = _number_text(_ext(definition, SLIDER_STEP))
    if step is None and definition.get("type") == "integer":
        step = "1"
    return low, high, step


def _unit(definition: Mapping[str, Any]) -> str | None:
    coding = _ext(definition, UNIT)
    if isinstance(coding, dict):
        return str(coding.get("display") or coding.get("code") or "") or None
    return None


# -- enableWhen for the browser -------------------------------------------------------------------


def _conditions(
    definition: Mapping[str, Any],
    index: Mapping[str, Mapping[str, Any]],
    questionnaire: Mapping[str, Any],
    _: Callable[[str], str] = str,
) -> tuple[tuple[Condition, ...], str]:
    out: list[Condition] = []
    phrases: list[str] = []
    for cond in _list(definition.get("enableWhen")):
        if not isinstance(cond, dict):
            continue
        question = str(cond.get("question") or "")
        operator = str(cond.get("operator") or "")
        target = index.get(question) or {}
        expected = _typed(cond, "answer")
        out.append(_condition(question, operator, expected, target, questionnaire))
        phrases.append(_phrase(operator, expected, target, questionnaire, _))
    joiner = _(" or ") if definition.get("enableBehavior") == "any" else _(" and ")
    text = _("Answer this only if %(conditions)s.") % {"conditions": joiner.join(phrases)}
    text = text if phrases else ""
    return tuple(out), text


def _condition(
    question: str,
    operator: str,
    expected: tuple[str, Any] | None,
    target: Mapping[str, Any],
    questionnaire: Mapping[str, Any],
) -> Condition:
    if operator == "exists":
        return Condition(question, operator, "exists", bool(expected and expected[1] is True))
    if expected is None:
        return Condition(question, operator, "any", None)
    kind, value = expected
    qtype = target.get("type")
    if qtype == "boolean" and kind == "Boolean":
        return Condition(question, operator, "token", "true" if value else "false")
    if qtype in ("choice", "open-choice") and operator in ("=", "!="):
        token = _option_token(_options(target, questionnaire), kind, value)
        return Condition(question, operator, "token", token if token is not None else "__none__")
    if qtype in ("integer", "decimal") and kind in ("Integer", "Decimal"):
        return Condition(question, operator, "number", float(value))
    if qtype in ("string", "text", "date", "time", "dateTime", "url") and isinstance(value, str):
        return Condition(question, operator, "text", value)
    return Condition(question, operator, "any", None)


def _phrase(
    operator: str,
    expected: tuple[str, Any] | None,
    target: Mapping[str, Any],
    questionnaire: Mapping[str, Any],
    _: Callable[[str], str] = str,
) -> str:
    label = f"“{_short(item_text(target) or str(target.get('linkId', 'another question')))}”"
    if operator == "exists":
        answered = bool(expected and expected[1] is True)
        said = N_("you answered %(question)s") if answered else N_("you left %(question)s unanswered")
        return _(said) % {"question": label}
    if expected is None:
        return _("your answer to %(question)s fits") % {"question": label}
    kind, value = expected
    if kind == "Boolean":
        shown = _("Yes") if value else _("No")
    else:
        shown = _option_label(kind, value)
    sentences = {
        "=": N_("your answer to %(question)s is %(answer)s"),
        "!=": N_("your answer to %(question)s is not %(answer)s"),
        ">": N_("your answer to %(question)s is more than %(answer)s"),
        "<": N_("your answer to %(question)s is less than %(answer)s"),
        ">=": N_("your answer to %(question)s is at least %(answer)s"),
        "<=": N_("your answer to %(question)s is at most %(answer)s"),
    }
    sentence = sentences.get(operator, "your answer to %(question)s " + operator + " %(answer)s")
    return _(sentence) % {"question": label, "answer": f"“{shown}”"}


# -- building the view ----------------------------------------------------------------------------


@dataclass
class _Builder:
    questionnaire: Mapping[str, Any]
    issues: dict[str, list[str]]
    raw: Mapping[str, Sequence[str]] | None
    add: Collection[str]
    zone: tzinfo
    index: dict[str, Mapping[str, Any]]
    form: _Form | None
    nodes: dict[int, Any]
    summary: list[FormError] = field(default_factory=list)
    gettext: Callable[[str], str] = str

    def items(
        self,
        definitions: list[Any],
        response_items: list[Any],
        prefix: str,
        expression: str,
        depth: int,
        container: Any,
    ) -> tuple[ItemView, ...]:
        by_link: dict[str, list[dict[str, Any]]] = {}
        for item in response_items:
            if isinstance(item, dict) and isinstance(item.get("linkId"), str):
                by_link.setdefault(item["linkId"], []).append(item)
        out = []
        for definition in definitions:
            if not isinstance(definition, dict) or not isinstance(definition.get("linkId"), str):
                continue
            if _is_calculated(definition):
                continue
            found = by_link.get(definition["linkId"], [])
            out.append(self.item(definition, found, prefix, expression, depth, container))
        return tuple(out)

    def item(
        self,
        definition: Mapping[str, Any],
        found: list[dict[str, Any]],
        prefix: str,
        expression: str,
        depth: int,
        container: Any,
    ) -> ItemView:
        link_id = str(definition["linkId"])
        name = _join(prefix, link_id)
        item_expr = f"{expression}.item[linkId={_quote_link(link_id)}]"
        options = (
            _options(definition, self.questionnaire)
            if definition.get("type") in ("choice", "open-choice")
            else []
        )
        widget = _widget(definition, options)
        conditions, condition_text = _conditions(
            definition, self.index, self.questionnaire, self.gettext
        )
        low, high, step = _limits(definition)
        enabled = True
        if self.form is not None and container is not None and conditions:
            enabled = self.form.enabled_at(dict(definition), container)
        base: dict[str, Any] = dict(
            link_id=link_id,
            type=str(definition.get("type")),
            widget=widget,
            name=name,
            id=field_id(name),
            expression=item_expr,
            text=item_text(definition)
            if widget != "display"
            else " ".join(str(definition.get("text") or "").split()),
            prefix=str(definition.get("prefix") or ""),
            html=_xhtml(definition),
            required=bool(definition.get("required")),
            repeats=bool(definition.get("repeats")),
            unit=_unit(definition),
            max_length=definition.get("maxLength")
            if isinstance(definition.get("maxLength"), int)
            else None,
            media=_media(definition),
            conditions=conditions,
            behavior="any" if definition.get("enableBehavior") == "any" else "all",
            condition_text=condition_text,
            minimum=low,
            maximum=high,
            step=step,
            depth=depth,
            open_choice=definition.get("type") == "open-choice",
            enabled=enabled,
        )
        children_defs = [d for d in _list(definition.get("item")) if isinstance(d, dict)]
        if widget == "group" and definition.get("repeats"):
            return self.repeating_group(definition, found, name, item_expr, depth, base)
        if widget == "group":
            instance = found[0] if found else {}
            node = self.nodes.get(id(instance)) if found else None
            errors = self.take(item_expr if len(found) <= 1 else f"{item_expr}[0]", item_expr)
            members = self.items(
                children_defs,
                _list(instance.get("item")),
                name,
                item_expr if len(found) <= 1 else f"{item_expr}[0]",
                depth + 1,
                node if node is not None else container,
            )
            view = ItemView(**base, children=members, errors=errors)
            self.note(view)
            return view
        answers = [a for a in _list(found[0].get("answer")) if isinstance(a, dict)] if found else []
        values, other, chosen = self.values(definition, name, answers, options)
        errors = self.take(item_expr)
        view_options = tuple(
            Option(str(n), label, str(n) in chosen) for n, (_, _, label) in enumerate(options)
        )
        children: tuple[ItemView, ...] = ()
        if children_defs:
            first = answers[0] if answers else {}
            node = self.nodes.get(id(first)) if answers else None
            children = self.items(
                children_defs,
                _list(first.get("item")),
                name,
                f"{item_expr}.answer[0]",
                depth + 1,
                node if node is not None else container,
            )
        if not answers and not (self.raw is not None) and widget not in ("readonly",):
            values, other, view_options = self.initial(
                definition, options, values, other, view_options
            )
        view = ItemView(
            **base,
            options=view_options,
            values=values,
            other=other,
            errors=errors,
            children=children,
        )
        self.note(view)
        return view

    def repeating_group(
        self,
        definition: Mapping[str, Any],
        found: list[dict[str, Any]],
        name: str,
        item_expr: str,
        depth: int,
        base: dict[str, Any],
    ) -> ItemView:
        children_defs = [d for d in _list(definition.get("item")) if isinstance(d, dict)]
        instances = []
        shown = list(found) or [{}]
        extra = sum(1 for a in self.add if a == name)
        shown += [{}] * extra
        for n, instance in enumerate(shown):
            inst_name = f"{name}.{n}"
            inst_expr = item_expr if len(found) <= 1 else f"{item_expr}[{n}]"
            node = self.nodes.get(id(instance)) if instance else None
            errors = self.take(inst_expr) if len(found) > 1 else ()
            items = self.items(
                children_defs, _list(instance.get("item")), inst_name, inst_expr, depth + 1, node
            )
            instances.append(Instance(n + 1, inst_name, items, errors))
        placeholder = f"__i{depth}__"
        template_builder = _Builder(
            self.questionnaire,
            {},
            {} if self.raw is not None else None,
            (),
            self.zone,
            self.index,
            None,
            {},
        )
        template_items = template_builder.items(
            children_defs, [], f"{name}.{placeholder}", item_expr, depth + 1, None
        )
        template = Instance(0, f"{name}.{placeholder}", template_items)
        errors = self.take(item_expr) if len(found) <= 1 else self.take(item_expr)
        view = ItemView(
            **base,
            instances=tuple(instances),
            template=template,
            placeholder=placeholder,
            errors=errors,
        )
        self.note(view)
        return view

    def values(
        self,
        definition: Mapping[str, Any],
        name: str,
        answers: list[dict[str, Any]],
        options: list[tuple[str, Any, str]],
    ) -> tuple[tuple[str, ...], str, set[str]]:
        kind = definition.get("type")
        if self.raw is not None:
            raw = tuple(self.raw.get(name, ()))
            other = next(iter(self.raw.get(name + OTHER_SUFFIX, ())), "")
            return raw, other, set(raw)
        values: list[str] = []
        other = ""
        chosen: set[str] = set()
        for answer in answers:
            typed = _typed(answer, "value")
            if typed is None:
                continue
            vkind, value = typed
            if kind in ("choice", "open-choice"):
                token = _option_token(options, vkind, value)
                if token is not None:
                    chosen.add(token)
                    values.append(token)
                elif vkind in ("String", "Coding"):
                    other = _option_label(vkind, value)
                continue
            values.append(self.show(vkind, value))
        return tuple(values), other, chosen

    def initial(
        self,
        definition: Mapping[str, Any],
        options: list[tuple[str, Any, str]],
        values: tuple[str, ...],
        other: str,
        view_options: tuple[Option, ...],
    ) -> tuple[tuple[str, ...], str, tuple[Option, ...]]:
        chosen = {
            str(n)
            for n, option in enumerate(_list(definition.get("answerOption")))
            if isinstance(option, dict) and option.get("initialSelected")
        }
        initial = [
            t
            for t in (
                _typed(i, "value") for i in _list(definition.get("initial")) if isinstance(i, dict)
            )
            if t is not None
        ]
        if definition.get("type") in ("choice", "open-choice"):
            for kind, value in initial:
                token = _option_token(options, kind, value)
                if token is not None:
                    chosen.add(token)
            if not chosen:
                return values, other, view_options
            return (
                tuple(sorted(chosen)),
                other,
                tuple(Option(o.token, o.label, o.token in chosen) for o in view_options),
            )
        if not initial:
            return values, other, view_options
        return tuple(self.show(k, v) for k, v in initial), other, view_options

    def show(self, kind: str, value: Any) -> str:
        if kind == "Boolean":
            return "true" if value is True else "false" if value is False else ""
        if kind in ("Integer", "Decimal"):
            return _number_text(value) or ""
        if kind == "Time" and isinstance(value, str):
            return value[:5] if value.endswith(":00") else value
        if kind == "DateTime" and isinstance(value, str):
            return _local_datetime(value, self.zone)
        return str(value) if not isinstance(value, dict) else _option_label(kind, value)

    def take(self, *expressions: str) -> tuple[str, ...]:
        out: list[str] = []
        for expression in expressions:
            out.extend(self.issues.pop(expression, []))
        return tuple(dict.fromkeys(out))

    def note(self, view: ItemView) -> None:
        label = _short(view.text or view.link_id, 80)
        for message in view.errors:
            self.summary.append(FormError(message, _target_id(view), label))


def _target_id(view: ItemView) -> str:
    if view.widget in ("radio", "checkbox", "boolean") and (
        view.options or view.widget == "boolean"
    ):
        return f"{view.id}-0"
    if view.widget == "group" and view.instances:
        return f"{view.id}-group"
    return view.id


def _local_datetime(value: str, zone: tzinfo) -> str:
    if "T" not in value:
        return value + "T00:00" if _DATE.match(value) else value
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone)
    return moment.strftime("%Y-%m-%dT%H:%M")


def _friendly(message: str, label: str | None, _: Callable[[str], str] = str) -> str:
    """Turn a validator message into a short, kind message shown next to the item."""
    text = message
    if label and text.startswith(label + ": "):
        text = text[len(label) + 2 :]
    elif text.startswith('"') and '": ' in text:
        text = text.split('": ', 1)[1]
    replacements = {
        "is required": N_("Please answer this question."),
        "needs at least one answered item": N_("Please fill in at least one answer here."),
    }
    if text in replacements:
        return _(replacements[text])
    text = text[:1].upper() + text[1:]
    sentence = text if text.endswith((".", "?", "!")) else text + "."
    return _(sentence)


def _issue_map(
    questionnaire: Mapping[str, Any], issues: Iterable[Issue], _: Callable[[str], str] = str
) -> dict[str, list[str]]:
    index = _index(questionnaire.get("item"))
    out: dict[str, list[str]] = {}
    for issue in issues:
        expression = issue.expression or ""
        match = re.findall(r"linkId='((?:[^'\\]|\\.)*)'", expression)
        label = None
        if match:
            definition = index.get(match[-1].replace("\\'", "'").replace("\\\\", "\\"))
            if definition is not None:
                label = _label(definition)
        out.setdefault(expression, []).append(_friendly(issue.message, label, _))
    return out


def _index(items: Any) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for item in _list(items):
        if isinstance(item, dict) and isinstance(item.get("linkId"), str):
            out[item["linkId"]] = item
            out.update(_index(item.get("item")))
    return out


def _nodes(form: _Form) -> dict[int, Any]:
    """Map id(response element) → the validator's node for it (items and answers)."""
    out: dict[int, Any] = {}

    def walk(node: Any) -> None:
        for child in node.items:
            out[id(child.data)] = child
            walk(child)
        for answer in node.answers:
            out[id(answer.data)] = answer
            walk(answer)

    walk(form.root)
    return out


def build_form(
    questionnaire: Mapping[str, Any],
    response: Mapping[str, Any] | None = None,
    *,
    issues: Iterable[Issue] = (),
    raw: Mapping[str, Sequence[str]] | None = None,
    add: Collection[str] = (),
    zone: tzinfo | None = None,
    language: str | None = None,
) -> FormView:
    """Return the view of a Questionnaire filled with a response's answers.

    ``issues`` (from :func:`parse_form` or the validator) are shown next to their items
    and listed on top; ``raw`` (from :func:`parse_form`) shows the values exactly as
    typed after a failed submission; ``add`` names repeating groups (field paths) that
    get one more empty instance each time they are named; ``zone`` is the person's time
    zone for ``dateTime`` answers (default UTC); ``language`` translates the hints and
    messages (the Questionnaire's own texts: :func:`hw_fhir.translation.localize`).
    """
    response = response or {}
    _ = translator(language)
    form = _Form(questionnaire, {"item": response.get("item") or []}, {})
    builder = _Builder(
        questionnaire=questionnaire,
        issues=_issue_map(questionnaire, issues, _),
        raw=raw,
        add=add,
        zone=zone or timezone.utc,
        index=dict(_index(questionnaire.get("item"))),
        form=form,
        nodes=_nodes(form),
        gettext=_,
    )
    items = builder.items(
        _list(questionnaire.get("item")),
        _list(form.root.data.get("item")),
        "",
        "QuestionnaireResponse",
        0,
        form.root,
    )
    leftovers = [FormError(message) for messages in builder.issues.values() for message in messages]
    return FormView(
        title=str(questionnaire.get("title") or questionnaire.get("name") or "Questionnaire"),
        description=str(questionnaire.get("description") or ""),
        items=items,
        errors=tuple(leftovers + builder.summary),
    )


# -- reading the form back ------------------------------------------------------------------------


class _Fields:
    """Submitted fields by name (answer fields only, prefix removed), values stripped."""

    def __init__(self, form: Mapping[str, Any]) -> None:
        self.values: dict[str, list[str]] = {}
        getlist = getattr(form, "getlist", None)
        for key in list(form.keys()):
            if not isinstance(key, str) or not key.startswith(FIELD_PREFIX):
                continue
            raw = getlist(key) if getlist else form[key]
            if isinstance(raw, str):
                raw = [raw]
            self.values[key[len(FIELD_PREFIX) :]] = [str(v).replace("\r\n", "\n") for v in raw]

    def get(self, name: str) -> list[str]:
        return self.values.get(name, [])

    def filled(self, name: str) -> list[str]:
        return [v for v in self.get(name) if v.strip()]

    def instances(self, name: str) -> list[str]:
        """Return the instance numbers (as sent) of a repeating group, in number order."""
        found: set[int] = set()
        head = name + "."
        for key, values in self.values.items():
            if key.startswith(head) and any(v.strip() for v in values):
                number = key[len(head) :].split("/", 1)[0].split("~", 1)[0]
                if number.isdigit():
                    found.add(int(number))
        return [str(n) for n in sorted(found)]


@dataclass
class _Parser:
    questionnaire: Mapping[str, Any]
    fields: _Fields
    zone: tzinfo
    issues: list[Issue] = field(default_factory=list)
    raw: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def container(
        self, definitions: list[Any], prefix: str, norm: str, expression: str
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for definition in definitions:
            if not isinstance(definition, dict) or not isinstance(definition.get("linkId"), str):
                continue
            if _is_calculated(definition) or definition.get("readOnly"):
                continue
            link_id = definition["linkId"]
            name, norm_name = _join(prefix, link_id), _join(norm, link_id)
            item_expr = f"{expression}.item[linkId={_quote_link(link_id)}]"
            kind = definition.get("type")
            children = [d for d in _list(definition.get("item")) if isinstance(d, dict)]
            if kind == "display":
                continue
            if kind == "group" and definition.get("repeats"):
                sent = self.fields.instances(name)
                for n, number in enumerate(sent):
                    inst_expr = item_expr if len(sent) == 1 else f"{item_expr}[{n}]"
                    inner = self.container(
                        children, f"{name}.{number}", f"{norm_name}.{n}", inst_expr
                    )
                    out.append({"linkId": link_id, "item": inner} if inner else {"linkId": link_id})
                continue
            if kind == "group":
                inner = self.container(children, name, norm_name, item_expr)
                if inner:
                    out.append({"linkId": link_id, "item": inner})
                continue
            answers = self.answers(definition, name, norm_name, item_expr)
            if children and answers:
                inner = self.container(children, name, norm_name, f"{item_expr}.answer[0]")
                if inner:
                    answers[0]["item"] = inner
            if answers:
                out.append({"linkId": link_id, "answer": answers})
        return out

    def answers(
        self, definition: Mapping[str, Any], name: str, norm: str, expression: str
    ) -> list[dict[str, Any]]:
        sent = self.fields.get(name)
        other = self.fields.get(name + OTHER_SUFFIX)
        if sent:
            self.raw[norm] = tuple(sent)
        if other:
            self.raw[norm + OTHER_SUFFIX] = tuple(other)
        kind = str(definition.get("type"))
        label = item_text(definition) or str(definition.get("linkId"))
        out: list[dict[str, Any]] = []
        if kind in ("choice", "open-choice"):
            options = _options(definition, self.questionnaire)
            for token in (v.strip() for v in sent if v.strip()):
                if token.isdigit() and int(token) < len(options):
                    okind, value, _ = options[int(token)]
                    out.append({f"value{okind}": copy.deepcopy(value)})
                elif token != "__other__":
                    self.problem(expression, label, N_("Choose one of the options shown."))
            text = " ".join(" ".join(other).split())
            if text and kind == "open-choice":
                if out and not definition.get("repeats"):
                    self.problem(
                        expression,
                        label,
                        N_("Choose one of the options or type your own answer, not both."),
                    )
                else:
                    out.append({"valueString": text})
            return out
        for value in sent:
            if not value.strip():
                continue
            typed = self.read(kind, value, expression, label)
            if typed is not None:
                out.append(typed)
        return out

    def read(self, kind: str, value: str, expression: str, label: str) -> dict[str, Any] | None:
        text = value.strip()
        if kind in ("string", "url"):
            return {"valueString" if kind == "string" else "valueUri": " ".join(text.split())}
        if kind == "text":
            return {"valueString": value.strip("\n").rstrip()}
        if kind == "integer":
            if _INTEGER.match(text) and _INT32[0] <= int(text) <= _INT32[1]:
                return {"valueInteger": int(text)}
            return self.problem(expression, label, N_("Enter a whole number, for example 7."))
        if kind == "decimal":
            try:
                number = Decimal(text.replace(",", "."))
            except InvalidOperation:
                number = None
            if number is None or not number.is_finite():
                return self.problem(expression, label, N_("Enter a number, for example 7.5."))
            return {
                "valueDecimal": int(number)
                if number == number.to_integral_value() and "." not in text and "," not in text
                else float(number)
            }
        if kind == "boolean":
            if text in ("true", "false"):
                return {"valueBoolean": text == "true"}
            return self.problem(expression, label, N_("Choose Yes or No."))
        if kind == "date":
            try:
                if not _DATE.match(text):
                    raise ValueError(text)
                return {"valueDate": date.fromisoformat(text).isoformat()}
            except ValueError:
                return self.problem(expression, label, N_("Enter a date, for example 2026-03-08."))
        if kind == "time":
            match = _TIME.match(text)
            if (
                match
                and int(match.group(1)) < 24
                and int(match.group(2)) < 60
                and int(match.group(3) or 0) < 60
            ):
                return {"valueTime": f"{match.group(1)}:{match.group(2)}:{match.group(3) or '00'}"}
            return self.problem(expression, label, N_("Enter a time, for example 21:30."))
        if kind == "dateTime":
            return self.read_datetime(text, expression, label)
        return self.problem(expression, label, N_("This question cannot be answered here."))

    def read_datetime(self, text: str, expression: str, label: str) -> dict[str, Any] | None:
        match = _LOCAL_DATETIME.match(text)
        try:
            if match:
                clock = match.group(2) if match.group(2).count(":") == 2 else match.group(2) + ":00"
                local = datetime.fromisoformat(f"{match.group(1)}T{clock}").replace(
                    tzinfo=self.zone
                )
                return {"valueDateTime": local.isoformat()}
            if _DATE.match(text):
                return {"valueDateTime": date.fromisoformat(text).isoformat()}
        except ValueError:
            pass
        return self.problem(
            expression, label, N_("Enter a date and time, for example 2026-03-08 21:30.")
        )

    def problem(self, expression: str, label: str, message: str) -> dict[str, Any] | None:
        """Record a field that cannot be read; return None (no answer)."""
        self.issues.append(Issue(message, code="value", expression=expression))
        return None


def parse_form(
    questionnaire: Mapping[str, Any],
    form: Mapping[str, Any],
    *,
    zone: tzinfo | None = None,
    remove: Collection[str] = (),
) -> ParsedForm:
    """Read submitted answer fields back into ``QuestionnaireResponse.item``.

    ``form`` maps field names to lists of strings (a werkzeug MultiDict works); other
    fields are ignored. Empty fields are no answer. ``remove`` names group instances
    (field paths such as ``entry.1``) to leave out. Values that cannot be read become
    issues (expression in the validator's format) and are left out of the items.
    ``raw`` holds every value as sent, under the paths the items have after reading
    (instances renumbered from 0), for :func:`build_form` to show again.
    """
    fields = _Fields(form)
    for name in remove:
        for key in [
            k
            for k in fields.values
            if k == name or k.startswith(name + "/") or k.startswith(name + "~")
        ]:
            del fields.values[key]
    parser = _Parser(questionnaire, fields, zone or timezone.utc)
    items = parser.container(_list(questionnaire.get("item")), "", "", "QuestionnaireResponse")
    return ParsedForm(items=items, issues=tuple(parser.issues), raw=dict(parser.raw))


# -- enableWhen on the server ---------------------------------------------------------------------


def prune_disabled(questionnaire: Mapping[str, Any], response: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of the response without answers to items enableWhen switched off.

    Group instances and questions left with nothing inside are dropped too, so what the
    browser hid (or what a person without JavaScript filled in anyway) is never stored.
    """
    form = _Form(questionnaire, response, {})
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
        for item in _list(items):
            if not isinstance(item, dict) or id(item) in drop:
                continue
            kept = {k: v for k, v in item.items() if k not in ("item", "answer")}
            inner = clean(item.get("item"))
            if inner:
                kept["item"] = inner
            answers = []
            for answer in _list(item.get("answer")):
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
