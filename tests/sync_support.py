"""Helpers for the sync tests: homework data, the worker, a notification listener, a failing EHR.

Everything is real: the listener is an HTTP server on 127.0.0.1, the "EHR" is a
second hw-fhir app served over HTTP whose WSGI entry can be switched to fail
(500, slow answers, answers lost after the write) or stopped and started again
on the same port.
"""

from __future__ import annotations

import socket
from pathlib import Path
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import orjson
from werkzeug.serving import make_server

from hw_fhir.config import load_settings
from hw_fhir.services import build_services
from hw_fhir.sync.outbox import DEFAULT_IDENTIFIER_SYSTEM, ehr_targets

SURVEY = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}
    ]
}
PHQ9_TOTAL = {
    "coding": [{"system": "http://loinc.org", "code": "44261-6", "display": "PHQ-9 total score"}]
}


def task(patient: str, status: str = "requested", **extra: Any) -> dict[str, Any]:
    """An SDC-style homework Task for a patient."""
    return {
        "resourceType": "Task",
        "status": status,
        "intent": "order",
        "for": {"reference": f"Patient/{patient}"},
        "owner": {"reference": f"Patient/{patient}"},
        "authoredOn": "2026-11-01T10:00:00Z",
        **extra,
    }


def response(patient: str, status: str = "completed", **extra: Any) -> dict[str, Any]:
    """A QuestionnaireResponse of a patient."""
    return {
        "resourceType": "QuestionnaireResponse",
        "status": status,
        "questionnaire": "http://example.org/fhir/Questionnaire/mood-check|1.0",
        "subject": {"reference": f"Patient/{patient}"},
        "authored": "2026-11-02T09:00:00Z",
        "item": [{"linkId": "1", "answer": [{"valueInteger": 2}]}],
        **extra,
    }


def score(patient: str, value: int = 7, **extra: Any) -> dict[str, Any]:
    """A PHQ-9 total score Observation."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [SURVEY],
        "code": PHQ9_TOTAL,
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-11-02T09:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
        **extra,
    }


def flag(patient: str) -> dict[str, Any]:
    """A risk Flag about a patient."""
    return {
        "resourceType": "Flag",
        "status": "active",
        "code": {"text": "Risk: PHQ-9 item 9"},
        "subject": {"reference": f"Patient/{patient}"},
    }


def homework(store: Any, patient: str, n: int = 3) -> list[Any]:
    """Write Tasks, responses, scores and a Flag for a patient; return the stored versions."""
    out = []
    for i in range(n):
        out.append(store.create(task(patient, "completed" if i % 2 else "requested")).stored)
        out.append(
            store.create(response(patient, "completed" if i % 2 == 0 else "in-progress")).stored
        )
        out.append(store.create(score(patient, i)).stored)
    out.append(store.create(flag(patient)).stored)
    return out


def with_sync_plugin(services: Any) -> Any:
    """Make sure the services' plugin manager has the built-in sync plugin."""
    from hw_fhir import default_sync

    if not services.plugins.is_registered(default_sync):
        services.plugins.register(default_sync)
    return services


def run_worker_cycle(services: Any) -> Any:
    """Run one cycle of the real worker (with the sync jobs) and return its report."""
    from hw_fhir.worker import Worker

    report = Worker(with_sync_plugin(services), name="test-worker").run_once()
    assert not report.errors, report.errors
    return report


def free_port() -> int:
    """Return a TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------ the listener


@dataclass
class Received:
    """One request the listener got."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    answered: int


@dataclass
class Listener:
    """A notification endpoint on 127.0.0.1 that records POSTs and can be told to fail."""

    received: list[Received] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 500
    delay: float = 0.0
    #: while set to an Event, requests wait for it (at most 60 s) before they are answered:
    #: the sender's timeout runs out whatever the load; set the Event to let them go on
    gate: threading.Event | None = None
    server: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def start(self) -> "Listener":
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with listener.lock:
                    failing = listener.fail_next > 0
                    if failing:
                        listener.fail_next -= 1
                    delay, gate = listener.delay, listener.gate
                if delay:
                    time.sleep(delay)
                if gate is not None:
                    gate.wait(60)
                status = listener.fail_status if failing else 200
                with listener.lock:
                    listener.received.append(
                        Received(
                            self.path,
                            dict(self.headers),
                            orjson.loads(body) if body else {},
                            status,
                        )
                    )
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> list[dict[str, Any]]:
        """The bodies the listener answered 200 to, in arrival order."""
        with self.lock:
            return [r.body for r in self.received if r.answered == 200]


# ----------------------------------------------------------- a failing EHR


class FailSwitch:
    """WSGI middleware: answer normally, or fail in one of several ways.

    modes: ``None`` (normal), ``"500"``, ``"429"``, ``"slow"`` (hold the request before
    handling it), ``"lost"`` (handle the request, then hold the answer so the client times
    out and never learns that the write happened).

    A held request waits until the mode changes (or ``delay`` seconds, a safety net), not a
    fixed time: however loaded the machine, the client's timeout runs out first, and the
    test decides when the late requests go on. Those late requests are real: a "slow"
    write reaches the app after the client gave up, perhaps while the next attempt is
    being handled. :meth:`settle` waits until none is in flight, so counting
    :attr:`calls` afterwards does not race with them.
    """

    HOLDING = ("slow", "lost")

    def __init__(self, app: Any) -> None:
        self.app = app
        self._mode: str | None = None
        self._gate: threading.Event | None = None
        self.delay = 60.0
        self.calls: list[tuple[str, str, int]] = []
        #: the If-None-Exist header of each write that reached the app, in order
        self.conditions: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        self._idle = threading.Condition(self.lock)
        self.in_flight = 0

    @property
    def mode(self) -> str | None:
        return self._mode

    @mode.setter
    def mode(self, value: str | None) -> None:
        with self.lock:
            old, self._mode = self._gate, value
            self._gate = threading.Event() if value in self.HOLDING else None
        if old is not None:
            old.set()  # the requests held by the previous mode go on

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until no request is being handled (held ones must have been released)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self.in_flight == 0, timeout):
                raise AssertionError(f"{self.in_flight} request(s) still in flight")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self.lock:
            self.in_flight += 1
            mode, gate = self._mode, self._gate
        try:
            return self._handle(environ, start_response, mode, gate)
        finally:
            with self._idle:
                self.in_flight -= 1
                self._idle.notify_all()

    def _handle(self, environ: dict[str, Any], start_response: Callable[..., Any],
                mode: str | None, gate: threading.Event | None) -> Any:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if (
            mode in ("500", "429")
            and path.startswith("/fhir/")
            and not path.endswith(("smart-configuration", "metadata"))
        ):
            with self.lock:
                self.calls.append((method, path, int(mode)))
            start_response(
                f"{mode} Failing on purpose",
                [("Content-Type", "application/fhir+json"), ("Retry-After", "1")],
            )
            return [
                orjson.dumps(
                    {
                        "resourceType": "OperationOutcome",
                        "issue": [
                            {
                                "severity": "error",
                                "code": "transient",
                                "diagnostics": "down for a test",
                            }
                        ],
                    }
                )
            ]
        if mode == "slow" and gate is not None:
            gate.wait(self.delay)
        status_holder: list[str] = []

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            status_holder.append(status)
            return start_response(status, headers, exc_info)

        body = b"".join(self.app(environ, capture))
        with self.lock:
            self.calls.append((method, path, int(status_holder[0].split()[0])))
            if method in ("POST", "PUT"):
                self.conditions.append((method, path, environ.get("HTTP_IF_NONE_EXIST")))
        if (
            mode == "lost"
            and gate is not None
            and method in ("POST", "PUT")
            and path.startswith("/fhir/")
        ):
            gate.wait(self.delay)
        return [body]

    def posts(self, prefix: str) -> list[tuple[str, str, int]]:
        """The POSTs to paths starting with ``prefix`` that reached the app."""
        with self.lock:
            return [c for c in self.calls if c[0] == "POST" and c[1].startswith(prefix)]


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true (a loaded machine may be slow)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


class RestartableServer:
    """A WSGI app served on a fixed port of 127.0.0.1 that can be stopped and started again."""

    def __init__(self, app: Any, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server: Any = None
        self.thread: threading.Thread | None = None

    def start(self) -> "RestartableServer":
        for _ in range(50):
            try:
                self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"port {self.port} stays busy")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            if self.thread is not None:
                self.thread.join(timeout=5)
            self.server = None


# ------------------------------------------------ an EHR for the write-back outbox


CLIENT_ID = "hw-fhir-writeback"
EHR_SCOPE = "system/QuestionnaireResponse.crus system/Observation.crus"


class OutboxEhr:
    """Our services with an [[ehr]] target, and the EHR app behind a FailSwitch on a fixed port."""

    def __init__(self, tmp_path: Path, our_db: str, **target: Any) -> None:
        from smart_app import create_app

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = {
            "name": "chart",
            "base_url": f"{self.base}/fhir",
            "auth": "backend-services",
            "client_id": CLIENT_ID,
            # the normal path: generous, so a loaded CI machine is never mistaken for an
            # outage; the outage tests shorten it with client_timeout() for a phase
            "timeout": 30,
            **target,
        }
        self.settings = load_settings(
            {},
            database_url=our_db,
            instance_path=str(tmp_path / "ours"),
            secret_key="ours",
            extra={"ehr": [config], "sync": {"outbox_backoff": 1, "outbox_max_backoff": 60}},
        )
        self.services = build_services(self.settings)
        self.store = self.services.store
        jwks = ehr_targets(self.settings)[0].public_jwks()  # what an admin registers with the EHR
        self.app = create_app(
            {
                "TESTING": True,
                "instance_path": str(tmp_path / "ehr"),
                "secret_key": "ehr",
                "database_url": f"sqlite:///{tmp_path / 'ehr.db'}",
                "open_api": False,
                "sandbox": True,
                "extra": {
                    "smart": {
                        "sandbox_clients": [
                            {
                                "client_id": CLIENT_ID,
                                "token_endpoint_auth_method": "private_key_jwt",
                                "jwks": jwks,
                                "scope": EHR_SCOPE,
                            }
                        ]
                    }
                },
            }
        )
        self.ehr_store = self.app.extensions["hw_fhir"].store
        self.switch = FailSwitch(self.app)
        self.server = RestartableServer(self.switch, self.port)

    @contextmanager
    def client_timeout(self, seconds: float) -> Iterator[None]:
        """Give the outbox a short timeout for an outage phase (the EHR holds its answers).

        The target is built from the settings on every run, and the cached token provider
        keeps its own timeout: both are changed, then restored.
        """
        config = self.settings.extra["ehr"][0]
        before = config["timeout"]

        def apply(value: float) -> None:
            config["timeout"] = value
            for provider in self.services.outbox_tokens.values():
                provider.timeout = value

        apply(seconds)
        try:
            yield
        finally:
            apply(before)

    def close(self) -> None:
        self.switch.mode = None  # release held requests
        self.server.stop()
        self.services.close()
        self.app.extensions["hw_fhir"].close()

    def copies(self, rtype: str, local_id: str) -> list[dict[str, Any]]:
        """The EHR's resources carrying the write-back identifier of a local resource."""
        found = self.ehr_store.search(
            rtype,
            [("identifier", f"{DEFAULT_IDENTIFIER_SYSTEM}|{rtype}/{local_id}"), ("_count", "10")],
        )
        return found.resources

    def written_back(self, rtype: str) -> int:
        return (
            self.ehr_store.search(
                rtype, [("identifier", f"{DEFAULT_IDENTIFIER_SYSTEM}|"), ("_total", "accurate")]
            ).total
            or 0
        )
