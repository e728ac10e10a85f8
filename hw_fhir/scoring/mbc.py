"""Measurement-based care: how one patient's scores on one instrument moved.

Given a time series of totals, report the baseline (earliest), the latest,
the change, and the labels clinicians use:

* ``response`` — the latest score is at least 50 % lower than a non-zero
  baseline (the usual definition of treatment response, e.g. McMillan et al.
  2010, below);
* ``remission`` — the latest score is below the remission threshold
  (PHQ-9 < 5: Kroenke et al. J Gen Intern Med 2001;16:606-13; GAD-7 < 5:
  Spitzer et al. Arch Intern Med 2006;166:1092-7, the "minimal" band);
* ``reliable-improvement`` / ``deterioration`` — the score fell / rose by at
  least the instrument's reliable change: PHQ-9 ≥ 6 points (McMillan D,
  Gilbody S, Richards D. Defining successful treatment outcome in depression
  using the PHQ-9. J Affect Disord 2010;127:122-9) and GAD-7 ≥ 4 points, the
  thresholds of the NHS Talking Therapies (formerly IAPT) Manual;
  PCL-5 ≥ 10 points (National Center for PTSD, "PTSD Checklist for DSM-5":
  a 10-20 point change is clinically significant); PCL-5 has no remission
  threshold;
* ``no-reliable-change`` when neither.

Remission and response need at least two scores (a baseline and a later one).

:func:`worsening` says why a patient needs attention: the latest score rose by at least the
reliable change since the first score (a steady rise of small steps) and/or since the
previous one (a jump back up after an improvement).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from ..errors import InvalidInput

__all__ = ["Thresholds", "THRESHOLDS", "Point", "Progress", "Rise", "progress", "worsening"]

When = date | datetime | str


@dataclass(frozen=True)
class Thresholds:
    """An instrument's reliable-change and remission thresholds."""

    reliable_change: float
    remission_below: float | None = None
    response_reduction: float = 0.5


THRESHOLDS: dict[str, Thresholds] = {
    "phq-9": Thresholds(reliable_change=6, remission_below=5),
    "gad-7": Thresholds(reliable_change=4, remission_below=5),
    "pcl-5": Thresholds(reliable_change=10),
}


@dataclass(frozen=True)
class Point:
    """One score at one time."""

    when: When
    value: float


@dataclass(frozen=True)
class Progress:
    """Baseline, latest, change and outcome labels for one instrument."""

    instrument: str
    baseline: Point
    latest: Point
    count: int
    change: float
    percent_change: float | None
    labels: tuple[str, ...]

    @property
    def response(self) -> bool:
        """At least the response reduction from baseline."""
        return "response" in self.labels

    @property
    def remission(self) -> bool:
        """Below the remission threshold at the latest score."""
        return "remission" in self.labels

    @property
    def reliable_improvement(self) -> bool:
        """Improved by at least the reliable change."""
        return "reliable-improvement" in self.labels

    @property
    def deterioration(self) -> bool:
        """Worsened by at least the reliable change."""
        return "deterioration" in self.labels


def _rule_and_points(instrument: str, series: Iterable[Point | tuple[When, float]],
                     thresholds: Thresholds | None) -> tuple[Thresholds, list[Point]]:
    """The instrument's thresholds (InvalidInput when none) and the series as sorted Points."""
    rule = thresholds or THRESHOLDS.get(instrument)
    if rule is None:
        raise InvalidInput(f"No measurement-based-care thresholds for {instrument!r}")
    points = sorted(
        (p if isinstance(p, Point) else Point(p[0], float(p[1])) for p in series),
        key=lambda p: _sort_key(p.when),
    )
    return rule, points


def _sort_key(when: When) -> datetime:
    if isinstance(when, datetime):
        return when.replace(tzinfo=None) if when.tzinfo is None else when.astimezone().replace(tzinfo=None)
    if isinstance(when, date):
        return datetime(when.year, when.month, when.day)
    try:
        return _sort_key(datetime.fromisoformat(when.replace("Z", "+00:00")))
    except ValueError:
        pass
    try:
        return _sort_key(date.fromisoformat(when))
    except ValueError as exc:
        raise InvalidInput(f"{when!r} is not an ISO date or dateTime") from exc


def progress(
    instrument: str,
    series: Iterable[tuple[When, float] | Point],
    thresholds: Thresholds | None = None,
) -> Progress | None:
    """Summarise a time series of totals for ``instrument`` (``"phq-9"``, ``"gad-7"``...).

    ``series`` holds ``(date, total)`` pairs in any order. Return None for an
    empty series. Raise :class:`InvalidInput` for an instrument with no known
    thresholds (pass ``thresholds`` for a vendor instrument).
    """
    rule, points = _rule_and_points(instrument, series, thresholds)
    if not points:
        return None
    baseline, latest = points[0], points[-1]
    change = latest.value - baseline.value
    percent = change / baseline.value * 100 if baseline.value else None
    labels: list[str] = []
    if len(points) > 1:
        if baseline.value > 0 and -change >= rule.response_reduction * baseline.value:
            labels.append("response")
        if rule.remission_below is not None and latest.value < rule.remission_below:
            labels.append("remission")
    if -change >= rule.reliable_change:
        labels.append("reliable-improvement")
    elif change >= rule.reliable_change:
        labels.append("deterioration")
    elif len(points) > 1:
        labels.append("no-reliable-change")
    return Progress(
        instrument=instrument,
        baseline=baseline,
        latest=latest,
        count=len(points),
        change=change,
        percent_change=percent,
        labels=tuple(labels),
    )


@dataclass(frozen=True)
class Rise:
    """A reliable rise of the latest score: ``since`` ``first`` or ``previous`` score ``point``."""

    instrument: str
    since: str  # "first" | "previous"
    rise: float
    point: Point
    latest: Point


def worsening(
    instrument: str,
    series: Iterable[tuple[When, float] | Point],
    thresholds: Thresholds | None = None,
) -> tuple[Rise, ...]:
    """Return the reliable rises of the latest score: since the first score, since the previous.

    Each comparison counts when the latest score is at least the instrument's reliable
    change above that score (PHQ-9 6, GAD-7 4, PCL-5 10: :data:`THRESHOLDS`). The first
    score's rise comes first; the previous score's is given too only when it is another
    score (three or more). Raise :class:`InvalidInput` for an instrument with no thresholds.
    """
    rule, points = _rule_and_points(instrument, series, thresholds)
    if len(points) < 2:
        return ()
    latest = points[-1]
    found = []
    for since, point in (("first", points[0]), ("previous", points[-2])):
        if since == "previous" and len(points) < 3:
            break
        rise = latest.value - point.value
        if rise >= rule.reliable_change:
            found.append(Rise(instrument, since, rise, point, latest))
    return tuple(found)
