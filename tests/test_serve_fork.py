"""`hw-fhir serve --workers 2` on PostgreSQL, with either server: every worker has database connections of its own.

The app is built (and migrated) in the server process and then forked. Connections the
master pooled must never be used by a worker: two processes writing to one PostgreSQL
socket answer each other's queries (a valid token rejected, an existing Patient 404, 500s).
50 concurrent clients read, search and write for a bounded time and expect 0 errors.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.postgres

CLIENTS = 50
SECONDS = float(os.environ.get("HW_FHIR_FORK_TEST_SECONDS", "20"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail("hw-fhir serve did not come up: " + log.read_text()[-3000:])


def _client(url: str, n: int, stop: float, results: list, failures: list) -> None:
    """One client: create its Patient, then read it, search and update until ``stop``."""
    session = requests.Session()
    pid = f"fork{n}"
    session.put(f"{url}/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid,
                                                   "name": [{"family": f"Fork{n}"}]}, timeout=30)
    i = 0
    while time.monotonic() < stop:
        i += 1
        kind = i % 4
        try:
            if kind == 0:
                r = session.put(f"{url}/fhir/Patient/{pid}", timeout=30, json={
                    "resourceType": "Patient", "id": pid, "name": [{"family": f"Fork{n}-{i}"}]})
                ok = r.status_code == 200
            elif kind == 1:
                r = session.get(f"{url}/fhir/Patient?family=Fork{n}", timeout=30)
                ok = r.status_code == 200 and r.json()["resourceType"] == "Bundle" and any(
                    e["resource"]["id"] == pid for e in r.json().get("entry", []))
            else:
                r = session.get(f"{url}/fhir/Patient/{pid}", timeout=30)
                ok = r.status_code == 200 and r.json().get("id") == pid
        except (requests.RequestException, ValueError, KeyError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        results.append(ok)
        if not ok:
            failures.append(f"{r.request.method} {r.request.path_url} -> {r.status_code} {r.text[:200]}")


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_serve_with_two_workers_on_postgresql_has_no_errors_under_50_clients(pg_url, tmp_path, server):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
    env.update(HW_FHIR_DATABASE_URL=pg_url, HW_FHIR_OPEN_API="1", HW_FHIR_PLUGINS="none",
               HW_FHIR_SECRET_KEY="fork-test", HW_FHIR_INSTANCE_PATH=str(tmp_path / "instance"),
               HW_FHIR_BASE_URL=url)
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from smart_app.cli import main; main()", "serve",
             "--workers", "2", "--threads", "8", "--port", str(port), "--server", server],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_up(url, proc, log)
        results: list[bool] = []
        failures: list[str] = []
        stop = time.monotonic() + SECONDS
        threads = [threading.Thread(target=_client, args=(url, n, stop, results, failures))
                   for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=SECONDS + 120)
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert len(results) > CLIENTS * 5, f"too few requests answered: {len(results)}"
    assert failures == [], f"{len(failures)} errors in {len(results)} requests: {failures[:5]}"
