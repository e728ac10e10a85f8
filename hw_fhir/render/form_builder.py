"""Build the view of a Questionnaire filled with a response: :func:`build_form`."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any

from ..errors import Issue
from ..i18n import N_, translator
from ..items import walk_items
from ..responses.definitions import as_list, item_label, quote_link_id
from ..responses.form import ResponseForm
from .browser_conditions import browser_conditions
from .field_names import OTHER_SUFFIX, field_id, join_path
from .item_display import (
    choose_widget,
    first_typed_value,
    is_calculated,
    item_text,
    number_limits,
    number_text,
    shorten,
    unit_label,
)
from .options import choice_options, option_label, option_token
from .view_model import FormError, FormView, Instance, ItemView, Option
from .xhtml import item_media, item_xhtml

__all__ = ["build_form"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class _Builder:
    questionnaire: Mapping[str, Any]
    issues: dict[str, list[str]]
    raw: Mapping[str, Sequence[str]] | None
    add: Collection[str]
    zone: tzinfo
    index: dict[str, Mapping[str, Any]]
    form: ResponseForm | None
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
            if is_calculated(definition):
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
        name = join_path(prefix, link_id)
        item_expr = f"{expression}.item[linkId={quote_link_id(link_id)}]"
        options = (
            choice_options(definition, self.questionnaire)
            if definition.get("type") in ("choice", "open-choice")
            else []
        )
        widget = choose_widget(definition, options)
        conditions, condition_text = browser_conditions(
            definition, self.index, self.questionnaire, self.gettext
        )
        low, high, step = number_limits(definition)
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
            html=item_xhtml(definition),
            required=bool(definition.get("required")),
            repeats=bool(definition.get("repeats")),
            unit=unit_label(definition),
            max_length=definition.get("maxLength")
            if isinstance(definition.get("maxLength"), int)
            else None,
            media=item_media(definition),
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
        children_defs = [d for d in as_list(definition.get("item")) if isinstance(d, dict)]
        if widget == "group" and definition.get("repeats"):
            return self.repeating_group(definition, found, name, item_expr, depth, base)
        if widget == "group":
            instance = found[0] if found else {}
            node = self.nodes.get(id(instance)) if found else None
            errors = self.take(item_expr if len(found) <= 1 else f"{item_expr}[0]", item_expr)
            members = self.items(
                children_defs,
                as_list(instance.get("item")),
                name,
                item_expr if len(found) <= 1 else f"{item_expr}[0]",
                depth + 1,
                node if node is not None else container,
            )
            view = ItemView(**base, children=members, errors=errors)
            self.note(view)
            return view
        answers = (
            [a for a in as_list(found[0].get("answer")) if isinstance(a, dict)] if found else []
        )
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
                as_list(first.get("item")),
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
        children_defs = [d for d in as_list(definition.get("item")) if isinstance(d, dict)]
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
                children_defs, as_list(instance.get("item")), inst_name, inst_expr, depth + 1, node
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
            typed = first_typed_value(answer, "value")
            if typed is None:
                continue
            vkind, value = typed
            if kind in ("choice", "open-choice"):
                token = option_token(options, vkind, value)
                if token is not None:
                    chosen.add(token)
                    values.append(token)
                elif vkind in ("String", "Coding"):
                    other = option_label(vkind, value)
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
            for n, option in enumerate(as_list(definition.get("answerOption")))
            if isinstance(option, dict) and option.get("initialSelected")
        }
        initial = [
            t
            for t in (
                first_typed_value(i, "value")
                for i in as_list(definition.get("initial"))
                if isinstance(i, dict)
            )
            if t is not None
        ]
        if definition.get("type") in ("choice", "open-choice"):
            for kind, value in initial:
                token = option_token(options, kind, value)
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
            return number_text(value) or ""
        if kind == "Time" and isinstance(value, str):
            return value[:5] if value.endswith(":00") else value
        if kind == "DateTime" and isinstance(value, str):
            return _local_datetime(value, self.zone)
        return str(value) if not isinstance(value, dict) else option_label(kind, value)

    def take(self, *expressions: str) -> tuple[str, ...]:
        out: list[str] = []
        for expression in expressions:
            out.extend(self.issues.pop(expression, []))
        return tuple(dict.fromkeys(out))

    def note(self, view: ItemView) -> None:
        label = shorten(view.text or view.link_id, 80)
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
                label = item_label(definition)
        out.setdefault(expression, []).append(_friendly(issue.message, label, _))
    return out


def _index(items: Any) -> dict[str, Mapping[str, Any]]:
    return {
        item["linkId"]: item for item in walk_items(items) if isinstance(item.get("linkId"), str)
    }


def _nodes(form: ResponseForm) -> dict[int, Any]:
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
    form = ResponseForm(questionnaire, {"item": response.get("item") or []})
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
        as_list(questionnaire.get("item")),
        as_list(form.root.data.get("item")),
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

