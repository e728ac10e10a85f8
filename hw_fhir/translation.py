"""Questionnaire translations the FHIR way, and choosing the language a patient sees.

A translated string carries the core extension
``http://hl7.org/fhir/StructureDefinition/translation`` on its primitive's element
(``_title``, ``_description``, an item's ``_text``, an answer option's
``valueCoding._display`` or ``_valueString``)::

    "text": "Feeling down, depressed, or hopeless",
    "_text": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/translation",
                             "extension": [{"url": "lang", "valueCode": "es"},
                                           {"url": "content", "valueString": "Se ha sentido ..."}]}]}

Help texts are display items (itemControl ``help``), so they are items like any other.
Where a translation comes from is said once per Questionnaire and language with
:data:`TRANSLATION_STATUS_URL` (sub-extensions ``lang``, ``status`` — ``published``,
``project`` (translated by the hw-fhir project, not a published version), ``local``
(translated by the practice in the activity editor) or ``incomplete`` — and ``source``).

:func:`localize` returns a copy of a Questionnaire with every translated string put in
place, and the link ids of the items still in the original language, so the patient page
can say so and mark them ``lang``. Codes, link ids and structure never change: a response
is the same whatever language it was answered in. No web framework here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .i18n import DEFAULT_LANGUAGE, supported
from .items import walk_items

__all__ = [
    "TRANSLATION_URL",
    "TRANSLATION_STATUS_URL",
    "RENDERING_XHTML_URL",
    "Localized",
    "TranslationStatus",
    "original_language",
    "translation_of",
    "set_translation",
    "translatable",
    "missing_translations",
    "translation_status",
    "localize",
    "TranslationRow",
    "translation_rows",
    "apply_translation_form",
]

TRANSLATION_URL = "http://hl7.org/fhir/StructureDefinition/translation"
TRANSLATION_STATUS_URL = "http://hw-fhir.org/fhir/StructureDefinition/translation-status"
RENDERING_XHTML_URL = "http://hl7.org/fhir/StructureDefinition/rendering-xhtml"
STATUSES = ("published", "project", "local", "incomplete")


@dataclass(frozen=True)
class TranslationStatus:
    """Where a Questionnaire's translation into one language comes from."""

    language: str
    status: str
    source: str = ""


@dataclass(frozen=True)
class Localized:
    """A Questionnaire as shown in ``language``; ``fallback`` items kept their original text."""

    questionnaire: dict[str, Any]
    language: str
    original: str
    fallback: frozenset[str]
    title_translated: bool
    strings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def shown_response(self, response: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Return a copy of a (draft) response whose string-option answers read as shown.

        Only for showing the form: submitted answers are read back against the original
        Questionnaire, so what is stored stays language-neutral.
        """
        if response is None or not self.strings:
            return dict(response) if response is not None else None
        copied: dict[str, Any] = copy.deepcopy(dict(response))
        for item in walk_items(copied.get("item")):
            shown = self.strings.get(str(item.get("linkId")))
            for answer in item.get("answer") or [] if shown else []:
                if isinstance(answer.get("valueString"), str):
                    answer["valueString"] = shown.get(answer["valueString"], answer["valueString"])
        return copied

    @property
    def complete(self) -> bool:
        """Whether everything the patient reads is in ``language``."""
        return not self.fallback and self.title_translated

    @property
    def untranslated(self) -> bool:
        """Whether nothing at all is in ``language`` (the page says it is not available)."""
        return self.language != self.original and not self.title_translated and bool(
            self.fallback
        ) and self.fallback == frozenset(_all_ids(self.questionnaire))


def original_language(questionnaire: Mapping[str, Any]) -> str:
    """Return the language a Questionnaire is written in (``language``, else English)."""
    return supported(questionnaire.get("language")) if questionnaire.get("language") else (
        DEFAULT_LANGUAGE
    )


def _lang_of(ext: Mapping[str, Any]) -> tuple[str | None, str | None]:
    lang = content = None
    for sub in ext.get("extension") or []:
        if sub.get("url") == "lang":
            lang = sub.get("valueCode")
        elif sub.get("url") == "content":
            content = sub.get("valueString") or sub.get("valueMarkdown")
    return lang, content


def translation_of(element: Mapping[str, Any], field: str, language: str) -> str | None:
    """Return the ``language`` translation of ``element[field]`` (``es`` also matches ``es-MX``)."""
    holder = element.get(f"_{field}")
    if not isinstance(holder, Mapping):
        return None
    best = None
    for ext in holder.get("extension") or []:
        if not isinstance(ext, Mapping) or ext.get("url") != TRANSLATION_URL:
            continue
        lang, content = _lang_of(ext)
        if not lang or not isinstance(content, str) or not content.strip():
            continue
        if lang == language:
            return content
        if best is None and lang.split("-")[0] == language:
            best = content
    return best


def set_translation(element: dict[str, Any], field: str, language: str, text: str | None) -> None:
    """Put (or, when ``text`` is empty, remove) the ``language`` translation of ``element[field]``."""
    holder = dict(element.get(f"_{field}") or {})
    kept = [
        e
        for e in holder.get("extension") or []
        if not (e.get("url") == TRANSLATION_URL and _lang_of(e)[0] == language)
    ]
    text = (text or "").strip()
    if text:
        kept.append(
            {
                "url": TRANSLATION_URL,
                "extension": [
                    {"url": "lang", "valueCode": language},
                    {"url": "content", "valueString": text},
                ],
            }
        )
    if kept:
        holder["extension"] = kept
    else:
        holder.pop("extension", None)
    if holder:
        element[f"_{field}"] = holder
    else:
        element.pop(f"_{field}", None)


def _all_ids(questionnaire: Mapping[str, Any]) -> list[str]:
    return [str(i.get("linkId")) for i in walk_items(questionnaire.get("item")) if _reads(i)]


def _reads(item: Mapping[str, Any]) -> bool:
    """Whether the patient reads something of this item (hidden/calculated ones: no)."""
    for ext in item.get("extension") or []:
        if ext.get("url") == "http://hl7.org/fhir/StructureDefinition/questionnaire-hidden" and (
            ext.get("valueBoolean")
        ):
            return False
    return bool(item.get("text")) or bool(item.get("answerOption"))


def translatable(
    questionnaire: Mapping[str, Any],
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Yield ``(where, element, field)`` for every string a patient reads.

    ``where`` is ``"title"``, ``"description"``, a link id, or ``"<linkId> option <n>"``.
    """
    for field in ("title", "description"):
        if questionnaire.get(field):
            yield field, questionnaire, field  # type: ignore[misc]
    for item in walk_items(questionnaire.get("item")):
        if not _reads(item):
            continue
        link = str(item.get("linkId"))
        if item.get("text"):
            yield link, item, "text"
        for n, option in enumerate(item.get("answerOption") or []):
            if isinstance(option.get("valueCoding"), dict) and option["valueCoding"].get("display"):
                yield f"{link} option {n}", option["valueCoding"], "display"
            elif isinstance(option.get("valueString"), str):
                yield f"{link} option {n}", option, "valueString"


def missing_translations(questionnaire: Mapping[str, Any], language: str) -> list[str]:
    """Return where a Questionnaire has no ``language`` translation (empty: complete)."""
    if language == original_language(questionnaire):
        return []
    return [
        where
        for where, element, field in translatable(questionnaire)
        if translation_of(element, field, language) is None
    ]


def translation_status(questionnaire: Mapping[str, Any], language: str) -> TranslationStatus | None:
    """Return the declared status of a Questionnaire's ``language`` translation, if any."""
    for ext in questionnaire.get("extension") or []:
        if ext.get("url") != TRANSLATION_STATUS_URL:
            continue
        values = {
            sub.get("url"): next((v for k, v in sub.items() if k.startswith("value")), None)
            for sub in ext.get("extension") or []
        }
        if values.get("lang") == language:
            return TranslationStatus(
                language, str(values.get("status") or ""), str(values.get("source") or "")
            )
    return None


def _drop_xhtml(item: dict[str, Any]) -> None:
    holder = item.get("_text")
    if isinstance(holder, dict):
        holder["extension"] = [
            e for e in holder.get("extension") or [] if e.get("url") != RENDERING_XHTML_URL
        ]


def localize(questionnaire: Mapping[str, Any], language: str | None) -> Localized:
    """Return a copy of a Questionnaire in ``language`` where translated, and what fell back."""
    original = original_language(questionnaire)
    wanted = supported(language) if language else original
    copied: dict[str, Any] = copy.deepcopy(dict(questionnaire))
    if wanted == original:
        return Localized(copied, wanted, original, frozenset(), True, {})
    title = translation_of(copied, "title", wanted)
    if title:
        copied["title"] = title
    description = translation_of(copied, "description", wanted)
    if description:
        copied["description"] = description
    fallback: set[str] = set()
    strings: dict[str, dict[str, str]] = {}
    for item in walk_items(copied.get("item")):
        if not _reads(item):
            continue
        link = str(item.get("linkId"))
        if item.get("text"):
            text = translation_of(item, "text", wanted)
            if text:
                item["text"] = text
                _drop_xhtml(item)
            else:
                fallback.add(link)
        for option in item.get("answerOption") or []:
            coding = option.get("valueCoding")
            if isinstance(coding, dict) and coding.get("display"):
                shown = translation_of(coding, "display", wanted)
                if shown:
                    coding["display"] = shown
                else:
                    fallback.add(link)
            elif isinstance(option.get("valueString"), str):
                shown = translation_of(option, "valueString", wanted)
                if shown is None:
                    fallback.add(link)
                else:
                    strings.setdefault(link, {})[option["valueString"]] = shown
                    option["valueString"] = shown
    for item in walk_items(copied.get("item")):
        for condition in item.get("enableWhen") or []:
            mapped = strings.get(str(condition.get("question")))
            if mapped and isinstance(condition.get("answerString"), str):
                condition["answerString"] = mapped.get(condition["answerString"],
                                                       condition["answerString"])
    return Localized(copied, wanted, original, frozenset(fallback), bool(title), strings)


# -- the activity editor's "Spanish text" fields ---------------------------------------------------


@dataclass(frozen=True)
class TranslationRow:
    """One string of an activity in the editor: its form field, the original, the translation."""

    field: str
    original: str
    translation: str
    option: bool


def _field(where: str, element: Mapping[str, Any], name: str) -> str:
    if where in ("title", "description"):
        return f"tr.{where}"
    link, _, rest = where.partition(" option ")
    if not rest:
        return f"tr.text.{link}"
    if name == "display" and element.get("code"):
        return f"tr.option.{link}.{element['code']}"
    return f"tr.option.{link}.#{rest}"


def translation_rows(questionnaire: Mapping[str, Any], language: str) -> list[TranslationRow]:
    """Return every string a patient reads with its ``language`` translation, for the editor."""
    return [
        TranslationRow(
            field=_field(where, element, name),
            original=str(element.get(name) or ""),
            translation=translation_of(element, name, language) or "",
            option=" option " in where,
        )
        for where, element, name in translatable(questionnaire)
    ]


def apply_translation_form(
    questionnaire: Mapping[str, Any], form: Mapping[str, Any], language: str
) -> dict[str, Any]:
    """Return a copy with the editor's ``tr.*`` fields applied as ``language`` translations.

    A field left out changes nothing; an empty one removes that translation. When anything
    changed, the translation status becomes ``local`` (or ``incomplete`` while strings lack
    a translation).
    """
    edited: dict[str, Any] = copy.deepcopy(dict(questionnaire))
    changed = False
    for where, element, name in list(translatable(edited)):
        key = _field(where, element, name)
        if key not in form:
            continue
        value = form[key]
        value = (value[0] if value else "") if isinstance(value, (list, tuple)) else value
        text = str(value or "").strip()
        if text != (translation_of(element, name, language) or ""):
            set_translation(element, name, language, text)
            changed = True
    if changed:
        missing = missing_translations(edited, language)
        status = "incomplete" if missing else "local"
        edited["extension"] = [
            e for e in edited.get("extension") or []
            if not (e.get("url") == TRANSLATION_STATUS_URL
                    and any(x.get("valueCode") == language for x in e.get("extension") or []))
        ] + [{
            "url": TRANSLATION_STATUS_URL,
            "extension": [
                {"url": "lang", "valueCode": language},
                {"url": "status", "valueCode": status},
                {"url": "source", "valueString": "Translated by the practice in the activity editor"},
            ],
        }]
    return edited
