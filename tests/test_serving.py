"""The serving layer of `hw-fhir serve` (smart_app.serving) over real HTTP.

* The access log middleware: a response of known, moderate length goes to the server as one
  bytes object; a stream (no Content-Length) or a large body streams, chunk by chunk, and
  its line is written when the server closes it, with the bytes actually sent; an app that
  raises is logged as 500. No line carries the query string.
* `hw-fhir serve --workers 2`, with either server: a worker that dies (SIGKILL) is replaced
  and the server keeps answering; the server stops cleanly on SIGTERM. An unknown server is
  refused with one line.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from smart_app.serving import INLINE_BODY_BYTES, AccessLog


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Seen:
    """What the middleware handed back, per path, and whether a streamed body was closed."""

    def __init__(self) -> None:
        self.returned: dict[str, Any] = {}
        self.closed: list[str] = []


def _app(seen: _Seen):
    big = b"x" * (INLINE_BODY_BYTES + 10)

    class Body:
        def __init__(self, path: str, chunks: list[bytes]) -> None:
            self.path, self.chunks = path, chunks

        def __iter__(self) -> Iterator[bytes]:
            return iter(self.chunks)

        def close(self) -> None:
            seen.closed.append(self.path)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if path == "/small":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
            return Body(path, [b"hello", b" world"])
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "application/fhir+ndjson")])
            return Body(path, [b'{"a":1}\n'] * 1000)
        if path == "/big":
            start_response("200 OK", [("Content-Length", str(len(big)))])
            return Body(path, [big[:1000], big[1000:]])
        raise RuntimeError("boom")

    return app


class _Log:
    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []


@pytest.fixture()
def logged(tmp_path: Path) -> Iterator[tuple[str, _Seen, _Log]]:
    seen = _Seen()
    log = _Log(tmp_path / "access.log")
    fd = os.open(log.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    middleware = AccessLog(_app(seen), fd)

    def recorder(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            out = middleware(environ, start_response)
        except RuntimeError:
            start_response("500 INTERNAL SERVER ERROR", [("Content-Length", "0")])
            return [b""]
        seen.returned[environ["PATH_INFO"]] = out
        return out

    server = make_server("127.0.0.1", 0, recorder, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}", seen, log
    finally:
        server.shutdown()
        thread.join(5)
        os.close(fd)


def _get(address: str, path: str) -> tuple[int, bytes]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def _wait_for(log: _Log, needle: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in log.lines():
            if needle in line:
                return line
        time.sleep(0.02)
    raise AssertionError(f"no access line with {needle!r}: {log.lines()}")


def test_a_response_of_known_length_is_handed_over_whole_and_logged(logged) -> None:
    address, seen, log = logged
    assert _get(address, "/small?family=secret-value") == (200, b"hello world")
    assert seen.returned["/small"] == [b"hello world"]  # one bytes object, not the generator
    assert seen.closed == ["/small"]  # the app's body was closed
    line = _wait_for(log, "/small")
    assert line.startswith('127.0.0.1 "GET /small" 200 11 ')
    assert line.endswith("s") and "secret-value" not in line


def test_a_stream_streams_and_is_logged_when_closed_with_the_bytes_sent(logged) -> None:
    address, seen, log = logged
    status, body = _get(address, "/stream")
    assert status == 200 and body == b'{"a":1}\n' * 1000
    assert not isinstance(seen.returned["/stream"], list)  # not gathered in memory
    line = _wait_for(log, "/stream")
    assert line.startswith('127.0.0.1 "GET /stream" 200 8000 ')
    assert "/stream" in seen.closed


def test_a_large_body_streams_even_with_a_length(logged) -> None:
    address, seen, log = logged
    status, body = _get(address, "/big")
    assert status == 200 and len(body) == INLINE_BODY_BYTES + 10
    assert not isinstance(seen.returned["/big"], list)
    assert f'"GET /big" 200 {INLINE_BODY_BYTES + 10} ' in _wait_for(log, "/big")


def test_an_app_that_raises_is_logged_as_500(logged) -> None:
    address, _seen, log = logged
    assert _get(address, "/raises?q=secret")[0] == 500
    line = _wait_for(log, "/raises")
    assert line.startswith('127.0.0.1 "GET /raises" 500 - ') and "secret" not in line


# ------------------------------------------------------------ hw-fhir serve, two workers


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_a_worker_that_dies_is_replaced_and_sigterm_stops_the_server(tmp_path: Path, server: str) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
    env.update(HW_FHIR_DATABASE_URL=f"sqlite:///{tmp_path / 'hw.db'}", HW_FHIR_PLUGINS="none",
               HW_FHIR_SECRET_KEY="serving-test", HW_FHIR_INSTANCE_PATH=str(tmp_path / "instance"))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from smart_app.cli import main; main()",
                                 "serve", "--port", str(port), "--workers", "2", "--threads", "2",
                                 "--server", server],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (_healthy(port) and len(_children(proc.pid)) == 2):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "serve did not come up: " + log.read_text()[-3000:]
            time.sleep(0.2)
        first = _children(proc.pid)
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:  # the other worker answers meanwhile; a new one takes the dead one's place
            children = _children(proc.pid)
            if len(children) == 2 and first[0] not in children:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no replacement worker: {log.read_text()[-3000:]}"
            time.sleep(0.2)
        for _ in range(20):
            assert _healthy(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_an_unknown_server_is_refused_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
    env.update(HW_FHIR_DATABASE_URL=f"sqlite:///{tmp_path / 'hw.db'}", HW_FHIR_SERVER="uwsgi",
               HW_FHIR_INSTANCE_PATH=str(tmp_path / "instance"))
    out = subprocess.run([sys.executable, "-c", "from smart_app.cli import main; main()", "serve",
                          "--port", str(_free_port())], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out
    assert "'uwsgi' is not one of 'gunicorn', 'granian'" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "hw.db").exists()


def test_the_cli_offers_the_servers_the_serving_layer_has() -> None:
    from smart_app import cli, serving

    assert cli.SERVERS == serving.SERVERS and cli.SERVERS[0] == "gunicorn"  # the design's default
