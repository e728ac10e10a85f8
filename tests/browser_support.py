"""Headless Chromium for browser tests: Debian's chromium + chromedriver, a fresh profile.

Tests skip when Chromium is missing, except on CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

CHROMIUM = os.environ.get("HW_FHIR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HW_FHIR_CHROMEDRIVER", "/usr/bin/chromedriver")
OUTPUT = ROOT / "test-output"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def require_chromium() -> None:
    """Skip without Chromium; fail on CI."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).exists() or shutil.which(p))]
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"Chromium is required on CI but {', '.join(missing)} is missing")
    pytest.skip(f"Chromium is not installed ({', '.join(missing)} missing)")


@contextmanager
def chromium(width: int, height: int, *, mobile: bool = False,
             accept_language: str | None = None) -> Iterator[Any]:
    """Start headless Chromium with a fresh profile and the given viewport.

    ``accept_language`` (e.g. ``"es"``) is the browser's language (``Accept-Language``).
    """
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hw-fhir-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console, CSP reports
    if accept_language:
        options.add_argument(f"--lang={accept_language}")
        options.add_experimental_option("prefs", {"intl.accept_languages": accept_language})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    if mobile:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": width, "height": height, "deviceScaleFactor": 2,
                                 "mobile": True})
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def csp_violations(driver: Any) -> list[str]:
    """Return (and clear) the console messages where the browser refused something by CSP."""
    return [str(e.get("message")) for e in driver.get_log("browser")
            if "Content Security Policy" in str(e.get("message"))]


def axe_violations(driver: Any) -> list[dict[str, Any]]:
    """Run axe-core (vendored) on the current page; return its serious and critical violations."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    driver.set_script_timeout(60)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def full_page_screenshot(driver: Any, name: str, width: int, height: int) -> Path:
    """Save a screenshot of the whole page (mobile viewport ``width``) as test-output/<name>.png."""
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / f"{name}.png"
    full = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": width, "deviceScaleFactor": 1, "mobile": True}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {**metrics, "height": max(height, int(full))})
    try:
        assert driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {**metrics, "height": height, "deviceScaleFactor": 2})
    return path


def wait_for(driver: Any, timeout: float = 20) -> Any:
    """A WebDriverWait on ``driver`` (``wait_for(driver).until(...)``)."""
    from selenium.webdriver.support.ui import WebDriverWait  # selenium only where a browser runs

    return WebDriverWait(driver, timeout)


def assert_accessible(driver: Any, page: str) -> None:
    """Fail on any axe-core violation on the current page (skipped when axe is not vendored)."""
    if not AXE.exists():
        return
    bad = axe_violations(driver)
    assert not bad, f"accessibility violations on {page}: {bad}"


def press(driver: Any, element: Any) -> None:
    """Scroll an element into the middle of the frame and click it (as a keyboard user would)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()
