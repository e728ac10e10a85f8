"""The render view model: frozen values describing a form to show and a form read back."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Issue
from ..responses.definitions import canonical_of
from .field_names import FIELD_PREFIX, OTHER_SUFFIX

__all__ = [
    "Option",
    "Media",
    "Condition",
    "FormError",
    "Instance",
    "ItemView",
    "FormView",
    "ParsedForm",
]


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

