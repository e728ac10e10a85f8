"""The ``hw-fhir`` console script: the core commands plus ``serve`` and ``demo``."""

from __future__ import annotations

import gc
import os
from typing import Any

import click

from hw_fhir.cli import cli, fail
from hw_fhir.errors import HwFhirError

__all__ = ["freeze_startup_heap", "main"]


def freeze_startup_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's sight.

    The app, its templates and the FHIR models are a few hundred thousand objects that
    live as long as the process; without this every full collection walks them again,
    which a page reading 1 000 Tasks triggers (about a third of its time). Done once in
    the server process before gunicorn forks its workers (they inherit it), and in the
    page benchmark so it measures what is served.
    """
    gc.collect()
    gc.freeze()


def _gunicorn(app: Any, host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", "-")
            # the query string may carry search values: log the path only
            self.cfg.set("access_log_format", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss')

        def load(self) -> Any:
            return app

    freeze_startup_heap()
    _Server().run()


def _create(**overrides: Any) -> Any:
    from . import create_app

    try:
        return create_app(overrides)
    except HwFhirError as exc:
        fail(exc.message)


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the app with gunicorn."""
    app = _create()
    _gunicorn(app, host, port, workers, threads)


@cli.command("demo")
@click.option("--port", default=5000, show_default=True, type=int)
def demo(port: int) -> None:
    """Create demo data and serve the app with the sandbox EHR on 127.0.0.1."""
    base = f"http://127.0.0.1:{port}"
    os.environ.setdefault("HW_FHIR_BASE_URL", base)
    app = _create(demo=True, sandbox=True, open_api=os.environ.get("HW_FHIR_OPEN_API", "0") == "1")
    from hw_fhir.demo import load_demo_data

    created = load_demo_data(app.extensions["hw_fhir"])
    click.echo(f"Demo data ready ({created} resources written).")
    click.echo(f"Open {base}/ in your browser (sandbox EHR: {base}/sandbox/).")
    _gunicorn(app, "127.0.0.1", port, 1, 8)


def main() -> None:
    """Run the CLI."""
    cli(prog_name="hw-fhir")
