"""Reads by id from `hw-fhir serve` over real HTTP: the serving layer and the read path.

One server (gunicorn and granian, as `hw-fhir serve` runs them, /fhir protected by bearer tokens) on a
SQLite database prepared with two patients, their Observations and issued tokens:

* keep-alive holds: one TCP connection carries every request of a client;
* a read answers the stored JSON byte for byte, with ETag, Last-Modified, the FHIR
  Content-Type and the security headers, no session cookie; If-None-Match gives 304;
* a read without the scope, without a token, or of another patient's data is refused;
* every read, served or refused, is in the audit trail (written in batches);
* the access log has one line per request, path only (no query string: it may carry
  search values).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

from smart_app import create_app
from smart_app.state import app_state

TOKENS = {  # token -> (scope, launch context)
    "ava": ("patient/*.rs", {"patient": "pat-ava"}),
    "patients-only": ("patient/Patient.rs", {"patient": "pat-ava"}),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    def __init__(self, port: int, db: Path, log: Path) -> None:
        self.port, self.db, self.log = port, db, log

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql, args).fetchall()


@pytest.fixture(scope="module", params=["gunicorn", "granian"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"serve_http_{request.param}")
    db = tmp / "hw_fhir.db"
    app = create_app({"instance_path": str(tmp / "instance"), "database_url": f"sqlite:///{db}",
                      "open_api": False, "secret_key": "serve-http-test"})
    state = app_state(app)
    store = state.services.store
    for pid in ("pat-ava", "pat-ben"):
        store.update({"resourceType": "Patient", "id": pid, "name": [{"family": pid[4:]}]})
        store.update({"resourceType": "Observation", "id": f"obs-{pid[4:]}", "status": "final",
                      "code": {"text": "PHQ-9 total"}, "valueInteger": 7,
                      "subject": {"reference": f"Patient/{pid}"}})
    assert state.smart_auth is not None
    for token, (scope, context) in TOKENS.items():
        state.smart_auth.save_token(access_token=token, client_id="serve-test", scope=scope,
                                    context=context, expires_in=3600)
    state.services.close()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
    env.update(HW_FHIR_DATABASE_URL=f"sqlite:///{db}", HW_FHIR_OPEN_API="0",
               HW_FHIR_PLUGINS="none", HW_FHIR_SECRET_KEY="serve-http-test",
               HW_FHIR_INSTANCE_PATH=str(tmp / "instance"))
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from smart_app.cli import main; main()",
                                 "serve", "--port", str(port), "--workers", "1", "--threads", "4",
                                 "--server", request.param],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "hw-fhir serve did not come up: " + log.read_text()[-3000:]
            time.sleep(0.2)
        yield Served(port, db, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _get(conn: http.client.HTTPConnection, path: str, token: str | None = "ava",
         **headers: str) -> tuple[http.client.HTTPResponse, bytes]:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("GET", path, headers={"Accept": "application/fhir+json", **headers})
    response = conn.getresponse()
    return response, response.read()


def test_one_connection_carries_every_request_of_a_client(served: Served) -> None:
    conn = served.connection()
    _get(conn, "/fhir/metadata", token=None)
    first = conn.sock
    assert first is not None
    local = first.getsockname()
    statuses = []
    for path in ["/fhir/Observation/obs-ava", "/fhir/Patient/pat-ava", "/fhir/Observation/nope",
                 "/fhir/Observation/obs-ben"] * 5:  # served, not found, refused: all keep it
        response, _ = _get(conn, path)
        statuses.append(response.status)
        assert response.getheader("Connection", "").lower() != "close"
        assert conn.sock is first, f"the client had to reconnect after {path}"
    assert conn.sock.getsockname() == local
    assert set(statuses) == {200, 404, 403}
    conn.close()


def test_a_read_answers_the_stored_json_byte_for_byte_with_its_headers(served: Served) -> None:
    conn = served.connection()
    response, body = _get(conn, "/fhir/Observation/obs-ava")
    assert response.status == 200
    [(stored, updated, version)] = served.rows(
        "SELECT content, last_updated, version_id FROM resource WHERE res_type = ? AND res_id = ?",
        "Observation", "obs-ava")
    assert body == stored.encode()
    assert response.getheader("Content-Type") == "application/fhir+json; charset=utf-8"
    assert response.getheader("Content-Length") == str(len(body))
    assert response.getheader("ETag") == f'W/"{version}"'
    modified = parsedate_to_datetime(response.getheader("Last-Modified"))
    assert modified == datetime.fromisoformat(updated.replace("Z", "+00:00")).replace(microsecond=0)
    assert response.getheader("Last-Modified").endswith(" GMT")
    assert "frame-ancestors" in response.getheader("Content-Security-Policy", "")
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Referrer-Policy") == "same-origin"
    assert response.getheader("Set-Cookie") is None  # an API call starts no browser session
    response, body = _get(conn, "/fhir/Observation/obs-ava", **{"If-None-Match": f'W/"{version}"'})
    assert (response.status, body, response.getheader("ETag")) == (304, b"", f'W/"{version}"')
    conn.close()


@pytest.mark.parametrize("token, path, status", [
    (None, "/fhir/Observation/obs-ava", 401),
    ("not-issued", "/fhir/Observation/obs-ava", 401),
    ("patients-only", "/fhir/Observation/obs-ava", 403),  # no Observation scope
    ("ava", "/fhir/Observation/obs-ben", 403),  # another patient's
    ("ava", "/fhir/Patient/pat-ben", 403),
])
def test_a_read_outside_the_token_is_refused(served: Served, token: str | None, path: str,
                                             status: int) -> None:
    conn = served.connection()
    response, body = _get(conn, path, token=token)
    assert response.status == status
    assert response.getheader("WWW-Authenticate", "").startswith("Bearer")
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert b"PHQ-9" not in body and b"valueInteger" not in body
    conn.close()


def test_every_read_is_in_the_audit_trail(served: Served) -> None:
    conn = served.connection()
    marker = f"obs-ava-{time.monotonic_ns()}"  # not found: its own event, easy to find
    _get(conn, f"/fhir/Observation/{marker}")
    _get(conn, "/fhir/Observation/obs-ava")
    _get(conn, "/fhir/Observation/obs-ben")
    conn.close()
    query = ("SELECT e.subtype, e.outcome, e.client FROM audit_event e JOIN audit_entity n "
             "ON n.event_id = e.id WHERE n.reference = ?")
    deadline = time.monotonic() + 15
    while not served.rows(query, f"Observation/{marker}"):  # batches are written within ~1 s
        assert time.monotonic() < deadline, "the read was not audited"
        time.sleep(0.2)
    reads = "http://hl7.org/fhir/restful-interaction|read"
    assert (reads, "4", "serve-test") in served.rows(query, f"Observation/{marker}")
    assert (reads, "0", "serve-test") in served.rows(query, "Observation/obs-ava")
    assert (reads, "4", "serve-test") in served.rows(query, "Observation/obs-ben")  # refused
    patients = served.rows("SELECT n.reference FROM audit_entity n JOIN audit_entity o ON "
                           "o.event_id = n.event_id WHERE o.reference = ? AND n.patient",
                           "Observation/obs-ava")
    assert ("Patient/pat-ava",) in patients


def test_the_access_log_has_one_line_per_request_without_the_query(served: Served) -> None:
    conn = served.connection()
    _get(conn, "/fhir/Observation/obs-ava")
    _get(conn, "/fhir/Observation?code=secret-search-value")
    conn.close()
    read = re.compile(r'^127\.0\.0\.1 "GET /fhir/Observation/obs-ava" 200 \d+ \d+\.\d{6}s$',
                      re.MULTILINE)
    search = re.compile(r'^127\.0\.0\.1 "GET /fhir/Observation" 200 \d+ \d+\.\d{6}s$', re.MULTILINE)
    deadline = time.monotonic() + 10  # the line is written after the response
    while not (read.search(served.log.read_text()) and search.search(served.log.read_text())):
        assert time.monotonic() < deadline, served.log.read_text()[-2000:]
        time.sleep(0.1)
    assert "secret-search-value" not in served.log.read_text()
    assert "Control socket" not in served.log.read_text()  # no management socket (gunicorn had one in ~/.gunicorn)
