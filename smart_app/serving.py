"""The HTTP serving layer of ``hw-fhir serve`` and ``hw-fhir demo``: gunicorn, configured once.

* Worker class ``gthread``: every worker process runs ``threads`` request threads and
  keeps HTTP/1.1 connections alive (``keepalive`` seconds between requests), so a FHIR
  client pays one TCP connection, not one per request. The listening socket has
  ``TCP_NODELAY`` (gunicorn sets it; accepted sockets inherit it on Linux), so a
  response's header and body writes never wait for the client's delayed ACK.
* The access log keeps one line per request (address, method, path without the query
  string, which may carry search values, status, bytes, seconds) but is written by
  :class:`AccessLogger`, which formats those six fields only: gunicorn's own logger
  first builds a dictionary of every request header, response header and environ
  variable for each request (about a tenth of a read's time in the worker).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from gunicorn.glogging import Logger

from .state import services

__all__ = ["ACCESS_LOG_FORMAT", "AccessLogger", "KEEPALIVE_SECONDS", "serve_app"]

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


def serve_app(app: Any, host: str, port: int, workers: int, threads: int, *,
              in_worker: Callable[[], Any] | None = None,
              before_run: Callable[[], None] | None = None) -> None:
    """Serve ``app`` with gunicorn; ``in_worker`` runs in each forked worker, after the fork.

    Every forked worker first drops the database connections inherited from the
    parent (``engine.dispose(close=False)``), then runs ``in_worker``; what
    ``in_worker`` returns is stopped (``.stopping.set()``) when the worker exits.
    ``before_run`` runs in the master just before gunicorn starts (after its pools closed).
    """
    from gunicorn.app.base import BaseApplication  # lazy: only serve/demo need gunicorn

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
