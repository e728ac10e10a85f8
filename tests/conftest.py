"""Shared fixtures: real SQLite and PostgreSQL stores, the app, and the app served over HTTP."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from hw_fhir.store import SqlStore, open_store

PG_ADMIN_URL = os.environ.get("HW_FHIR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def _pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


_PG = _pg_available()


def require_pg() -> None:
    """Skip when PostgreSQL is not reachable, but fail on CI where it must be."""
    if _PG:
        return
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required on CI but {PG_ADMIN_URL} is not reachable")
    pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path / 'hw_fhir.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema (dropped afterwards), as a database URL."""
    require_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sql_store(db_url: str) -> Iterator[SqlStore]:
    """A migrated SqlStore, on SQLite and on PostgreSQL."""
    store = open_store(db_url)
    yield store
    store.dispose()


@pytest.fixture
def app_config(tmp_path: Path, sqlite_url: str) -> dict:
    """Settings for a test app: its own instance folder and SQLite database, open API."""
    return {"TESTING": True, "instance_path": str(tmp_path / "instance"),
            "database_url": sqlite_url, "open_api": True, "secret_key": "test-secret"}


@pytest.fixture
def app(app_config: dict):
    """The Flask app on a fresh SQLite database."""
    from smart_app import create_app

    application = create_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


@pytest.fixture
def client(app):
    """A Flask test client."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A Flask CLI runner."""
    return app.test_cli_runner()


class LiveServer:
    """An app served over real HTTP on 127.0.0.1 in a thread."""

    def __init__(self, app) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def serve(app) -> LiveServer:
    """Serve an app over HTTP on a free port (call .stop() when done)."""
    return LiveServer(app).start()


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    """The test app served over real HTTP on 127.0.0.1."""
    server = serve(app)
    yield server
    server.stop()
