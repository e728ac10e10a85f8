"""Scores since a session: each measure's latest value against the one before
(:class:`MeasureChange`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..assignment import parse_instant
from ..store.base import Store, iter_all


@dataclass(frozen=True)
class MeasureChange:
    """A score (Observation code) before the session date and its latest value since."""

    code: str
    display: str | None
    before: float | None
    latest: float | None
    unit: str | None
    count_since: int

    @property
    def change(self) -> float | None:
        """latest − before, when both are known."""
        if self.before is None or self.latest is None:
            return None
        return self.latest - self.before


def _observation_value(observation: Mapping[str, Any]) -> tuple[float, str | None] | None:
    quantity = observation.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), (int, float)):
        return float(quantity["value"]), quantity.get("unit") or quantity.get("code")
    if isinstance(observation.get("valueInteger"), int):
        return float(observation["valueInteger"]), None
    return None


def measure_changes(store: Store, patient: str, since: datetime) -> list[MeasureChange]:
    """Return each survey score of the patient with a value since ``since``, by code."""
    observations = iter_all(
        store,
        "Observation",
        [
            ("patient", patient),
            ("category", "http://terminology.hl7.org/CodeSystem/observation-category|survey"),
        ],
    )
    series: dict[str, list[tuple[datetime, float, str | None, str | None]]] = {}
    for observation in observations:
        if observation.get("status") in ("cancelled", "entered-in-error"):
            continue
        value = _observation_value(observation)
        when = observation.get("effectiveDateTime") or observation.get("issued")
        codings = (observation.get("code") or {}).get("coding") or []
        if value is None or not when or not codings:
            continue
        code = f"{codings[0].get('system', '')}|{codings[0].get('code', '')}"
        display = (observation.get("code") or {}).get("text") or codings[0].get("display")
        series.setdefault(code, []).append((parse_instant(when), value[0], value[1], display))
    changes = []
    for code, points in sorted(series.items()):
        points.sort(key=lambda p: p[0])
        before = [p for p in points if p[0] < since]
        after = [p for p in points if p[0] >= since]
        if not after:
            continue
        latest = after[-1]
        changes.append(
            MeasureChange(
                code=code,
                display=latest[3],
                before=before[-1][1] if before else None,
                latest=latest[1],
                unit=latest[2],
                count_since=len(after),
            )
        )
    return changes
