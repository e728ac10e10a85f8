"""Long command-line work shows progress: click's bar on a terminal, plain lines otherwise,
and a summary at the end (``hw-fhir load``, ``hw-fhir export``)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from hw_fhir.progress import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with progress("Loading", total=2000, file=out, every_seconds=0) as advance:
        advance(500)
        advance(1500)
    assert out.getvalue().splitlines() == ["Loading: 500 of 2 000 (25 %)",
                                           "Loading: 2 000 of 2 000 (100 %)",
                                           "Loading: 2 000 of 2 000 (100 %)"]


def test_periodic_lines_are_rate_limited() -> None:
    out = io.StringIO()
    with progress("Exporting", total=None, file=out, every_seconds=3600) as advance:
        for _ in range(1000):
            advance(1)
    assert out.getvalue().splitlines() == ["Exporting: 1 000"]  # only the closing line


def test_a_bar_on_a_terminal() -> None:
    out = _Terminal()
    with progress("Loading", total=10, file=out) as advance:
        advance(10)
    assert "Loading" in out.getvalue() and "10/10" in out.getvalue()


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HW_FHIR_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("HW_FHIR_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("HW_FHIR_SECRET_KEY", "x" * 40)
    return tmp_path


def test_load_and_export_show_progress_and_a_summary(env: Path) -> None:
    from hw_fhir.cli import cli

    lines = [orjson.dumps({"resourceType": "Patient", "id": f"p{n}", "gender": "unknown"})
             for n in range(300)]
    source = env / "patients.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    loaded = CliRunner().invoke(cli, ["load", str(source)])
    assert loaded.exit_code == 0, loaded.output
    size = source.stat().st_size
    assert f"Reading patients.ndjson: {size:,} of {size:,} (100 %)".replace(",", " ") in loaded.stderr
    assert loaded.stdout.startswith("Loaded 300 entries from patients.ndjson in ")
    exported = CliRunner().invoke(cli, ["export", "--type", "Patient", "--out", str(env / "out")])
    assert exported.exit_code == 0, exported.output
    assert "Exporting: 300 of 300 (100 %)" in exported.stderr
    assert "Exported 300 resources" in exported.stdout


def test_db_upgrade_shows_the_library_loading(env: Path) -> None:
    from hw_fhir import catalog
    from hw_fhir.cli import cli

    count = len(catalog.load_questionnaires())
    first = CliRunner().invoke(cli, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"Activity library: {count} of {count} (100 %)" in first.stderr
    assert f"Activity library: {count} activities added (0 already there)" in first.stderr
    again = CliRunner().invoke(cli, ["db", "upgrade"])
    assert "activities added" not in again.stderr  # nothing new: no summary of additions
