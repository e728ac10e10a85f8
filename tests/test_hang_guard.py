"""A test that hangs stops the run with every thread's traceback: CI fails, it is not held.

pytest's faulthandler settings in pyproject.toml (``faulthandler_timeout``, and
``faulthandler_exit_on_timeout``: without it the tracebacks are dumped and the hang goes
on). Here a test that sleeps far past a timeout lowered to one second, run by a pytest of
its own with the project's settings.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

from conftest import ROOT


def test_the_project_stops_a_test_past_its_time_limit() -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    timeout = float(settings["ini_options"]["faulthandler_timeout"])
    assert 0 < timeout <= 3600


def test_a_hanging_test_ends_the_run_with_tracebacks(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(
        "import time\n\n\ndef test_hangs():\n    time.sleep(60)\n")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
         "-o", "faulthandler_timeout=1", str(tmp_path / "test_hangs.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert time.monotonic() - started < 40, "the hanging test ran to its end"
    assert done.returncode != 0
    assert "Timeout" in done.stderr and "test_hangs" in done.stderr, done.stderr
