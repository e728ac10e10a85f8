"""The HTTP serving layer of ``hw-fhir serve`` and ``hw-fhir demo``: one of two servers.

``gunicorn`` (the default, as the design names it) or ``granian`` (``hw-fhir serve --server
granian``). Both fork their workers from the server process after the app is built, migrated
and warmed (:func:`smart_app.warmup.prepare_for_fork`); the first thing every worker does
after the fork, before it serves a request, is drop the database connections and locks it
inherited (:meth:`hw_fhir.services.Services.after_fork`), then it runs ``in_worker`` (the
demo's reminder worker), which is stopped when the worker exits. A worker that dies is
replaced. Both keep HTTP/1.1 connections alive (a FHIR client pays one TCP connection, not one
per request), and both write the same access line per request: address, method, path without
the query string (which may carry search values), status, bytes, seconds.

* gunicorn, worker class ``gthread``: ``threads`` request threads per worker; its HTTP layer
  is Python. The access line is written by :class:`AccessLogger`, which formats those six
  fields only: gunicorn's own logger first builds a dictionary of every request header,
  response header and environ variable for each request.
* granian: HTTP parsed in Rust, the WSGI app called in ``threads`` Python threads per worker.
  Serving a constant app (``bench/bench_serving_floor.py``), gunicorn takes about 0.40 ms wall
  and 0.34 ms of server CPU per keep-alive request, more than Medplum's in-memory engine takes
  for a whole read by id; granian 0.22 ms and 0.09 ms. The access line is written by the
  :class:`AccessLog` middleware.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gunicorn.glogging import Logger

from .state import services

__all__ = ["ACCESS_LOG_FORMAT", "AccessLog", "AccessLogger", "INLINE_BODY_BYTES",
           "KEEPALIVE_SECONDS", "SERVERS", "serve_app"]

#: The servers ``hw-fhir serve --server`` offers; the first is the default.
SERVERS = ("gunicorn", "granian")

#: A response whose Content-Length is at most this is handed to the server as one bytes
#: object (written at once); larger ones and streams ($export files, NDJSON) stream.
INLINE_BODY_BYTES = 1 << 20
#: Seconds a connection may take to send a request's headers (and idle between requests).
HEADER_SECONDS = 30
#: Seconds a stopping worker has to finish its requests before it is killed (gunicorn also
#: restarts a worker silent for this long).
STOP_SECONDS = 30

#: The access log line, in gunicorn's notation (what :class:`AccessLogger` writes).
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
#: Seconds a kept-alive connection may wait for its next request.
KEEPALIVE_SECONDS = 5


class AccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger with an access line built from the six fields it shows."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """Log ``h "m U" s b L`` (see :data:`ACCESS_LOG_FORMAT`) for one request."""
        if not self.access_log_enabled:
            return
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        try:
            self.access_log.info('%s "%s %s" %s %s %d.%06ds', environ.get("REMOTE_ADDR", "-"),
                                 environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), status,
                                 "-" if sent is None else sent, request_time.seconds,
                                 request_time.microseconds)
        except Exception:  # noqa: BLE001 - as gunicorn's: a log failure never fails a request
            self.error(traceback.format_exc())


class AccessLog:
    """WSGI middleware: one line per request, written to a file descriptor (standard output).

    ``127.0.0.1 "GET /fhir/Observation/obs-1" 200 1234 0.000512s``: the path never has its
    query string. Each line is one ``write`` (whole lines from every thread and worker, 4 µs;
    through :mod:`logging` it was 25 µs, a tenth of the serving floor). A response of known,
    moderate length is returned as a one-item list, so the server writes it in one go
    instead of iterating Werkzeug's generator.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], fd: int | None = None) -> None:
        self.app = app
        self.fd = sys.stdout.fileno() if fd is None else fd

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        seen: list[Any] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen[:] = [status, headers]
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            self._line(environ, "500", None, started)
            raise
        length = _content_length(seen[1]) if seen else None
        if length is None or length > INLINE_BODY_BYTES:
            return _Streamed(self, body, environ, seen, started)
        try:
            chunks = [b"".join(body)]
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        self._line(environ, seen[0], len(chunks[0]), started)
        return chunks

    def _line(self, environ: dict[str, Any], status: Any, sent: int | None, started: float) -> None:
        code = str(status).split(None, 1)[0] if status else "-"
        line = '%s "%s %s" %s %s %.6fs\n' % (
            environ.get("REMOTE_ADDR", "-"), environ.get("REQUEST_METHOD"),
            environ.get("PATH_INFO"), code, "-" if sent is None else sent,
            time.perf_counter() - started)
        try:
            os.write(self.fd, line.encode("utf-8", "backslashreplace"))
        except OSError:  # a log line never fails a request
            pass


class _Streamed:
    """A streamed body: counted as it is sent, logged when the server closes it."""

    def __init__(self, log: AccessLog, body: Iterable[bytes], environ: dict[str, Any],
                 seen: list[Any], started: float) -> None:
        self._log, self._body, self._environ, self._seen = log, body, environ, seen
        self._started, self._sent = started, 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._log._line(self._environ, self._seen[0] if self._seen else None, self._sent,
                            self._started)


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def serve_app(app: Any, host: str, port: int, workers: int, threads: int, *,
              server: str = SERVERS[0], in_worker: Callable[[], Any] | None = None,
              before_run: Callable[[], None] | None = None) -> None:
    """Serve ``app`` with ``server`` (one of :data:`SERVERS`) until it is stopped.

    ``in_worker`` runs in each forked worker, after the fork and after the worker rebuilt its
    database pools; what it returns is stopped (``.stopping.set()``) when the worker exits.
    ``before_run`` runs in the server process just before the workers are forked (after its
    pools closed).
    """
    # lazy imports in each: only serve/demo need a server; keeps the CLI's start fast
    serve = {"gunicorn": _serve_gunicorn, "granian": _serve_granian}[server]
    serve(app, host, port, workers, threads, in_worker=in_worker, before_run=before_run)


def _serve_gunicorn(app: Any, host: str, port: int, workers: int, threads: int, *,
                    in_worker: Callable[[], Any] | None,
                    before_run: Callable[[], None] | None) -> None:
    from gunicorn.app.base import BaseApplication

    svc = services(app)
    started: list[Any] = []

    def post_worker_init(_worker: Any) -> None:
        svc.store.engine.dispose(close=False)
        if in_worker is not None:
            started.append(in_worker())

    def worker_exit(_server: Any, _worker: Any) -> None:
        for thing in started:
            thing.stopping.set()

    def post_fork(_server: Any, _worker: Any) -> None:
        svc.after_fork()  # every worker opens its own database connections (never the master's)

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("keepalive", KEEPALIVE_SECONDS)
            self.cfg.set("accesslog", "-")
            self.cfg.set("logger_class", AccessLogger)
            self.cfg.set("access_log_format", ACCESS_LOG_FORMAT)
            self.cfg.set("post_worker_init", post_worker_init)
            self.cfg.set("worker_exit", worker_exit)
            self.cfg.set("post_fork", post_fork)
            self.cfg.set("timeout", STOP_SECONDS)
            self.cfg.set("graceful_timeout", STOP_SECONDS)
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 24
                # no runtime-management socket in the user's home (shared by every
                # server this user starts, and a way in that hw-fhir does not document)
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return app

    # the master serves nothing: close what start-up (migrations, demo data) opened, so
    # no socket is inherited by the workers at all
    svc.store.dispose()
    if before_run is not None:
        before_run()
    _Server().run()


def _serve_granian(app: Any, host: str, port: int, workers: int, threads: int, *,
                   in_worker: Callable[[], Any] | None,
                   before_run: Callable[[], None] | None) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server.mp import MPServer as Server

    svc = services(app)
    started: list[Any] = []
    sys.stdout.flush()  # what start-up printed comes before the access lines
    logged = AccessLog(app)

    def load_in_worker(*_target: Any) -> Any:
        svc.after_fork()  # every worker opens its own database connections (never the parent's)
        if in_worker is not None:
            started.append(in_worker())
        return logged

    def worker(*args: Any, **kwargs: Any) -> Any:
        try:
            return Server._spawn_wsgi_worker(*args, **kwargs)
        finally:
            for thing in started:
                thing.stopping.set()

    server = Server(
        "smart_app:hw-fhir",  # a name for the process title: the app itself is loaded above
        address=host, port=port, interface=Interfaces.WSGI, workers=workers,
        blocking_threads=threads, http=HTTPModes.http1, websockets=False,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_SECONDS * 1000, keep_alive=True),
        log_access=False, respawn_failed_workers=True, workers_kill_timeout=STOP_SECONDS,
    )
    # the server process serves nothing: close what start-up (migrations, demo data)
    # opened, so no socket is inherited by the workers at all
    svc.store.dispose()
    if before_run is not None:
        before_run()
    server.serve(spawn_target=worker, target_loader=load_in_worker, wrap_loader=False)
