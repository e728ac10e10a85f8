"""Charts as small, server-rendered SVG: scores over time and a completion calendar.

Each chart is a :class:`Chart`: the SVG text (``role="img"`` with a ``<title>`` and
``<desc>``), a one-paragraph text alternative and the data as table rows, so a page can
offer the numbers to screen readers and in print. No JavaScript, no external assets;
the SVG scales with its container (``viewBox``, ``width="100%"``).

* :func:`score_chart` — a measure's totals over time, the instrument's severity bands
  shaded behind the line, the remission and response thresholds drawn as labelled
  dashed lines.
* :func:`instrument_chart` — :func:`score_chart` with the bands and thresholds of a
  known instrument (PHQ-9, GAD-7, PHQ-2, PCL-5) filled in.
* :func:`completion_calendar` — one square per day over the last weeks (Monday to
  Sunday columns), coloured and marked by what happened to that day's homework.

Colours keep a 3:1 contrast with the white background for every mark that carries
meaning (WCAG 2.1 non-text contrast), and every mark has a shape or glyph as well as
a colour, so the charts also read in grey print and for colour-blind readers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape

from .scoring import gad7, pcl5, phq2, phq9
from .scoring.instruments import SumInstrument
from .scoring.mbc import THRESHOLDS

__all__ = [
    "Chart",
    "ScoreBand",
    "score_chart",
    "instrument_chart",
    "instrument_bands",
    "completion_calendar",
    "OUTCOME_STYLES",
    "BAND_FILLS",
]

When = date | datetime

#: Band fills from the least to the most severe (light tints: dark text stays readable).
BAND_FILLS: tuple[str, ...] = ("#e2f1e6", "#eef3d6", "#fcefd2", "#fbe0cf", "#f7d2d2")
_LINE = "#1f4e9a"
_AXIS = "#5b6475"
_TEXT = "#1d2330"
_REMISSION = "#1e6b3a"
_RESPONSE = "#6b3fa0"
_FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"

#: outcome → (label, fill, stroke, glyph, glyph colour), most important first.
OUTCOME_STYLES: dict[str, tuple[str, str, str, str, str]] = {
    "missed": ("Missed", "#b3261e", "#b3261e", "×", "#ffffff"),
    "overdue": ("Overdue", "#ffffff", "#b3261e", "!", "#b3261e"),
    "late": ("Done late", "#9a5b00", "#9a5b00", "✓", "#ffffff"),
    "on-time": ("Done on time", "#1e7b45", "#1e7b45", "✓", "#ffffff"),
    "upcoming": ("Due later", "#ffffff", "#6b7280", "", _TEXT),
}
_EMPTY = ("Nothing due", "#eef0f4", "#d5dae3", "", _TEXT)
_INSTRUMENTS: dict[str, SumInstrument] = {
    i.key: i for i in (phq9.INSTRUMENT, gad7.INSTRUMENT, phq2.INSTRUMENT, pcl5.INSTRUMENT)
}


@dataclass(frozen=True)
class ScoreBand:
    """A shaded score range ``low..high`` (inclusive) and its name."""

    low: float
    high: float
    label: str


@dataclass(frozen=True)
class Chart:
    """An SVG chart with its text alternative and its data as a table."""

    svg: str
    title: str
    summary: str
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()

    def __html__(self) -> str:
        """Return the SVG (templates may insert a Chart directly)."""
        return self.svg

    def __str__(self) -> str:
        return self.svg


# -- small helpers --------------------------------------------------------------------------


def _day(when: When) -> date:
    return when.date() if isinstance(when, datetime) else when


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _fmt(value: float) -> str:
    return f"{value:g}"


def _long(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


def _short(day: date, with_year: bool) -> str:
    return f"{day.day} {day:%b}" + (f" {day:%y}" if with_year else "")


def _text(
    x: float,
    y: float,
    content: str,
    *,
    size: int = 11,
    anchor: str = "start",
    fill: str = _TEXT,
    weight: str = "normal",
) -> str:
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{fill}" font-weight="{weight}">{escape(content)}</text>'
    )


def _svg(chart_id: str, width: int, height: int, title: str, summary: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'font-family="{_FONT}" style="max-width:{width}px">'
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-desc">{escape(summary)}</desc>' + "".join(body) + "</svg>"
    )


def _band_fill(index: int, count: int) -> str:
    if count <= 1:
        return BAND_FILLS[0]
    return BAND_FILLS[round(index * (len(BAND_FILLS) - 1) / (count - 1))]


def _band_of(value: float, bands: Sequence[ScoreBand]) -> ScoreBand | None:
    for band in bands:
        if band.low <= value <= band.high:
            return band
    return None


# -- scores over time -----------------------------------------------------------------------


def instrument_bands(instrument: str) -> tuple[ScoreBand, ...]:
    """Return the severity bands of a known instrument (``phq-9``...); empty when unknown."""
    found = _INSTRUMENTS.get(instrument)
    if found is None:
        return ()
    return tuple(ScoreBand(b.low, b.high, b.display) for b in found.bands)


def instrument_chart(
    instrument: str,
    points: Sequence[tuple[When, float]],
    *,
    title: str | None = None,
    chart_id: str | None = None,
) -> Chart:
    """Chart a known instrument's totals with its bands, remission and response thresholds.

    The response threshold is the instrument's response reduction below the baseline
    (the earliest score), drawn only when there is a non-zero baseline.
    """
    known = _INSTRUMENTS.get(instrument)
    rule = THRESHOLDS.get(instrument)
    ordered = sorted(points, key=lambda p: _day(p[0]))
    response_at = None
    if rule is not None and ordered and ordered[0][1] > 0:
        response_at = ordered[0][1] * (1 - rule.response_reduction)
    name = known.name if known else instrument.upper()
    return score_chart(
        ordered,
        title=title or f"{name} total score over time",
        bands=instrument_bands(instrument),
        y_max=float(known.bands[-1].high) if known else None,
        remission_below=rule.remission_below if rule else None,
        response_at=response_at,
        chart_id=chart_id or f"chart-{instrument}",
    )


def score_chart(
    points: Sequence[tuple[When, float]],
    *,
    title: str,
    bands: Sequence[ScoreBand] = (),
    y_max: float | None = None,
    remission_below: float | None = None,
    response_at: float | None = None,
    chart_id: str = "score-chart",
    width: int = 640,
    height: int = 210,
) -> Chart:
    """Return a line chart of scores over time over shaded bands, with threshold lines.

    ``points`` are ``(date or datetime, score)`` pairs in any order. ``y_max`` defaults
    to the top of the last band (or the highest score). ``remission_below`` draws
    "remission: below N"; ``response_at`` draws "response: N or lower".
    """
    ordered = sorted(((_day(w), float(v)) for w, v in points), key=lambda p: p[0])
    top = (
        y_max if y_max is not None else max([b.high for b in bands] + [v for _, v in ordered] + [1])
    )
    left, right, upper, lower = 34, 150, 10, 26
    plot_w, plot_h = width - left - right, height - upper - lower

    def y(value: float) -> float:
        return upper + plot_h * (1 - min(max(value, 0.0), top) / top)

    first = ordered[0][0] if ordered else date.today()
    last = ordered[-1][0] if ordered else first
    span = max((last - first).days, 14)
    pad = max(span * 0.04, 1.0)
    start = first - timedelta(days=pad)
    total_days = span + 2 * pad

    def x(day: date) -> float:
        return left + plot_w * ((day - start).days / total_days)

    body: list[str] = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    for index, band in enumerate(bands):
        y_top, y_bottom = y(min(band.high + 0.5, top)), y(max(band.low - 0.5, 0))
        body.append(
            f'<rect class="band" x="{left}" y="{_num(y_top)}" width="{plot_w}" '
            f'height="{_num(y_bottom - y_top)}" fill="{_band_fill(index, len(bands))}">'
            f"<title>{escape(band.label)} ({_fmt(band.low)}–{_fmt(band.high)})</title></rect>"
        )
        body.append(
            _text(
                left + plot_w + 6,
                (y_top + y_bottom) / 2 + 4,
                f"{band.label} {_fmt(band.low)}–{_fmt(band.high)}",
                size=10,
            )
        )
    body.append(
        f'<line x1="{left}" y1="{upper + plot_h}" x2="{left + plot_w}" y2="{upper + plot_h}" '
        f'stroke="{_AXIS}" stroke-width="1"/>'
    )
    body.append(
        f'<line x1="{left}" y1="{upper}" x2="{left}" y2="{upper + plot_h}" '
        f'stroke="{_AXIS}" stroke-width="1"/>'
    )
    ticks = sorted({0.0, float(top), *(float(b.low) for b in bands if 0 < b.low < top)})
    for tick in ticks:
        body.append(_text(left - 5, y(tick) + 4, _fmt(tick), size=10, anchor="end", fill=_AXIS))
    with_year = first.year != last.year
    count = min(5, max(len({d for d, _ in ordered}), 2))
    for n in range(count):
        day = first + timedelta(days=round(span * n / (count - 1)))
        body.append(
            f'<line x1="{_num(x(day))}" y1="{upper + plot_h}" x2="{_num(x(day))}" '
            f'y2="{upper + plot_h + 4}" stroke="{_AXIS}"/>'
        )
        body.append(
            _text(x(day), height - 8, _short(day, with_year), size=10, anchor="middle", fill=_AXIS)
        )
    # the labels sit on the far sides of the two lines (remission under its line, response
    # over its own when response is the higher line, as usual); a low first score puts the
    # response line under the remission line, and the labels swap sides so they never overlap
    low_response = (response_at is not None and remission_below is not None
                    and response_at < remission_below)
    placed: list[tuple[float, float, float, float]] = []  # label boxes drawn so far
    for value, label, colour, dash, cls, dy in (
        (
            remission_below,
            f"Remission: below {_fmt(remission_below or 0)}",
            _REMISSION,
            "6 3",
            "threshold-remission",
            -4 if low_response else 12,
        ),
        (
            response_at,
            f"Response: {_fmt(round(response_at or 0, 1))} or lower",
            _RESPONSE,
            "2 3",
            "threshold-response",
            12 if low_response else -4,
        ),
    ):
        if value is None or not 0 <= value <= top:
            continue
        body.append(
            f'<line class="{cls}" x1="{left}" y1="{_num(y(value))}" x2="{left + plot_w}" '
            f'y2="{_num(y(value))}" stroke="{colour}" stroke-width="1.6" '
            f'stroke-dasharray="{dash}"><title>{escape(label)}</title></line>'
        )
        lx, ly, anchor, box = _label_spot(label, y(value), dy, left, left + plot_w,
                                          [(x(d), y(v)) for d, v in ordered], placed)
        placed.append(box)
        body.append(_text(lx, ly, label, size=10, anchor=anchor, fill=colour, weight="600"))
    if len(ordered) > 1:
        path = " ".join(f"{_num(x(d))},{_num(y(v))}" for d, v in ordered)
        body.append(
            f'<polyline class="series" points="{path}" fill="none" stroke="{_LINE}" '
            f'stroke-width="2.2" stroke-linejoin="round"/>'
        )
    rows: list[tuple[str, ...]] = []
    for day, value in ordered:
        found = _band_of(value, bands)
        band_name = found.label if found else ""
        rows.append((day.isoformat(), _fmt(value), band_name))
        tip = f"{_long(day)}: {_fmt(value)}" + (f" ({band_name})" if band_name else "")
        body.append(
            f'<circle class="point" cx="{_num(x(day))}" cy="{_num(y(value))}" r="4" '
            f'fill="{_LINE}" stroke="#ffffff" stroke-width="1.5" '
            f'data-value="{_fmt(value)}" data-date="{day.isoformat()}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    if not ordered:
        body.append(
            _text(
                left + plot_w / 2,
                upper + plot_h / 2,
                "No scores yet",
                size=12,
                anchor="middle",
                fill=_AXIS,
            )
        )
    summary = _score_summary(title, ordered, bands, remission_below, response_at)
    return Chart(
        svg=_svg(chart_id, width, height, title, summary, body),
        title=title,
        summary=summary,
        headers=("Date", "Score", "Severity"),
        rows=tuple(rows),
    )


def _label_spot(label: str, line_y: float, dy: float, x0: float, x1: float,
                points: list[tuple[float, float]],
                taken: list[tuple[float, float, float, float]]
                ) -> tuple[float, float, str, tuple[float, float, float, float]]:
    """Where a threshold label goes: its side of the line, at the left end, unless a score (a
    point, or the line between two) or another label is there; then the right end, then the
    other side of the line. Return ``(x, y, anchor, box)`` (box: x0, y0, x1, y1)."""
    wide = 6.0 * len(label)  # 10 px bold, a generous average glyph width

    def box(at_x: float, at_y: float, anchor: str) -> tuple[float, float, float, float]:
        start = at_x if anchor == "start" else at_x - wide
        return (start - 2, at_y - 10, start + wide + 2, at_y + 3)

    def clear(b: tuple[float, float, float, float]) -> bool:
        for px, py in points:
            if b[0] - 5 <= px <= b[2] + 5 and b[1] - 5 <= py <= b[3] + 5:
                return False
        for (ax, ay), (bx, by) in zip(points, points[1:]):
            lo, hi = max(ax, b[0]), min(bx, b[2])
            if lo > hi or bx == ax:
                continue
            ends = [ay + (by - ay) * (edge - ax) / (bx - ax) for edge in (lo, hi)]
            if min(ends) <= b[3] and max(ends) >= b[1]:
                return False
        return not any(b[0] < t[2] and t[0] < b[2] and b[1] < t[3] and t[1] < b[3]
                       for t in taken)

    spots = [(x0 + 6, line_y + dy, "start"), (x1 - 6, line_y + dy, "end"),
             (x0 + 6, line_y + (-4 if dy > 0 else 12), "start"),
             (x1 - 6, line_y + (-4 if dy > 0 else 12), "end")]
    for at_x, at_y, anchor in spots:
        if clear(box(at_x, at_y, anchor)):
            return at_x, at_y, anchor, box(at_x, at_y, anchor)
    # scores along the line at both ends (e.g. 6, 5, 5, 5): the usual place; each point
    # still carries its value in its tooltip and the table under the chart
    at_x, at_y, anchor = spots[0]
    return at_x, at_y, anchor, box(at_x, at_y, anchor)


def _score_summary(
    title: str,
    ordered: list[tuple[date, float]],
    bands: Sequence[ScoreBand],
    remission_below: float | None,
    response_at: float | None,
) -> str:
    if not ordered:
        return f"{title}: no scores yet."

    def described(value: float) -> str:
        band = _band_of(value, bands)
        return f"{_fmt(value)} ({band.label.lower()})" if band else _fmt(value)

    first_day, baseline = ordered[0]
    last_day, latest = ordered[-1]
    if len(ordered) == 1:
        text = f"{title}: one score, {described(latest)} on {_long(last_day)}."
    else:
        text = (
            f"{title}: {len(ordered)} scores from {_long(first_day)} to {_long(last_day)}. "
            f"First {described(baseline)}, latest {described(latest)}, "
            f"change {latest - baseline:+g}."
        )
    if remission_below is not None:
        text += f" Remission threshold: below {_fmt(remission_below)}."
    if response_at is not None:
        text += (
            f" Response threshold: {_fmt(round(response_at, 1))} or lower (half the first score)."
        )
    return text


# -- completion calendar --------------------------------------------------------------------


def _worst(outcomes: Iterable[str]) -> str | None:
    found = set(outcomes)
    for outcome in OUTCOME_STYLES:
        if outcome in found:
            return outcome
    return None


def completion_calendar(
    days: Sequence[tuple[When, str]],
    *,
    end: date,
    weeks: int = 8,
    title: str = "Homework over the last weeks",
    chart_id: str = "completion-calendar",
    today: date | None = None,
) -> Chart:
    """Return a calendar of ``weeks`` weeks ending with the week of ``end``.

    ``today`` (when given) is outlined, so days still to come stand apart.

    ``days`` holds ``(due date, outcome)`` pairs (outcome: ``on-time``, ``late``,
    ``missed``, ``overdue``, ``upcoming``; others are ignored). A day with several
    Tasks shows the most important outcome (missed first) and lists all in its tooltip.
    """
    first = end - timedelta(days=end.weekday()) - timedelta(weeks=weeks - 1)
    last = first + timedelta(weeks=weeks) - timedelta(days=1)
    by_day: dict[date, list[str]] = {}
    for when, outcome in days:
        day = _day(when)
        if first <= day <= last and outcome in OUTCOME_STYLES:
            by_day.setdefault(day, []).append(outcome)
    cell, gap, left, upper = 20, 3, 30, 18
    legend_y = upper + 7 * (cell + gap) + 14
    width = max(left + weeks * (cell + gap) + 8, 470)
    height = legend_y + 14
    body: list[str] = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    for row, name in ((0, "Mon"), (2, "Wed"), (4, "Fri"), (6, "Sun")):
        body.append(
            _text(left - 4, upper + row * (cell + gap) + 13, name, size=9, anchor="end", fill=_AXIS)
        )
    shown_month = None
    for week in range(weeks):
        monday = first + timedelta(weeks=week)
        if monday.month != shown_month:
            shown_month = monday.month
            body.append(
                _text(left + week * (cell + gap), upper - 6, f"{monday:%b}", size=9, fill=_AXIS)
            )
        for weekday in range(7):
            day = monday + timedelta(days=weekday)
            outcomes = by_day.get(day, [])
            worst = _worst(outcomes)
            label, fill, stroke, glyph, glyph_fill = OUTCOME_STYLES[worst] if worst else _EMPTY
            cx, cy = left + week * (cell + gap), upper + weekday * (cell + gap)
            tip = f"{day:%a} {_long(day)}: " + (
                ", ".join(OUTCOME_STYLES[o][0].lower() for o in outcomes)
                if outcomes
                else "nothing due"
            )
            if day > end:
                fill, stroke = "#ffffff", "#eef0f4"
            width_ = "1.5"
            if day == today:
                stroke, width_ = _TEXT, "2.5"
                tip = "Today, " + tip
            body.append(
                f'<g class="day" data-date="{day.isoformat()}" data-outcome="{worst or ""}">'
                f'<rect x="{cx}" y="{cy}" width="{cell}" height="{cell}" rx="3" '
                f'fill="{fill}" stroke="{stroke}" stroke-width="{width_}"/>'
                + (
                    _text(
                        cx + cell / 2,
                        cy + 14,
                        glyph,
                        size=12,
                        anchor="middle",
                        fill=glyph_fill,
                        weight="700",
                    )
                    if glyph
                    else ""
                )
                + f"<title>{escape(tip)}</title></g>"
            )
    x = left
    for outcome in ("on-time", "late", "missed", "overdue", "upcoming"):
        label, fill, stroke, glyph, glyph_fill = OUTCOME_STYLES[outcome]
        body.append(
            f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" rx="2" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
        )
        body.append(_text(x + 16, legend_y, label, size=10, fill=_TEXT))
        x += 16 + 6 * len(label) + 14
    counts = {o: sum(v.count(o) for v in by_day.values()) for o in OUTCOME_STYLES}
    summary = _calendar_summary(title, first, min(last, end), counts)
    rows = tuple(
        (day.isoformat(), ", ".join(OUTCOME_STYLES[o][0] for o in outcomes))
        for day, outcomes in sorted(by_day.items())
    )
    return Chart(
        svg=_svg(chart_id, width, height, title, summary, body),
        title=title,
        summary=summary,
        headers=("Due date", "What happened"),
        rows=rows,
    )


def _calendar_summary(title: str, first: date, last: date, counts: dict[str, int]) -> str:
    parts = [f"{counts[o]} {OUTCOME_STYLES[o][0].lower()}" for o in OUTCOME_STYLES if counts[o]]
    if not parts:
        return f"{title}, {_long(first)} to {_long(last)}: nothing was due."
    return f"{title}, {_long(first)} to {_long(last)}: " + ", ".join(parts) + "."
