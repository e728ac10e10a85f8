"""The library as a clinician browses it: entries with their tags, filters, an item preview.

* :func:`library_entries` — one entry per activity (its newest version), own activities
  first; :func:`filter_library` — the entries matching a text and tag filters.
* :func:`preview_rows` — a Questionnaire's items as the patient will meet them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import catalog
from ..items import walk_items
from ..library.lookup import version_key
from .answers import answer_text, help_text, is_calculated, is_help

__all__ = ["LibraryEntry", "library_entries", "filter_library", "PreviewRow", "preview_rows"]


@dataclass(frozen=True)
class LibraryEntry:
    """An activity in the library, with its tags for filtering."""

    id: str
    canonical: str
    title: str
    description: str
    status: str
    tags: Mapping[str, tuple[str, ...]]
    own: bool = False
    items: int = 0

    def tag_labels(self, category: str) -> tuple[str, ...]:
        """Return the display names of one tag category."""
        names = {
            "problem-area": catalog.PROBLEM_AREAS,
            "modality": catalog.MODALITIES,
            "media": catalog.MEDIA_TYPES,
            "kind": catalog.ACTIVITY_KINDS,
        }[category]
        return tuple(names.get(code, code) for code in self.tags.get(category, ()))


def library_entries(
    questionnaires: Iterable[Mapping[str, Any]], *, own_prefix: str | None = None
) -> list[LibraryEntry]:
    """Return library entries for Questionnaires, sorted by title (newest version per url)."""
    newest: dict[str, Mapping[str, Any]] = {}
    for q in questionnaires:
        url = str(q.get("url") or q.get("id"))
        if url not in newest or version_key(q.get("version")) > version_key(
            newest[url].get("version")
        ):
            newest[url] = q
    out = []
    for q in newest.values():
        found = catalog.tags(q)
        out.append(
            LibraryEntry(
                id=str(q.get("id")),
                canonical=catalog.canonical(q),
                title=str(q.get("title") or q.get("name") or "Activity"),
                description=str(q.get("description") or ""),
                status=str(q.get("status") or ""),
                tags={k: tuple(v) for k, v in found.items()},
                own=bool(own_prefix and str(q.get("url", "")).startswith(own_prefix)),
                items=sum(
                    1
                    for item in walk_items(q.get("item"))
                    if item.get("type") not in ("display", "group")
                ),
            )
        )
    return sorted(out, key=lambda e: (not e.own, e.title.lower()))


def filter_library(
    entries: Sequence[LibraryEntry],
    *,
    text: str = "",
    problem_area: str = "",
    modality: str = "",
    media: str = "",
    kind: str = "",
) -> list[LibraryEntry]:
    """Return the entries matching every given filter; ``text`` matches title and description."""
    words = [w for w in re.split(r"\s+", text.lower().strip()) if w]
    out = []
    for entry in entries:
        haystack = f"{entry.title} {entry.description}".lower()
        if any(w not in haystack for w in words):
            continue
        if any(
            value and value not in entry.tags.get(category, ())
            for category, value in (
                ("problem-area", problem_area),
                ("modality", modality),
                ("media", media),
                ("kind", kind),
            )
        ):
            continue
        out.append(entry)
    return out


@dataclass(frozen=True)
class PreviewRow:
    """An item as the patient meets it: text, type, options, required, help, depth."""

    link_id: str
    text: str
    type: str
    depth: int
    required: bool = False
    repeats: bool = False
    options: tuple[str, ...] = ()
    help: str = ""
    calculated: bool = False
    enable_when: bool = False


def preview_rows(questionnaire: Mapping[str, Any]) -> list[PreviewRow]:
    """Return every item of a Questionnaire in order (help texts folded into their item)."""
    rows: list[PreviewRow] = []

    def walk(items: list[dict[str, Any]], depth: int) -> None:
        for item in items:
            if is_help(item):
                continue
            options = tuple(answer_text(o) for o in item.get("answerOption") or [])
            rows.append(
                PreviewRow(
                    link_id=str(item.get("linkId")),
                    text=str(item.get("text") or ""),
                    type=str(item.get("type")),
                    depth=depth,
                    required=bool(item.get("required")),
                    repeats=bool(item.get("repeats")),
                    options=options,
                    help=help_text(item),
                    calculated=is_calculated(item),
                    enable_when=bool(item.get("enableWhen")),
                )
            )
            walk(item.get("item") or [], depth + 1)

    walk(list(questionnaire.get("item") or []), 0)
    return rows
