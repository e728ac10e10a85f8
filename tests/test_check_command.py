"""``hw-fhir check`` and the start-up checks: every bad setting gives one readable line, an
exit code other than 0, no traceback, and creates nothing (no instance folder, no SQLite
file, no secret key). Real SQLite and PostgreSQL, a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from hw_fhir import catalog
from hw_fhir.checks import run_checks
from hw_fhir.config import load_settings
from smart_app.cli import cli


class _Accept:
    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        return "250 OK"


@pytest.fixture
def smtp_port() -> Any:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(_Accept(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder and an environment without any HW_FHIR_* variable."""
    for name in list(os.environ):
        if name.startswith("HW_FHIR_"):
            monkeypatch.delenv(name)
    folder = tmp_path / "fresh"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _run(*args: str, **env: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _nothing_created(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == []


BAD_DATABASES = [
    ("mysql://user@db.example.org/hw", "mysql databases are not supported"),
    ("notaurl", "'notaurl' is not a database URL"),
    ("sqlite:////nonexistent-i15/dir/hw.db", "the folder /nonexistent-i15/dir does not exist"),
    ("postgresql+psycopg://postgres@127.0.0.1:5432/no_such_database_i15",
     'database "no_such_database_i15" does not exist'),
]


@pytest.mark.parametrize(("url", "message"), BAD_DATABASES)
@pytest.mark.parametrize("command", [["db", "upgrade"], ["worker", "--once"], ["reminders", "run", "--once"]])
def test_bad_database_url_one_line_nothing_created(fresh: Path, url: str, message: str,
                                                   command: list[str]) -> None:
    if url.startswith("postgresql"):
        from conftest import require_pg

        require_pg()
    result = _run(*command, HW_FHIR_DATABASE_URL=url, HW_FHIR_PRODUCTION="0")
    assert result.exit_code != 0
    errors = [line for line in _lines(result.stderr) if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output
    _nothing_created(fresh)


def test_unwritable_sqlite_folder(fresh: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes anywhere: use a folder that is a file instead
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        url = f"sqlite:///{blocker}/hw.db"
        expected = "does not exist"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        url = f"sqlite:///{locked}/hw.db"
        expected = "is not writable"
    result = _run("db", "upgrade", HW_FHIR_DATABASE_URL=url)
    assert result.exit_code == 1 and expected in result.stderr
    assert len(_lines(result.stderr)) == 1
    _nothing_created(fresh)


def test_misspelt_variable_is_reported_with_a_suggestion(fresh: Path) -> None:
    result = _run("check", HW_FHIR_DATABASE_ULR="sqlite:////tmp/x.db")
    assert result.exit_code == 1
    assert ("Problem: HW_FHIR_DATABASE_ULR is not a hw-fhir setting and is ignored; "
            "did you mean HW_FHIR_DATABASE_URL?") in _lines(result.stdout)
    assert "does not exist yet" in result.stdout  # the default database is not created either
    _nothing_created(fresh)


def test_plugin_not_installed_is_reported(fresh: Path) -> None:
    result = _run("check", HW_FHIR_PLUGINS="nosuchplugin")
    assert result.exit_code == 1
    assert ("Problem: HW_FHIR_PLUGINS names 'nosuchplugin', which is not installed "
            "(pip install it, or remove it)") in _lines(result.stdout)
    _nothing_created(fresh)


def test_production_refuses_to_start_serve_and_worker(fresh: Path) -> None:
    for command in (["serve", "--port", "1"], ["worker", "--once"]):
        result = _run(*command, HW_FHIR_PRODUCTION="1", HW_FHIR_SECRET_KEY="k" * 40)
        assert result.exit_code == 1, result.output
        errors = _lines(result.stderr)
        assert sum("HW_FHIR_BASE_URL" in line for line in errors[:-1]) == 1  # said once
        assert any("HW_FHIR_BASE_URL is required in production" in line for line in errors)
        assert any("No EHR and no backend client" in line for line in errors)
        assert errors[-1].startswith("Error: ") and "HW_FHIR_PRODUCTION=1" in errors[-1]
        assert "Traceback" not in result.output
        _nothing_created(fresh)


def test_check_in_production_lists_every_problem(fresh: Path) -> None:
    result = _run("check", HW_FHIR_PRODUCTION="1", HW_FHIR_OPEN_API="1")
    problems = _lines(result.stdout)
    assert result.exit_code == 1 and "OPEN_API=1 is refused" in problems[0]
    assert any("HW_FHIR_SECRET_KEY is not set" in p for p in problems)
    assert any("No EHR and no backend client" in p for p in problems)
    _nothing_created(fresh)


def test_production_needs_a_shared_secret(fresh: Path) -> None:
    settings = load_settings(create=False, production=True, base_url="https://hw.example.org")
    problems = run_checks(settings, environ={"HW_FHIR_PRODUCTION": "1"}, database=False)
    assert any("HW_FHIR_SECRET_KEY is not set" in p for p in problems)


def test_check_passes_on_a_complete_configuration(fresh: Path, smtp_port: int) -> None:
    config = fresh.parent / "hw.toml"
    ehr = '[[smart.ehr]]\niss = "https://ehr.example.org/fhir"\nclient_id = "hw"\n'
    config.write_text(ehr)
    env = {"HW_FHIR_DATABASE_URL": f"sqlite:///{fresh.parent / 'hw.db'}",
           "HW_FHIR_INSTANCE_PATH": str(fresh.parent / "instance"),
           "HW_FHIR_BASE_URL": "https://hw.example.org", "HW_FHIR_CONFIG": str(config),
           "HW_FHIR_SMTP_PORT": str(smtp_port), "HW_FHIR_PLUGINS": "none"}
    before = _run("check", **env)
    assert before.exit_code == 1 and "does not exist yet" in before.stdout
    assert "[safety] name, channel, address not set" in before.stdout
    config.write_text(ehr + '[safety]\nname = "Duty clinician"\nchannel = "email"\n'
                      'address = "duty@practice.example"\n')
    upgraded = _run("db", "upgrade", **env)
    assert upgraded.exit_code == 0
    count = len(catalog.load_questionnaires())
    assert f"Activity library: {count} activities added (0 already there)" in upgraded.stderr
    result = _run("check", **env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Configuration OK")


def test_check_reports_an_empty_library_and_an_old_schema(fresh: Path, sqlite_url: str) -> None:
    from hw_fhir.store import SqlStore

    store = SqlStore(sqlite_url)
    from hw_fhir.migrations import upgrade

    upgrade(store.engine, "0001")
    settings = load_settings(create=False, database_url=sqlite_url)
    problems = run_checks(settings, environ={})
    assert any("not migrated" in p and "hw-fhir db upgrade" in p for p in problems)
    store.upgrade()
    problems = run_checks(settings, environ={})
    expected = f"misses {len(catalog.load_questionnaires())} of"
    assert any(expected in p for p in problems), problems
    store.dispose()


def test_unreachable_smtp_server_is_reported(fresh: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = load_settings(create=False, smtp_port=closed, plugins="none")
    problems = run_checks(settings, environ={}, database=False)
    assert any(p.startswith(f"email: cannot reach the SMTP server 127.0.0.1:{closed}")
               for p in problems)


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_taken_port_one_line_nothing_created(fresh: Path, command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(command, "--port", str(port))
    assert result.exit_code == 1
    assert _lines(result.stderr)[-1] == (
        f"Error: Cannot listen on 127.0.0.1:{port} (Address already in use): another program "
        "uses it; choose another port with --port")
    _nothing_created(fresh)
