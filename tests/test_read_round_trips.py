"""A token-authorized read by id on PostgreSQL: two statements, one round trip each.

What goes over the wire is read from libpq's own protocol trace of the request's connections:
the token lookup and the read, each one Parse/Bind/Execute/Sync flight, no BEGIN and no
ROLLBACK around them (four round trips before the token lookup ran outside a transaction),
no ping. A revoked token is refused at once: the lookup is never cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from smart_app import create_app
from smart_app.state import app_state

from wire_support import libpq_trace

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_app(pg_url: str, tmp_path: Path) -> Iterator[Any]:
    app = create_app({"TESTING": True, "instance_path": str(tmp_path / "instance"),
                      "database_url": pg_url, "open_api": False, "secret_key": "s"})
    state = app_state(app)
    store = state.services.store
    store.update({"resourceType": "Patient", "id": "pat-ava"})
    store.update({"resourceType": "Observation", "id": "obs-1", "status": "final",
                  "code": {"text": "PHQ-9"}, "subject": {"reference": "Patient/pat-ava"}})
    assert state.smart_auth is not None
    state.smart_auth.save_token(access_token="tok", client_id="app", scope="patient/*.rs",
                                context={"patient": "pat-ava"}, expires_in=3600)
    yield app
    state.services.close()


def _messages(trace: str) -> list[str]:
    """The frontend messages of a libpq trace (message name, then its text)."""
    out = []
    for record in trace.split("\n20"):  # a record starts with its timestamp; SQL spans lines
        parts = record.split("\t")
        if len(parts) >= 4 and parts[1] == "F":
            out.append(" ".join(p.strip() for p in parts[3:]))
    return out


def test_a_token_read_is_two_statements_without_begin_or_rollback(pg_app: Any,
                                                                  tmp_path: Path) -> None:
    client = pg_app.test_client()
    auth = {"Authorization": "Bearer tok"}
    assert client.get("/fhir/Observation/obs-1", headers=auth).status_code == 200  # warm
    store = app_state(pg_app).services.store
    store.engine.dispose()  # the request runs on new pooled connections, this thread's traced
    with libpq_trace(store.engine, tmp_path / "libpq.trace") as trace_path:
        response = client.get("/fhir/Observation/obs-1", headers=auth)
    assert response.status_code == 200
    messages = _messages(trace_path.read_text())
    names = [m.split()[0] for m in messages]
    assert names.count("Sync") == 2, messages  # two round trips: token lookup, read
    assert "Query" not in names, messages  # no simple-protocol BEGIN / ROLLBACK / ping
    statements = [m for m in messages if m.startswith("Parse")]
    assert "smart_token" in statements[0] and "FROM resource" in statements[1], statements


def test_a_revoked_token_is_refused_at_once(pg_app: Any) -> None:
    client = pg_app.test_client()
    auth = {"Authorization": "Bearer tok"}
    assert client.get("/fhir/Observation/obs-1", headers=auth).status_code == 200
    auth_store = app_state(pg_app).smart_auth
    assert auth_store is not None
    auth_store.revoke("tok")
    assert client.get("/fhir/Observation/obs-1", headers=auth).status_code == 401
