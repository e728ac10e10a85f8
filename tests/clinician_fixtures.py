"""Fixtures shared by the clinician test files: the app, its store, and Ava's launch session.

A test module uses them by
``from clinician_fixtures import app, store, ava  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clinician_support import Session, clinician_app, open_launch


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    """The clinician app on a fresh database, closed afterwards."""
    application = clinician_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


@pytest.fixture
def store(app: Any) -> Any:
    """The app's store."""
    return app.extensions["hw_fhir"].store


@pytest.fixture
def ava(app: Any) -> Session:
    """A clinician session launched on Ava's chart."""
    return open_launch(app, app.test_client())
