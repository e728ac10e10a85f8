"""The ``hw-fhir`` console script: the core commands plus ``serve`` and ``demo``."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import click

from hw_fhir.cli import cli, fail, open_services, preflight
from hw_fhir.demo import load_demo_data
from hw_fhir.errors import HwFhirError
from hw_fhir.services import Services
from hw_fhir.worker import start_worker_thread

from .app import create_app
from .warmup import freeze_startup_heap, prepare_for_fork

__all__ = ["SERVERS", "freeze_startup_heap", "main", "demo_guide"]

#: ``hw-fhir serve --server`` (smart_app.serving.SERVERS, named here so the CLI starts
#: without importing a server); the first is the default.
SERVERS = ("gunicorn", "granian")


def _serve(app: Any, host: str, port: int, workers: int, threads: int, *,
           server: str = "gunicorn", in_worker: Callable[[], Any] | None = None) -> None:
    """Serve ``app`` (:func:`smart_app.serving.serve_app`), its per-process caches warmed and
    the start-up heap frozen first (:func:`smart_app.warmup.prepare_for_fork`)."""
    from .serving import serve_app  # lazy: only serve/demo need the server; keeps the CLI's start fast

    serve_app(app, host, port, workers, threads, server=server, in_worker=in_worker,
              before_run=lambda: prepare_for_fork(app))


def _port_free(host: str, port: int) -> None:
    """Exit with one line when the address is taken (before anything is started or written)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(f"Cannot listen on {host}:{port} ({exc.strerror}): another program uses it; "
                 "choose another port with --port")


def _start(**overrides: Any) -> Services:
    return open_services(show_progress=True, **overrides)


def _create(services: Services) -> Any:
    try:
        return create_app(services=services)
    except HwFhirError as exc:
        fail(exc.message)


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
@click.option("--server", type=click.Choice(SERVERS), default=SERVERS[0], show_default=True,
              envvar="HW_FHIR_SERVER",
              help="gunicorn (gthread) or granian (HTTP in Rust: about half the time and a "
                   "quarter of the CPU per request of gunicorn's own layer); also HW_FHIR_SERVER")
def serve(host: str, port: int, workers: int, threads: int, server: str) -> None:
    """Serve the app (configuration checked, database migrated, library loaded)."""
    preflight()
    _port_free(host, port)
    app = _create(_start())
    _serve(app, host, port, workers, threads, server=server)


@cli.command("demo")
@click.option("--port", default=5000, show_default=True, type=int)
def demo(port: int) -> None:
    """The whole product on 127.0.0.1: sandbox EHR, demo practice, worker and inbox."""
    base = f"http://127.0.0.1:{port}"
    _port_free("127.0.0.1", port)
    os.environ.setdefault("HW_FHIR_BASE_URL", base)
    if not os.environ.get("HW_FHIR_CONFIG"):  # risk alerts need a reachable last recipient
        os.environ.setdefault("HW_FHIR_SAFETY_NAME", "Demo practice safety lead")
        os.environ.setdefault("HW_FHIR_SAFETY_CHANNEL", "email")  # the demo inbox's email
        os.environ.setdefault("HW_FHIR_SAFETY_ADDRESS", "safety-lead@demo.hw-fhir.test")
    preflight(demo=True, sandbox=True)
    services = _start(demo=True, sandbox=True,
                      open_api=os.environ.get("HW_FHIR_OPEN_API", "0") == "1")
    app = _create(services)
    try:
        created = load_demo_data(services, history=True)
    except HwFhirError as exc:
        fail(exc.message)
    click.echo(f"Demo data ready ({created} resources written).")
    for line in demo_guide(services.settings.base_url or base):
        click.echo(line)
    _serve(app, "127.0.0.1", port, 1, 8,
           in_worker=lambda: start_worker_thread(services, poll_seconds=2.0))


def demo_guide(base: str) -> list[str]:
    """Return the demo's 'where to click' lines."""
    return [
        "",
        f"  Sandbox EHR (launch hw-fhir as a clinician): {base}/sandbox/",
        f"  Demo inbox (every reminder and alert sent):  {base}/sandbox/inbox",
        f"  Patient portal (standalone patient launch):  {base}/sandbox/portal",
        "  Open a reminder's secure link in the inbox to see the patient's side.",
        "  The worker runs in this process: reminders go out within a minute.",
        "",
    ]


def main() -> None:
    """Run the CLI."""
    cli(prog_name="hw-fhir")
