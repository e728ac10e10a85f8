"""The SVG charts: well-formed, accessible, bands and thresholds where the numbers say."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta, timezone

import pytest

from hw_fhir.charts import (
    OUTCOME_STYLES,
    ScoreBand,
    completion_calendar,
    instrument_bands,
    instrument_chart,
    score_chart,
)

SVG = "{http://www.w3.org/2000/svg}"


def _tree(chart):  # noqa: ANN001, ANN202
    return ET.fromstring(chart.svg)


def _y(root, value_attr: str):  # noqa: ANN001, ANN202
    return {c.get("data-value"): float(c.get("cy")) for c in root.iter(f"{SVG}circle")}


def test_score_chart_is_well_formed_svg_with_title_and_description() -> None:
    chart = score_chart(
        [(date(2026, 3, 1), 18), (date(2026, 3, 15), 9)],
        title="PHQ-9 total",
        bands=[ScoreBand(0, 9, "Low"), ScoreBand(10, 27, "High")],
        y_max=27,
        chart_id="c1",
    )
    root = _tree(chart)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-title c1-desc"
    assert root.find(f"{SVG}title").text == "PHQ-9 total"
    assert root.find(f"{SVG}desc").text == chart.summary
    assert chart.__html__() == chart.svg


def test_points_are_placed_by_value_and_in_date_order() -> None:
    points = [(date(2026, 3, 29), 4), (date(2026, 3, 1), 20), (date(2026, 3, 15), 12)]
    root = _tree(score_chart(points, title="t", y_max=27))
    circles = list(root.iter(f"{SVG}circle"))
    assert [c.get("data-date") for c in circles] == ["2026-03-01", "2026-03-15", "2026-03-29"]
    xs = [float(c.get("cx")) for c in circles]
    ys = [float(c.get("cy")) for c in circles]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert ys[0] < ys[1] < ys[2]  # a higher score is drawn higher (smaller y)
    # equal spacing in time gives equal spacing on the axis
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.2)
    polyline = root.find(f".//{SVG}polyline")
    assert polyline is not None and len(polyline.get("points").split()) == 3


def test_bands_are_shaded_from_low_to_high_severity() -> None:
    chart = instrument_chart("phq-9", [(date(2026, 1, 5), 14)])
    root = _tree(chart)
    bands = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "band"]
    assert [b.find(f"{SVG}title").text for b in bands] == [
        "Minimal (0–4)",
        "Mild (5–9)",
        "Moderate (10–14)",
        "Moderately severe (15–19)",
        "Severe (20–27)",
    ]
    tops = [float(b.get("y")) for b in bands]
    assert tops == sorted(tops, reverse=True)  # severe band on top
    fills = [b.get("fill") for b in bands]
    assert len(set(fills)) == 5
    assert chart.rows == (("2026-01-05", "14", "Moderate"),)


def test_thresholds_are_drawn_at_their_scores() -> None:
    chart = instrument_chart("phq-9", [(date(2026, 1, 5), 18), (date(2026, 2, 5), 11)])
    root = _tree(chart)
    lines = {
        ln.get("class"): float(ln.get("y1")) for ln in root.iter(f"{SVG}line") if ln.get("class")
    }
    circles = {c.get("data-value"): float(c.get("cy")) for c in root.iter(f"{SVG}circle")}
    # remission below 5, response at half of the baseline 18 = 9
    assert lines["threshold-remission"] > lines["threshold-response"] > circles["11"]
    span = circles["11"] - circles["18"]  # 7 points
    assert lines["threshold-response"] - circles["11"] == pytest.approx(span * 2 / 7, abs=0.2)
    assert "Remission threshold: below 5" in chart.summary
    assert "Response threshold: 9 or lower" in chart.summary
    assert "First 18 (moderately severe), latest 11 (moderate), change -7" in chart.summary


@pytest.mark.parametrize("first", [5, 6, 7, 9, 10, 12, 18, 27])
def test_threshold_labels_never_overlap(first: int) -> None:
    """A low first score puts the response line under the remission line (first 5: response
    2.5, remission 5): the two labels must still be apart, whichever line is higher."""
    chart = instrument_chart("phq-9", [(date(2026, 1, 5), first), (date(2026, 2, 5), 19)])
    labels = {t.text.split(":")[0]: float(t.get("y")) for t in _tree(chart).iter(f"{SVG}text")
              if (t.text or "").startswith(("Remission:", "Response:"))}
    assert set(labels) == {"Remission", "Response"}
    assert abs(labels["Remission"] - labels["Response"]) >= 10  # font size 10


@pytest.mark.parametrize("scores", [
    [5, 19], [5, 4, 3], [4, 5, 6, 5], [9, 5, 4], [18, 5, 4, 5], [5, 5, 6], [27, 20, 4],
    [10, 5], [3, 2, 4, 3],
])
def test_no_score_is_drawn_over_a_threshold_label(scores: list[int]) -> None:
    """A first (or last) score at the threshold sat right under "Remission: below 5": a label
    moves to the other end or the other side of its line when a score is in its way."""
    points = [(date(2026, 1, 5) + timedelta(days=7 * n), v) for n, v in enumerate(scores)]
    root = _tree(instrument_chart("phq-9", points))
    dots = [(float(c.get("cx")), float(c.get("cy"))) for c in root.iter(f"{SVG}circle")]
    boxes = []
    for t in root.iter(f"{SVG}text"):
        if not (t.text or "").startswith(("Remission:", "Response:")):
            continue
        tx, ty, wide = float(t.get("x")), float(t.get("y")), 5.0 * len(t.text)  # 10 px bold
        x0 = tx if t.get("text-anchor") == "start" else tx - wide
        boxes.append((t.text, x0, ty - 8, x0 + wide, ty + 1))
    assert boxes
    for text, x0, y0, x1, y1 in boxes:
        for cx, cy in dots:  # a point: r=4
            assert not (x0 - 4 <= cx <= x1 + 4 and y0 - 4 <= cy <= y1 + 4), (text, cx, cy)
        for (ax, ay), (bx, by) in zip(dots, dots[1:]):  # the line between two points
            lo, hi = max(ax, x0), min(bx, x1)
            if lo <= hi:
                ends = [ay + (by - ay) * (e - ax) / (bx - ax) for e in (lo, hi)]
                assert not (min(ends) <= y1 and max(ends) >= y0), (text, ax, bx)
    if len(boxes) == 2:
        (_, a0, b0, a1, b1), (_, c0, d0, c1, d1) = boxes
        assert not (a0 < c1 and c0 < a1 and b0 < d1 and d0 < b1)  # the labels apart


def test_pcl5_has_no_remission_line_and_no_response_line_without_a_baseline() -> None:
    root = _tree(instrument_chart("pcl-5", [(date(2026, 1, 5), 44)]))
    classes = {ln.get("class") for ln in root.iter(f"{SVG}line")}
    assert "threshold-remission" not in classes
    assert "threshold-response" in classes
    zero = _tree(instrument_chart("gad-7", [(date(2026, 1, 5), 0), (date(2026, 1, 20), 3)]))
    assert "threshold-response" not in {ln.get("class") for ln in zero.iter(f"{SVG}line")}


def test_empty_chart_says_so() -> None:
    chart = score_chart([], title="GAD-7", bands=instrument_bands("gad-7"))
    assert "No scores yet" in chart.svg
    assert chart.summary == "GAD-7: no scores yet."
    _tree(chart)


def test_text_is_escaped() -> None:
    chart = score_chart(
        [(date(2026, 1, 1), 3)], title="<script>x</script> & co", bands=[ScoreBand(0, 5, "A<b")]
    )
    root = _tree(chart)
    assert "<script>" not in chart.svg
    assert root.find(f"{SVG}title").text == "<script>x</script> & co"


def test_instrument_bands_of_known_and_unknown_instruments() -> None:
    assert [b.label for b in instrument_bands("gad-7")] == ["Minimal", "Mild", "Moderate", "Severe"]
    assert instrument_bands("nope") == ()


def test_datetimes_and_dates_mix() -> None:
    moment = datetime(2026, 3, 3, 22, 0, tzinfo=timezone.utc)
    chart = score_chart([(moment, 5), (date(2026, 3, 1), 7)], title="t", y_max=10)
    assert [r[0] for r in chart.rows] == ["2026-03-01", "2026-03-03"]


# -- completion calendar ---------------------------------------------------------------------


def test_calendar_has_one_cell_per_day_and_marks_outcomes() -> None:
    end = date(2026, 3, 18)  # a Wednesday
    days = [
        (date(2026, 3, 2), "on-time"),
        (date(2026, 3, 4), "missed"),
        (date(2026, 3, 4), "on-time"),
        (date(2026, 3, 10), "late"),
        (date(2026, 3, 18), "overdue"),
        (date(2026, 3, 20), "upcoming"),
        (date(2025, 1, 1), "missed"),
        (date(2026, 3, 11), "cancelled"),
    ]
    chart = completion_calendar(days, end=end, weeks=3)
    root = _tree(chart)
    cells = {g.get("data-date"): g.get("data-outcome") for g in root.iter(f"{SVG}g")}
    assert len(cells) == 21
    assert min(cells) == "2026-03-02" and max(cells) == "2026-03-22"  # Monday to Sunday
    assert cells["2026-03-04"] == "missed"  # the most important outcome of the day wins
    assert cells["2026-03-02"] == "on-time" and cells["2026-03-10"] == "late"
    assert cells["2026-03-18"] == "overdue" and cells["2026-03-20"] == "upcoming"
    assert cells["2026-03-11"] == ""  # cancelled homework is not shown
    assert "2 done on time" in chart.summary and "1 missed" in chart.summary
    assert "1 done late" in chart.summary and "1 overdue" in chart.summary
    assert ("2026-03-04", "Missed, Done on time") in chart.rows


def test_calendar_marks_have_glyphs_as_well_as_colours() -> None:
    root = _tree(
        completion_calendar(
            [(date(2026, 3, 2), "missed"), (date(2026, 3, 3), "on-time")],
            end=date(2026, 3, 8),
            weeks=1,
        )
    )
    glyphs = {
        g.get("data-outcome"): "".join(t.text or "" for t in g.iter(f"{SVG}text"))
        for g in root.iter(f"{SVG}g")
        if g.get("data-outcome")
    }
    assert glyphs == {
        "missed": OUTCOME_STYLES["missed"][3],
        "on-time": OUTCOME_STYLES["on-time"][3],
    }
    assert glyphs["missed"] != glyphs["on-time"]


def test_calendar_empty_summary() -> None:
    chart = completion_calendar([], end=date(2026, 3, 8), weeks=2)
    assert "nothing was due" in chart.summary
    assert chart.rows == ()


@pytest.mark.parametrize("outcome", list(OUTCOME_STYLES))
def test_outcome_marks_have_non_text_contrast(outcome: str) -> None:
    from smart_app.clinician.style import contrast

    _, fill, stroke, _, _ = OUTCOME_STYLES[outcome]
    assert max(contrast(fill, "#ffffff"), contrast(stroke, "#ffffff")) >= 3.0


def test_calendar_weeks_end_with_the_week_of_end() -> None:
    end = date(2026, 3, 1)  # a Sunday
    root = _tree(completion_calendar([], end=end, weeks=4))
    dates = sorted(g.get("data-date") for g in root.iter(f"{SVG}g"))
    assert dates[-1] == "2026-03-01"
    assert date.fromisoformat(dates[0]) == end - timedelta(days=27)


def test_calendar_outlines_today() -> None:
    root = _tree(
        completion_calendar(
            [(date(2026, 3, 12), "upcoming")],
            end=date(2026, 3, 15),
            weeks=1,
            today=date(2026, 3, 11),
        )
    )
    outlined = [
        g.get("data-date")
        for g in root.iter(f"{SVG}g")
        if g.find(f"{SVG}rect").get("stroke-width") == "2.5"
    ]
    assert outlined == ["2026-03-11"]
    titles = {g.get("data-date"): g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g")}
    assert titles["2026-03-11"].startswith("Today")
    assert "due later" in titles["2026-03-12"]
