"""The EHR's look (SMART ``smart_style_url``), applied only where it keeps the page readable.

The style document (SMART App Launch: ``color_background``, ``color_highlight``,
``color_text``, ``font_family_body``, ``dim_border_radius``...) is fetched server-side
once per URL and cached for a few minutes; a failed fetch is cached too, so an EHR that
is slow to answer never slows the pages down twice. Every value is checked before it
reaches CSS: colours must be ``#rgb``/``#rrggbb``, text must keep a 4.5:1 contrast
with the background (WCAG 2.1 AA) and the highlight a 4.5:1 contrast with white (it
colours links and buttons with white text); anything else keeps our default.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests

__all__ = ["DEFAULT_STYLE", "css_variables", "contrast", "style_for", "clear_cache"]

#: CSS custom properties and their defaults (AA-compliant among themselves).
DEFAULT_STYLE: dict[str, str] = {
    "--bg": "#f6f7f9",
    "--fg": "#1d2330",
    "--accent": "#2456a6",
    "--radius": "6px",
    "--font": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
}
_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_FONT = re.compile(r"^[A-Za-z0-9 ,'\"-]{1,120}$")
_RADIUS = re.compile(r"^(?:[0-9]|1[0-9]|2[0-4])(?:\.[0-9])?px$")
_TTL = 600.0
_MAX_BYTES = 64 * 1024
_cache: dict[str, tuple[float, dict[str, str]]] = {}
_lock = threading.Lock()


def _rgb(colour: str) -> tuple[float, float, float]:
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return tuple(int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def _luminance(colour: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """Return the WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def css_variables(style: Mapping[str, Any] | None) -> dict[str, str]:
    """Return our CSS variables with the style document's values where they are safe."""
    out = dict(DEFAULT_STYLE)
    style = style or {}

    def colour(name: str) -> str | None:
        value = style.get(name)
        return value if isinstance(value, str) and _HEX.match(value) else None

    background, text, highlight = (
        colour("color_background"),
        colour("color_text"),
        colour("color_highlight"),
    )
    if background and contrast(background, text or out["--fg"]) >= 4.5:
        out["--bg"] = background
    if text and contrast(text, out["--bg"]) >= 4.5 and contrast(text, "#ffffff") >= 4.5:
        out["--fg"] = text
    if (
        highlight
        and contrast(highlight, "#ffffff") >= 4.5
        and contrast(highlight, out["--bg"]) >= 4.5
    ):
        out["--accent"] = highlight
    font = style.get("font_family_body")
    if isinstance(font, str) and _FONT.match(font):
        out["--font"] = font
    radius = style.get("dim_border_radius")
    if isinstance(radius, str) and _RADIUS.match(radius):
        out["--radius"] = radius
    return out


def _fetch(url: str) -> dict[str, Any]:
    try:
        response = requests.get(
            url, timeout=(1.0, 2.0), headers={"Accept": "application/json"}, stream=True
        )
        if response.status_code != 200:
            return {}
        body = response.raw.read(_MAX_BYTES + 1, decode_content=True)
        if len(body) > _MAX_BYTES:
            return {}
        data = __import__("json").loads(body)
        return data if isinstance(data, dict) else {}
    except (requests.RequestException, ValueError):
        return {}


def style_for(url: str | None) -> dict[str, str]:
    """Return the CSS variables for a ``smart_style_url`` (defaults when None or unusable)."""
    if not url or not url.startswith(("https://", "http://")):
        return dict(DEFAULT_STYLE)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(url)
        if hit and hit[0] > now:
            return dict(hit[1])
    variables = css_variables(_fetch(url))
    with _lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[url] = (now + _TTL, variables)
    return dict(variables)


def clear_cache() -> None:
    """Forget every fetched style (tests, or after an EHR changed its look)."""
    with _lock:
        _cache.clear()
