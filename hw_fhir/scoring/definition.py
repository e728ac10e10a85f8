"""Known instruments scored by their own definition: recognition and answer scoring.

Recognition (:func:`recognise`) — a Questionnaire is a known instrument when, in
this order:

1. its canonical ``url`` is one the instrument registers (the catalog's, a plugin's);
2. ``Questionnaire.code`` holds the instrument's panel LOINC code (PHQ-9 44249-1,
   GAD-7 69737-5, PHQ-2 55757-9);
3. one of its items is coded with the instrument's total-score LOINC code (PHQ-9
   44261-6, GAD-7 70274-6, PHQ-2 55758-7);
4. a strict majority of the instrument's item LOINC codes appear on its items (at
   least 5 of the 9 PHQ-9 codes), and they outnumber the other LOINC codes on its items
   (so a PHQ-9, which holds both PHQ-2 item codes, is not taken for a PHQ-2).

Answer scoring (:func:`instrument_weight`) — the score of an answer is the
instrument's score of its answer *code* (the LOINC LA codes, or the catalog's own
option codes), never a weight the client put on the answer or its Coding: such a
weight is ignored, and reported when it disagrees. An answer whose code the
instrument does not know is scored from the weight the *Questionnaire* gives that
option (answerOption, ValueSet, CodeSystem), when that weight is a whole number in
the item's range; otherwise the answer is *unscorable* and the reason says why. An
unscorable answer is never counted as unanswered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .items import answer_value, iter_questionnaire_items
from .weights import answer_weight, extension_weight

__all__ = ["Recognition", "Weighed", "recognise", "instrument_weight", "describe_answer"]

Json = dict[str, Any]
LOINC = "http://loinc.org"


@dataclass(frozen=True)
class Recognition:
    """How a Questionnaire was recognised as an instrument (``by``: url, panel-code...)."""

    by: str
    detail: str


@dataclass(frozen=True)
class Weighed:
    """The score of one answer: ``value`` (None: unscorable, see ``problem``).

    ``ignored`` says which client-sent weight was ignored (None when none disagreed).
    """

    value: Decimal | None
    problem: str | None = None
    ignored: str | None = None


def _loinc(coding: Mapping[str, Any]) -> bool:
    return coding.get("system", LOINC) in (LOINC, None, "")


def _item_codes(questionnaire: Json) -> set[str]:
    return {str(c.get("code")) for item in iter_questionnaire_items(questionnaire)
            for c in item.get("code") or [] if c.get("code") and _loinc(c)}


def recognise(*, urls: frozenset[str], panel_code: str | None, total_code: str | None,
              item_codes: tuple[str, ...], questionnaire: Json) -> Recognition | None:
    """Return how ``questionnaire`` is recognised as the instrument described, or None."""
    url = questionnaire.get("url")
    if isinstance(url, str) and url.split("|", 1)[0] in urls:
        return Recognition("url", url.split("|", 1)[0])
    if panel_code and any(c.get("code") == panel_code and _loinc(c)
                          for c in questionnaire.get("code") or []):
        return Recognition("panel-code", panel_code)
    codes = _item_codes(questionnaire)
    if total_code and total_code in codes:
        return Recognition("total-code", total_code)
    if item_codes:
        found = len(set(item_codes) & codes)
        others = len(codes - set(item_codes) - {total_code})
        # a majority of its item codes, and more of them than other codes (a PHQ-9 holds
        # both PHQ-2 codes, but is no PHQ-2)
        if found * 2 > len(item_codes) and found > others:
            return Recognition("item-codes", f"{found} of {len(item_codes)} item codes")
    return None


def describe_answer(answer: Json) -> str:
    """Return a short text of what an answer says (its display, code or value)."""
    found = answer_value(answer)
    if found is None:
        return "an answer without a value"
    kind, value = found
    if kind == "Coding" and isinstance(value, dict):
        label = value.get("display") or value.get("code") or "a Coding without code"
        code = value.get("code")
        return f"{label!r} ({code})" if code and code != label else repr(label)
    return repr(value)


def _client_weight(answer: Json) -> Decimal | None:
    own = extension_weight(answer)
    if own is not None:
        return own
    found = answer_value(answer)
    if found and found[0] == "Coding":
        return extension_weight(found[1])
    return None


def _stripped(answer: Json) -> Json:
    """The answer without any weight the client put on it or on its Coding."""
    out = {k: v for k, v in answer.items() if k != "extension"}
    if isinstance(out.get("valueCoding"), dict):
        out["valueCoding"] = {k: v for k, v in out["valueCoding"].items() if k != "extension"}
    return out


def _in_range(value: Decimal, low: int, high: int) -> bool:
    return value == value.to_integral_value() and low <= value <= high


def instrument_weight(*, scale: Mapping[str, int], systems: frozenset[str], low: int, high: int,
                      name: str, questionnaire: Json, qitem: Json | None,
                      answer: Json) -> Weighed:
    """Score one answer by the instrument's answer codes (see the module)."""
    client = _client_weight(answer)
    found = answer_value(answer)
    if found is None:
        return Weighed(None, "the answer has no value")
    kind, value = found
    weight: Decimal | None = None
    if kind == "Coding" and isinstance(value, dict):
        code = value.get("code")
        system = value.get("system")
        if code in scale and (not system or system in systems):
            weight = Decimal(scale[code])
    if weight is None and kind in ("Integer", "Decimal") and not isinstance(value, bool):
        number = Decimal(str(value))
        if not _in_range(number, low, high):
            return Weighed(None, f"the value {value} is outside the {name} item range {low}-{high}")
        weight = number
    if weight is None and kind == "Coding":
        try:
            form = answer_weight(questionnaire, qitem, _stripped(answer))
        except ValueError as exc:
            return Weighed(None, str(exc))
        if form is None:
            return Weighed(None, f"{describe_answer(answer)} is not a {name} answer and the form "
                                 f"gives it no weight")
        if not _in_range(form, low, high):
            return Weighed(None, f"the form weighs {describe_answer(answer)} {form}, outside the "
                                 f"{name} item range {low}-{high}")
        weight = form
    if weight is None:
        return Weighed(None, f"{describe_answer(answer)} ({kind.lower()}) is not a {name} answer")
    ignored = None
    if client is not None and client != weight:
        ignored = (f"weight {client} sent with {describe_answer(answer)} ignored; "
                   f"the {name} scores it {weight}")
    return Weighed(weight, ignored=ignored)
