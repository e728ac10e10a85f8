"""The whole vendor path: pip-install a plugin package, and its channel receives reminders.

``plugins/template`` is built and installed with pip into a folder of its own
(``pip install --target``), which the hw-fhir processes started here get on their
``PYTHONPATH``: a real installation, found through its ``hw_fhir`` entry point,
that never touches the environment other tests run in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reminder_support import announce, make_patient, make_services, make_task

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "plugins" / "template"


def _offline_build() -> bool:
    """Tell whether setuptools can build a wheel without downloading anything."""
    try:
        import setuptools

        if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) >= (70, 1):
            return True
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
               str(TEMPLATE)]
    if _offline_build():
        command.insert(4, "--no-build-isolation")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    assert list(target.glob("hw_fhir_plugin_template-0.1.0.dist-info"))
    return target


def _env(site: Path, tmp_path: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HW_FHIR_INSTANCE_PATH"] = str(tmp_path / "instance")
    env.update(more)
    return env


def _hw_fhir(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "from smart_app.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_installed_plugin_is_listed_with_its_version_and_can_be_excluded(installed, tmp_path):
    listed = _hw_fhir("plugins", env=_env(installed, tmp_path))
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["plugin_template"]["version"] == "0.1.0"
    assert plugins["plugin_template"]["distribution"] == "hw-fhir-plugin-template"
    assert plugins["plugin_template"]["hooks"] == ["prepare_message", "register_channels"]
    excluded = _hw_fhir("plugins", env=_env(installed, tmp_path, HW_FHIR_PLUGINS="something-else"))
    assert "plugin_template" not in excluded.stdout


def test_installed_plugin_channel_receives_reminders(installed, tmp_path):
    out = tmp_path / "messages.jsonl"
    config = tmp_path / "hw-fhir.toml"
    config.write_text(f'[plugin_template]\npath = "{out}"\n\n'
                      '[reminders]\nquiet_start = "00:00"\nquiet_end = "00:00"\n')
    database = f"sqlite:///{tmp_path / 'hw.db'}"
    services = make_services(tmp_path, db_url=database)
    make_patient(services.store, "p1")
    task = make_task(services.store, "p1", due=datetime.now(timezone.utc) + timedelta(days=2),
                     channel="jsonl")
    announce(services, task)
    services.close()
    env = _env(installed, tmp_path, HW_FHIR_CONFIG=str(config), HW_FHIR_DATABASE_URL=database,
               HW_FHIR_BASE_URL="https://hw.example.org", HW_FHIR_SECRET_KEY="install-test")
    ran = _hw_fhir("reminders", "run", "--once", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "1 sent" in ran.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["to"] == "Patient/p1"
    assert "https://hw.example.org/p/" in lines[0]["text"]
    assert lines[0]["text"].endswith("-- sent with hw-fhir")  # its prepare_message ran too


def test_the_template_tests_pass_as_shipped(installed, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(TEMPLATE), str(TEMPLATE / "tests")],
                          capture_output=True, text=True, env=_env(installed, tmp_path), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
