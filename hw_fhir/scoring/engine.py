"""The scoring steps: the generic SDC path, the built-in scorers, merging and agreeing results.

:mod:`hw_fhir.scoring.pipeline` runs them in order (with or without the plugins).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from . import gad7, pcl5, phq2, phq9
from ..errors import InvalidInput
from .items import answer_value, canonical, iter_questionnaire_items, iter_response_items
from .results import Score, Scorer, ScoreResult
from .sdc import calculate, sdc_result
from .observations import PRORATED_EXTENSION

__all__ = ["DEFAULT_SCORERS", "agree", "calculate_or_fallback", "with_failure", "same_score",
           "merge_scores"]

#: The built-in instrument scorers, tried in order (``register_scorers`` of ``default_scoring``).
DEFAULT_SCORERS: tuple[Scorer, ...] = (phq9.score_for, gad7.score_for, phq2.score_for, pcl5.score_for)


def calculate_or_fallback(questionnaire: dict[str, Any], response: dict[str, Any]
                          ) -> tuple[dict[str, Any], ScoreResult, InvalidInput | None]:
    """Calculate a response; when the form's expressions fail, return the failure instead.

    Return ``(calculated response, its generic SDC result, failure or None)``: a
    known instrument is still scored by its own definition when the form's own
    calculation fails (the caller raises the failure when no instrument knows it).
    """
    try:
        calculated = calculate(questionnaire, response)
    except InvalidInput as exc:
        copied = copy.deepcopy(dict(response))
        return copied, ScoreResult(questionnaire=canonical(questionnaire), response=copied), exc
    return calculated, sdc_result(questionnaire, calculated), None


def with_failure(result: ScoreResult, failure: InvalidInput | None) -> ScoreResult:
    """Add a warning that the form's own calculation failed (when it did)."""
    if failure is None:
        return result
    return replace(result, warnings=(*result.warnings, (
        f"The form's own calculation failed ({failure.message}); scored by the "
        f"{result.instrument or 'instrument'} definition instead.")))


def _total_item(questionnaire: dict[str, Any], result: ScoreResult) -> dict[str, Any] | None:
    """Return the Questionnaire item holding the instrument's total, or None."""
    if result.total is not None:
        key, code = result.total.key, result.total.code
    else:
        key, code = None, None
    for item in iter_questionnaire_items(questionnaire):
        if key and item.get("linkId") == key:
            return item
        if code and any(c.get("code") == code.code for c in item.get("code") or []):
            return item
    return None


def agree(questionnaire: dict[str, Any], result: ScoreResult) -> ScoreResult:
    """Make the response's total item say the instrument's total (or nothing when unscored).

    A known instrument's total is the instrument's own (range-checked, maybe
    prorated); a different total in the response — sent by the client, or calculated
    from weights the client put on its answers — is replaced, and a warning says so.
    When the instrument gives no total, a total in the response is removed.
    """
    if result.instrument is None:
        return result
    target = _total_item(questionnaire, result)
    if target is None and result.total is None:
        # unscored: find the item an instrument total would sit in by its linkId suffix
        target = next((i for i in iter_questionnaire_items(questionnaire)
                       if str(i.get("linkId", "")).endswith("total") and i.get("type") in
                       ("integer", "decimal", "quantity")), None)
    if target is None:
        return result
    link_id = target["linkId"]
    # the form's own value of the total (from client weights, say) never stands in for the
    # instrument's: only the instrument's total is a score of that item
    target_codes = {c.get("code") for c in target.get("code") or [] if c.get("code")}
    kept = tuple(s for s in result.scores if s is result.total or not (
        s.key == link_id or (s.code is not None and s.code.code in target_codes)))
    if kept != result.scores:
        result = replace(result, scores=kept)
    response = copy.deepcopy(dict(result.response))
    holders = [i for i in iter_response_items(response) if i.get("linkId") == link_id]
    warnings = list(result.warnings)
    old = None
    for holder in holders:
        for answer in holder.get("answer") or []:
            found = answer_value(answer)
            if found is not None:
                old = found[1].get("value") if isinstance(found[1], dict) else found[1]
    new: dict[str, Any] | None = None
    if result.total is not None:
        kind = "valueDecimal" if target.get("type") == "decimal" else "valueInteger"
        new = {kind: result.total.value}
        if target.get("type") == "quantity":
            new = {"valueQuantity": {"value": result.total.value}}
        if result.prorated:  # the response says so too, as the Observation does
            new["extension"] = [{"url": PRORATED_EXTENSION, "valueBoolean": True}]
    if new is None and old is None:
        return result
    current = [a for h in holders for a in h.get("answer") or []]
    if new is not None and current == [new]:
        return result
    if old is not None and (result.total is None or old != result.total.value):
        said = result.total.value if result.total is not None else "no total"
        warnings.append(f"The response's {result.instrument.upper()} total {old} was replaced by "
                        f"{said}, the instrument's own score.")
    if new is None:
        _drop(response, link_id)
    elif holders:
        for holder in holders:
            holder["answer"] = [new]
    else:
        parent = _holder(questionnaire, response, link_id)
        if parent is not None:
            item: dict[str, Any] = {"linkId": link_id, "answer": [new]}
            if target.get("text"):
                item["text"] = target["text"]
            parent["item"] = [*(parent.get("item") or []), item]
    return replace(result, response=response, warnings=tuple(warnings))


def same_score(a: Score, b: Score) -> bool:
    """Whether two scores are the same measure (same key, or the same code)."""
    return a.key == b.key or (a.code is not None and b.code is not None and a.code.code == b.code.code)


def merge_scores(base: ScoreResult, result: ScoreResult, calculated: dict[str, Any]) -> ScoreResult:
    """Add to an instrument's result the generic scores it lacks; its response is ``calculated``."""
    extra = tuple(s for s in base.scores if not any(same_score(s, mine) for mine in result.scores))
    return replace(result, scores=result.scores + extra, response=calculated)


def _drop(node: dict[str, Any], link_id: str) -> None:
    """Remove every item ``link_id`` below ``node`` (items and items under answers)."""
    if node.get("item"):
        node["item"] = [i for i in node["item"] if i.get("linkId") != link_id]
        for child in node["item"]:
            _drop(child, link_id)
        if not node["item"]:
            node.pop("item")
    for answer in node.get("answer") or []:
        _drop(answer, link_id)


def _holder(questionnaire: dict[str, Any], response: dict[str, Any],
            link_id: str) -> dict[str, Any] | None:
    """Return where a missing item ``link_id`` goes: the response root, or its (only) group."""
    def parent_of(items: list[dict[str, Any]], parent: str | None) -> str | None | bool:
        for item in items:
            if item.get("linkId") == link_id:
                return parent
            found = parent_of(item.get("item") or [], item.get("linkId"))
            if found is not False:
                return found
        return False

    parent = parent_of(questionnaire.get("item") or [], None)
    if parent is False:
        return None
    if parent is None:
        return response
    groups = [i for i in iter_response_items(response) if i.get("linkId") == parent]
    return groups[0] if len(groups) == 1 and not groups[0].get("answer") else None
