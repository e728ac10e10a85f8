"""Measurement-based care from the chart: each patient's totals per instrument, and how they moved.

Totals are read back from the store as Observations (whatever wrote them: hw-fhir's
own scoring or the EHR), found by the instrument's total code — LOINC where the
instrument has one (PHQ-9 44261-6, GAD-7 70274-6, PHQ-2 55758-7), else the
Questionnaire url as system and the total's linkId as code (PCL-5). Only asserted
Observations count (``final``, ``amended``, ``corrected``). The outcome labels
(response, remission, reliable change, deterioration) and their sources are in
:mod:`hw_fhir.scoring.mbc`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..assignment import reference
from ..errors import InvalidInput
from ..scoring import Progress, gad7, pcl5, phq2, phq9, progress
from ..scoring.instruments import SumInstrument
from ..scoring.mbc import THRESHOLDS
from ..store.base import Store, iter_all

__all__ = [
    "Measure",
    "MEASURES",
    "PROGRESS_OPERATION",
    "measure_history",
    "patient_progress",
    "measure_progress",
    "progress_parameters",
]

Json = dict[str, Any]
Value = int | float
#: Canonical of the ``$measure-progress`` operation (Patient instance level).
PROGRESS_OPERATION = "http://hw-fhir.org/fhir/OperationDefinition/Patient-measure-progress"
_ASSERTED = "final,amended,corrected"


@dataclass(frozen=True)
class Measure:
    """An instrument followed over time: its key, name and the codes of its total score."""

    key: str
    name: str
    total_codes: tuple[tuple[str, str], ...]

    @property
    def has_thresholds(self) -> bool:
        """True when the instrument has measurement-based-care thresholds."""
        return self.key in THRESHOLDS

    @property
    def remission_applies(self) -> bool:
        """True when the instrument defines a remission threshold."""
        rule = THRESHOLDS.get(self.key)
        return rule is not None and rule.remission_below is not None


def _measure(instrument: SumInstrument) -> Measure:
    codes: tuple[tuple[str, str], ...]
    if instrument.total_code is not None:
        codes = ((instrument.total_code.system, instrument.total_code.code),)
    else:
        codes = tuple((url, instrument.total_link_id) for url in sorted(instrument.urls))
    return Measure(instrument.key, instrument.name, codes)


#: The instruments whose totals are followed, by key.
MEASURES: Mapping[str, Measure] = {
    m.key: m
    for m in map(_measure, (phq9.INSTRUMENT, gad7.INSTRUMENT, phq2.INSTRUMENT, pcl5.INSTRUMENT))
}


def _measure_named(instrument: str) -> Measure:
    measure = MEASURES.get(instrument)
    if measure is None:
        raise InvalidInput(f"Unknown instrument {instrument!r}; known: {', '.join(MEASURES)}")
    return measure


def _value(obs: Mapping[str, Any]) -> Value | None:
    quantity = obs.get("valueQuantity") or {}
    value = quantity.get("value", obs.get("valueInteger"))
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _when(obs: Mapping[str, Any]) -> str | None:
    period = obs.get("effectivePeriod") or {}
    when = obs.get("effectiveDateTime") or obs.get("effectiveInstant") or period.get("start") \
        or obs.get("issued")
    if not isinstance(when, str):
        return None
    if len(when) in (4, 7):  # a partial date (year, year-month): its first day
        when += "-01-01" if len(when) == 4 else "-01"
    return when


def _order(when: str) -> datetime:
    moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def measure_history(store: Store, patient_ref: str, instrument: str) -> list[tuple[str, Value]]:
    """Return ``(effective date/time, total)`` of a patient's scores on an instrument, oldest first.

    Dates are FHIR ``dateTime`` strings as recorded. Raise InvalidInput for an unknown
    instrument or a malformed patient reference.
    """
    measure = _measure_named(instrument)
    patient = reference("Patient", patient_ref)
    codes = ",".join(f"{system}|{code}" for system, code in measure.total_codes)
    found = iter_all(store, "Observation", [("subject", patient), ("code", codes),
                                            ("status", _ASSERTED)])
    points = []
    for obs in found:
        when, value = _when(obs), _value(obs)
        if when is None or value is None:
            continue
        try:
            _order(when)
        except ValueError:
            continue  # not a FHIR dateTime: cannot be placed in time
        points.append((when, value))
    return sorted(points, key=lambda p: _order(p[0]))


def patient_progress(store: Store, patient_ref: str,
                     instruments: Iterable[str] | None = None) -> dict[str, Progress]:
    """Return baseline, latest, change and outcome labels per instrument the patient has scores on.

    ``instruments`` defaults to every instrument with measurement-based-care thresholds
    (PHQ-9, GAD-7, PCL-5); PHQ-2 is a screen and has none.
    """
    found = _summaries(store, patient_ref, instruments)
    return {key: summary for key, (summary, _) in found.items()}


def _summaries(store: Store, patient_ref: str, instruments: Iterable[str] | None,
               ) -> dict[str, tuple[Progress, list[tuple[str, Value]]]]:
    keys = list(instruments) if instruments is not None else [
        k for k, m in MEASURES.items() if m.has_thresholds]
    for key in keys:
        if not _measure_named(key).has_thresholds:
            raise InvalidInput(f"{key} has no measurement-based-care thresholds")
    out = {}
    for key in dict.fromkeys(keys):
        history = measure_history(store, patient_ref, key)
        summary = progress(key, history)
        if summary is not None:
            out[key] = (summary, history)
    return out


def measure_progress(store: Store, patient_ref: str,
                     instruments: Iterable[str] | None = None) -> Json:
    """Return a patient's ``$measure-progress`` Parameters (see :func:`progress_parameters`)."""
    found = _summaries(store, patient_ref, instruments)
    return progress_parameters(patient_ref, {k: s for k, (s, _) in found.items()},
                               {k: h for k, (_, h) in found.items()})


def _number(value: float) -> Value:
    return int(value) if float(value).is_integer() else round(value, 2)


def _point(name: str, when: Any, value: float) -> Json:
    return {"name": name, "part": [{"name": "date", "valueDateTime": str(when)},
                                   {"name": "value", "valueDecimal": _number(value)}]}


def _measure_parameter(summary: Progress, history: list[tuple[str, Value]] | None) -> Json:
    measure = MEASURES[summary.instrument]
    system, code = measure.total_codes[0]
    parts: list[Json] = [
        {"name": "instrument", "valueCode": summary.instrument},
        {"name": "code", "valueCoding": {"system": system, "code": code}},
        {"name": "count", "valueInteger": summary.count},
        _point("baseline", summary.baseline.when, summary.baseline.value),
        _point("latest", summary.latest.when, summary.latest.value),
        {"name": "change", "valueDecimal": _number(summary.change)},
    ]
    if summary.percent_change is not None:
        parts.append({"name": "percentChange", "valueDecimal": round(summary.percent_change, 1)})
    parts.append({"name": "response", "valueBoolean": summary.response})
    if measure.remission_applies:
        parts.append({"name": "remission", "valueBoolean": summary.remission})
    parts += [
        {"name": "reliableChange",
         "valueBoolean": summary.reliable_improvement or summary.deterioration},
        {"name": "reliableImprovement", "valueBoolean": summary.reliable_improvement},
        {"name": "deterioration", "valueBoolean": summary.deterioration},
    ]
    parts += [{"name": "label", "valueCode": label} for label in summary.labels]
    parts += [_point("point", when, value) for when, value in history or []]
    return {"name": "measure", "part": parts}


def progress_parameters(patient_ref: str, summaries: Mapping[str, Progress],
                        histories: Mapping[str, list[tuple[str, Value]]] | None = None) -> Json:
    """Return the ``$measure-progress`` result: Parameters with one ``measure`` per instrument.

    Each ``measure`` has parts ``instrument``, ``code`` (of the total), ``count``,
    ``baseline`` and ``latest`` (``date`` + ``value``), ``change``, ``percentChange``
    (when the baseline is not 0), ``response``, ``remission`` (instruments with a
    remission threshold), ``reliableChange``, ``reliableImprovement``,
    ``deterioration``, one ``label`` per outcome label and one ``point`` per score.
    """
    histories = histories or {}
    parameters: list[Json] = [{"name": "subject",
                               "valueReference": {"reference": reference("Patient", patient_ref)}}]
    parameters += [_measure_parameter(s, histories.get(k)) for k, s in summaries.items()]
    return {"resourceType": "Parameters", "parameter": parameters}
