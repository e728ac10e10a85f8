"""Measure scores as the review screens read them: histories, severity bands, a response's total.

The followed measures (:data:`FOLLOWED_MEASURES`) are the instruments whose totals the
dashboard charts and the panel watches for deterioration. Their histories come from the
stored total Observations (the ones :func:`hw_fhir.outcomes.measure_history` reads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ..assignment import parse_instant
from ..items import walk_items
from ..outcomes import MEASURES
from ..scoring import gad7, pcl5, phq2, phq9
from ..scoring.instruments import band_for
from ..scoring.items import answer_value
from ..store.base import Store, iter_all

__all__ = ["FOLLOWED_MEASURES", "measure_histories", "band_name", "response_total"]

#: The instruments followed over time, in the order the dashboard shows them.
FOLLOWED_MEASURES = ("phq-9", "gad-7", "pcl-5", "phq-2")
_ASSERTED = ("final", "amended", "corrected")


def measure_histories(
    store: Store, patient_refs: Sequence[str]
) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """Return patient → instrument → ``(effective, total)`` points, oldest first.

    One Observation search for every instrument's total code per 50 patients (asserted
    Observations with a value and a time).
    """
    by_code = {
        (system, code): key
        for key in FOLLOWED_MEASURES
        for system, code in MEASURES[key].total_codes
    }
    codes = ",".join(f"{system}|{code}" for system, code in by_code)
    out: dict[str, dict[str, list[tuple[datetime, str, float]]]] = {}
    refs = sorted(set(patient_refs))
    found: list[dict[str, Any]] = []
    for start in range(0, len(refs), 50):
        found += iter_all(
            store, "Observation", [("subject", ",".join(refs[start : start + 50])), ("code", codes)]
        )
    for obs in found:
        subject = (obs.get("subject") or {}).get("reference")
        if obs.get("status") not in _ASSERTED or not isinstance(subject, str):
            continue
        key = next(
            (
                by_code[(c.get("system"), c.get("code"))]
                for c in (obs.get("code") or {}).get("coding") or []
                if (c.get("system"), c.get("code")) in by_code
            ),
            None,
        )
        quantity = obs.get("valueQuantity") or {}
        value = quantity.get("value", obs.get("valueInteger"))
        when = (
            obs.get("effectiveDateTime")
            or (obs.get("effectivePeriod") or {}).get("start")
            or obs.get("issued")
        )
        if (
            key is None
            or isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not isinstance(when, str)
            or len(when) < 10
        ):
            continue
        try:
            moment = (
                parse_instant(when)
                if "T" in when
                else datetime.fromisoformat(when[:10]).replace(tzinfo=timezone.utc)
            )
        except ValueError:
            continue
        out.setdefault(subject, {}).setdefault(key, []).append((moment, when, float(value)))
    return {
        subject: {
            key: [(when, value) for _, when, value in sorted(points, key=lambda p: p[0])]
            for key, points in series.items()
        }
        for subject, series in out.items()
    }


def band_name(instrument: str, value: float) -> str | None:
    """Return the severity band of an instrument's total (``Moderate``), None when unknown."""
    known = {i.key: i for i in (phq9.INSTRUMENT, gad7.INSTRUMENT, phq2.INSTRUMENT, pcl5.INSTRUMENT)}
    found = known.get(instrument)
    band = band_for(found, int(round(value))) if found else None
    return band.display if band else None


def response_total(response: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """Return a stored response's calculated total (filled in by scoring) and its band."""
    url = (response.get("questionnaire") or "").split("|")[0]
    key = url.rsplit("/", 1)[-1]
    if key not in FOLLOWED_MEASURES:
        return None, None
    total_ids = {f"{key.replace('-', '')}-total"}
    for item in walk_items(response.get("item"), answers=True):
        if item.get("linkId") in total_ids:
            for answer in item.get("answer") or []:
                found = answer_value(answer)
                if found and isinstance(found[1], (int, float)):
                    return float(found[1]), band_name(key, float(found[1]))
                if (
                    found
                    and isinstance(found[1], dict)
                    and isinstance(found[1].get("value"), (int, float))
                ):
                    return float(found[1]["value"]), band_name(key, float(found[1]["value"]))
    return None, None
