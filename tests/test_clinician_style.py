"""The EHR's smart_style_url colours: used where they keep AA contrast, never injected raw."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, jsonify

from clinician_support import clinician_app, open_launch
from conftest import serve
from smart_app.clinician.style import DEFAULT_STYLE, clear_cache, contrast, css_variables, style_for


def test_contrast_ratio_matches_wcag() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the classic AA grey
    assert contrast("#fff", "#000") == pytest.approx(21.0)


def test_good_ehr_colours_are_used() -> None:
    variables = css_variables(
        {
            "color_background": "#f0f4f8",
            "color_highlight": "#0b5394",
            "color_text": "#111111",
            "font_family_body": "Arial, sans-serif",
            "dim_border_radius": "4px",
        }
    )
    assert variables == {
        "--bg": "#f0f4f8",
        "--fg": "#111111",
        "--accent": "#0b5394",
        "--radius": "4px",
        "--font": "Arial, sans-serif",
    }


@pytest.mark.parametrize(
    "style, kept",
    [
        ({"color_highlight": "#7fb3ff"}, "--accent"),  # too light for white button text
        ({"color_text": "#999999"}, "--fg"),  # grey text below 4.5:1
        ({"color_background": "#222222"}, "--bg"),  # dark background with our dark text
        ({"color_highlight": "red;}</style><script>"}, "--accent"),
        ({"font_family_body": "x;}</style><script>alert(1)</script>"}, "--font"),
        ({"dim_border_radius": "999px"}, "--radius"),
        ({"color_text": 12}, "--fg"),
    ],
)
def test_unsafe_or_unreadable_values_keep_the_default(style: dict[str, Any], kept: str) -> None:
    assert css_variables(style)[kept] == DEFAULT_STYLE[kept]


def test_every_default_pair_meets_aa() -> None:
    d = DEFAULT_STYLE
    assert contrast(d["--fg"], d["--bg"]) >= 4.5
    assert contrast(d["--accent"], "#ffffff") >= 4.5 and contrast(d["--accent"], d["--bg"]) >= 4.5


@pytest.fixture
def style_server() -> Iterator[Any]:
    ehr = Flask("ehr_style")
    hits: list[str] = []

    @ehr.get("/style.json")
    def style() -> Any:
        hits.append("style")
        return jsonify(
            {"color_highlight": "#6b1f7a", "color_background": "#fafaf5", "color_text": "#202020"}
        )

    @ehr.get("/broken.json")
    def broken() -> Any:
        hits.append("broken")
        return "not json", 500

    server = serve(ehr)
    server.hits = hits  # type: ignore[attr-defined]
    clear_cache()
    yield server
    server.stop()
    clear_cache()


def test_page_uses_the_ehr_style_and_fetches_it_once(
    app_config: dict[str, Any], style_server: Any
) -> None:
    app = clinician_app(app_config)
    session = open_launch(app, app.test_client(), style_url=f"{style_server.url}/style.json")
    first = session.get("/clinician/patients/pat-ava").text
    second = session.get("/clinician/patients/pat-ava/assign").text
    for page in (first, second):
        assert "--accent: #6b1f7a;" in page and "--bg: #fafaf5;" in page
    assert style_server.hits == ["style"]
    app.extensions["hw_fhir"].close()


def test_a_broken_style_url_falls_back_quietly(
    app_config: dict[str, Any], style_server: Any
) -> None:
    app = clinician_app(app_config)
    session = open_launch(app, app.test_client(), style_url=f"{style_server.url}/broken.json")
    page = session.get("/clinician/patients/pat-ava")
    assert page.status_code == 200
    assert f"--accent: {DEFAULT_STYLE['--accent']};" in page.text
    assert style_for("ftp://example.org/style.json") == DEFAULT_STYLE
    app.extensions["hw_fhir"].close()
