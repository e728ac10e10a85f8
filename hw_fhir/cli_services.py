"""What every ``hw-fhir`` command uses: open the services, or fail with one readable line.

Shared by the core commands (:mod:`hw_fhir.cli`), the sync commands
(:mod:`hw_fhir.sync.cli`) and the web commands (:mod:`smart_app.cli`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from .errors import HwFhirError
from .progress import progress
from .services import Services
from .startup import start_services

__all__ = ["fail", "open_services"]


def fail(message: str) -> None:
    """Print a readable error and exit with status 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def open_services(*, show_progress: bool = False, **overrides: Any) -> Services:
    """Start the services (database checked, migrated, library loaded) or exit with one line.

    What the start-up adds to the activity library is announced on stderr;
    ``show_progress`` also shows the library loading's progress (service start-ups).
    """
    catalog_log = logging.getLogger("hw_fhir.catalog")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous = catalog_log.level
    catalog_log.addHandler(handler)
    catalog_log.setLevel(logging.INFO)
    try:
        return start_services(progress=progress if show_progress else None, **overrides)
    except HwFhirError as exc:
        fail(exc.message)
        raise  # unreachable
    finally:
        catalog_log.removeHandler(handler)
        catalog_log.setLevel(previous)
