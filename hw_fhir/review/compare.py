"""Two completions of the same activity side by side, with what changed.

:func:`compare_responses` lines up the answers of two responses (the earlier one
first), counts the answers that differ and, for a measure, labels the change of its
total (response, remission, reliable improvement, deterioration).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from ..scoring import progress
from ..scoring.mbc import THRESHOLDS
from .formatting import change_labels
from .response_page import ResponseView, response_view

__all__ = ["CompareRow", "Comparison", "compare_responses"]


@dataclass(frozen=True)
class CompareRow:
    """One question of two responses side by side."""

    key: str
    text: str
    kind: str
    depth: int
    before: tuple[str, ...]
    after: tuple[str, ...]
    before_weight: str | None = None
    after_weight: str | None = None
    flagged: bool = False

    @property
    def changed(self) -> bool:
        """Whether the answers differ."""
        return self.kind != "group" and self.before != self.after


@dataclass(frozen=True)
class Comparison:
    """Two completions of the same activity, the earlier one first."""

    before: ResponseView
    after: ResponseView
    rows: tuple[CompareRow, ...]
    change: float | None
    labels: tuple[str, ...] = ()

    @property
    def changed_count(self) -> int:
        """How many answers differ."""
        return sum(r.changed for r in self.rows)


def compare_responses(
    first: tuple[Mapping[str, Any], Mapping[str, Any]],
    second: tuple[Mapping[str, Any], Mapping[str, Any]],
) -> Comparison:
    """Compare two ``(questionnaire, response)`` pairs of the same activity (same url).

    The earlier response (by ``authored``) becomes ``before``. Raise InvalidInput when
    the two responses answer different activities.
    """
    url_a = str(first[1].get("questionnaire") or "").split("|")[0]
    url_b = str(second[1].get("questionnaire") or "").split("|")[0]
    if url_a != url_b:
        raise InvalidInput("Only two completions of the same activity can be compared")
    pairs = sorted([first, second], key=lambda p: str(p[1].get("authored") or ""))
    before, after = (response_view(q, r) for q, r in pairs)
    earlier = {row.key: row for row in before.rows}
    rows = []
    seen = set()
    for row in after.rows:
        old = earlier.get(row.key)
        seen.add(row.key)
        rows.append(
            CompareRow(
                key=row.key,
                text=row.text,
                kind=row.kind,
                depth=row.depth,
                before=old.answers if old else (),
                after=row.answers,
                before_weight=old.weight if old else None,
                after_weight=row.weight,
                flagged=row.flagged or bool(old and old.flagged),
            )
        )
    for row in before.rows:
        if row.key not in seen:
            rows.append(
                CompareRow(
                    key=row.key,
                    text=row.text,
                    kind=row.kind,
                    depth=row.depth,
                    before=row.answers,
                    after=(),
                    before_weight=row.weight,
                    flagged=row.flagged,
                )
            )
    change = (
        after.total - before.total if after.total is not None and before.total is not None else None
    )
    labels: tuple[str, ...] = ()
    if change is not None and after.instrument:
        if after.instrument in THRESHOLDS and after.total is not None and before.total is not None:
            summary = progress(
                after.instrument,
                [
                    (before.authored or "1970-01-01", before.total),
                    (after.authored or "1970-01-02", after.total),
                ],
            )
            labels = change_labels(summary.labels if summary else ())
    return Comparison(before=before, after=after, rows=tuple(rows), change=change, labels=labels)
