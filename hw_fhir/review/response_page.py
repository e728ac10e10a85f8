"""One completed response made readable: questions and answers side by side.

:func:`response_view` returns the rows of a response in the order of its
Questionnaire (groups as headings, repeated groups numbered), with the calculated
scores, the severity band, each choice answer's weight, and the answers that raised a
risk highlighted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..scoring import ScoreResult, score_response
from ..scoring.weights import answer_weight
from .answers import answer_text, is_calculated
from .formatting import activity_title

__all__ = ["AnswerRow", "ResponseView", "response_view"]


@dataclass(frozen=True)
class AnswerRow:
    """One line of a response: the question (or group heading) and its answers."""

    key: str
    link_id: str
    text: str
    kind: str  # question | group | score
    depth: int
    answers: tuple[str, ...] = ()
    weight: str | None = None
    flagged: bool = False
    flag_reason: str = ""


@dataclass(frozen=True)
class ResponseView:
    """A response made readable."""

    id: str | None
    title: str
    questionnaire: str
    authored: str | None
    status: str
    rows: tuple[AnswerRow, ...]
    total: float | None = None
    total_label: str | None = None
    band: str | None = None
    scores: tuple[tuple[str, str], ...] = ()
    risks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    instrument: str | None = None

    @property
    def flagged(self) -> tuple[AnswerRow, ...]:
        """The rows whose answers raised a risk."""
        return tuple(r for r in self.rows if r.flagged)


def _weight_text(
    questionnaire: Mapping[str, Any], item: Mapping[str, Any], answers: list[dict[str, Any]]
) -> str | None:
    if item.get("type") not in ("choice", "open-choice"):
        return None
    weights = [answer_weight(dict(questionnaire), dict(item), a) for a in answers]
    known = [w for w in weights if w is not None]
    if not known:
        return None
    return ", ".join(f"{w.normalize():f}" for w in known)


def _answer_rows(
    questionnaire: Mapping[str, Any],
    q_items: list[dict[str, Any]],
    r_items: list[dict[str, Any]],
    depth: int,
    prefix: str,
    risks: Mapping[str, str],
    out: list[AnswerRow],
) -> None:
    by_link: dict[str, list[dict[str, Any]]] = {}
    for item in r_items:
        by_link.setdefault(str(item.get("linkId")), []).append(item)
    for q_item in q_items:
        link_id = str(q_item.get("linkId"))
        kind = q_item.get("type")
        found = by_link.get(link_id, [])
        if kind == "display":
            continue
        if kind == "group":
            instances = found or [{}]
            for n, instance in enumerate(instances):
                label = str(q_item.get("text") or link_id)
                if len(instances) > 1:
                    label += f" ({n + 1} of {len(instances)})"
                key = f"{prefix}{link_id}[{n}]"
                out.append(
                    AnswerRow(key=key, link_id=link_id, text=label, kind="group", depth=depth)
                )
                _answer_rows(
                    questionnaire,
                    q_item.get("item") or [],
                    instance.get("item") or [],
                    depth + 1,
                    key + "/",
                    risks,
                    out,
                )
            continue
        answers = [a for item in found for a in item.get("answer") or []]
        key = f"{prefix}{link_id}"
        out.append(
            AnswerRow(
                key=key,
                link_id=link_id,
                text=str(q_item.get("prefix", "") + " " if q_item.get("prefix") else "")
                + str(q_item.get("text") or link_id),
                kind="score" if is_calculated(q_item) else "question",
                depth=depth,
                answers=tuple(answer_text(a, q_item) for a in answers),
                weight=_weight_text(questionnaire, q_item, answers),
                flagged=link_id in risks,
                flag_reason=risks.get(link_id, ""),
            )
        )
        if q_item.get("item"):
            nested = [i for a in answers for i in a.get("item") or []]
            _answer_rows(questionnaire, q_item["item"], nested, depth + 1, key + "/", risks, out)


def response_view(
    questionnaire: Mapping[str, Any],
    response: Mapping[str, Any],
    *,
    result: ScoreResult | None = None,
) -> ResponseView:
    """Return a response side by side with its questions, scored, risky answers flagged.

    ``result`` is the score (computed with :func:`hw_fhir.scoring.score_response` when
    not given); its calculated copy of the response fills in score items.
    """
    try:
        scored = result or score_response(dict(questionnaire), dict(response))
    except Exception:  # noqa: BLE001 - a response that cannot be scored is still shown
        scored = None
    shown = dict(scored.response) if scored is not None and scored.response else dict(response)
    risks = {r.link_id: r.reason for r in (scored.risks if scored else ()) if r.link_id}
    rows: list[AnswerRow] = []
    _answer_rows(
        questionnaire, questionnaire.get("item") or [], shown.get("item") or [], 0, "", risks, rows
    )
    band = scored.interpretation.display if scored and scored.interpretation else None
    scores = tuple(
        (s.label or s.key, f"{s.value:g}")
        for s in (scored.scores if scored else ())
        if s is not (scored.total if scored else None)
    )
    return ResponseView(
        id=response.get("id"),
        title=activity_title(questionnaire),
        questionnaire=str(response.get("questionnaire") or ""),
        authored=response.get("authored"),
        status=str(response.get("status") or ""),
        rows=tuple(rows),
        total=float(scored.value) if scored and scored.value is not None else None,
        total_label=(scored.total.label if scored and scored.total else None),
        band=band,
        scores=scores,
        risks=tuple(f"{r.display}: {r.reason}" for r in (scored.risks if scored else ())),
        notes=tuple(scored.notes) if scored else (),
        instrument=scored.instrument if scored else None,
    )
