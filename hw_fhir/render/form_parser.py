"""Read submitted form fields back into ``QuestionnaireResponse.item``: :func:`parse_form`."""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import Issue
from ..i18n import N_
from ..responses.definitions import as_list, quote_link_id
from .field_names import FIELD_PREFIX, OTHER_SUFFIX, join_path
from .item_display import is_calculated, item_text
from .options import choice_options
from .view_model import ParsedForm

__all__ = ["parse_form"]

_INTEGER = re.compile(r"^[+-]?\d+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")
_LOCAL_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)$")
_INT32 = (-(2**31), 2**31 - 1)


def _calendar_date(text: str) -> date | None:
    """Return the date ``YYYY-MM-DD`` names, or None when it is not one (2026-02-30)."""
    if not _DATE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


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
            if is_calculated(definition) or definition.get("readOnly"):
                continue
            link_id = definition["linkId"]
            name, norm_name = join_path(prefix, link_id), join_path(norm, link_id)
            item_expr = f"{expression}.item[linkId={quote_link_id(link_id)}]"
            kind = definition.get("type")
            children = [d for d in as_list(definition.get("item")) if isinstance(d, dict)]
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
            options = choice_options(definition, self.questionnaire)
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
            day = _calendar_date(text)
            if day is None:
                return self.problem(expression, label, N_("Enter a date, for example 2026-03-08."))
            return {"valueDate": day.isoformat()}
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
    items = parser.container(as_list(questionnaire.get("item")), "", "", "QuestionnaireResponse")
    return ParsedForm(items=items, issues=tuple(parser.issues), raw=dict(parser.raw))

