"""The audit trail over real HTTP: every access to patient data through /fhir, the clinician and
patient pages and the worker is an AuditEvent (IHE BALP shape), refused attempts included; the
trail is append-only, searchable with a system/ scope only, and pruned after the retention."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import orjson
import pytest
import requests
from conftest import serve
from patient_support import give_homework, link_for
from smart_support import (
    BackendClient,
    Browser,
    browser_like_cookies,  # noqa: F401  (autouse fixture)
    fhir,
    make_app,
    token_for,
)

from hw_fhir import audit
from hw_fhir.library import load_catalog
from hw_fhir.models import validate

REST = "http://terminology.hl7.org/CodeSystem/audit-event-type|rest"
INTERACTION = "http://hl7.org/fhir/restful-interaction"


class Server:
    def __init__(self, app: Any, url: str, clients: dict[str, BackendClient]) -> None:
        self.app, self.url, self.clients = app, url, clients
        self._tokens: dict[str, str] = {}

    def token(self, name: str) -> str:
        if name not in self._tokens:
            response = self.clients[name].token_request(self.url)
            assert response.status_code == 200, response.text
            self._tokens[name] = response.json()["access_token"]
        return self._tokens[name]

    def events(self, query: str = "", who: str = "auditor") -> list[dict[str, Any]]:
        """Every AuditEvent matching a search, all pages followed."""
        out: list[dict[str, Any]] = []
        url: str | None = f"{self.url}/fhir/AuditEvent?_count=50{'&' + query if query else ''}"
        while url:
            response = requests.get(url, headers={"Authorization": f"Bearer {self.token(who)}"},
                                    timeout=10)
            assert response.status_code == 200, response.text
            bundle = response.json()
            out += [e["resource"] for e in bundle.get("entry", [])]
            url = next((l["url"] for l in bundle["link"] if l["relation"] == "next"), None)
        return out


@pytest.fixture
def server(app_config: dict[str, Any], db_url: str) -> Iterator[Server]:
    clients = {
        "auditor": BackendClient.create("auditor", "RS384", "system/AuditEvent.rs"),
        "sync": BackendClient.create("sync", "RS384", "system/*.rs"),
        "tasks-only": BackendClient.create("tasks-only", "RS384", "system/Task.rs"),
        "writer": BackendClient.create("writer", "RS384", "system/*.cruds"),
    }
    app = make_app({**app_config, "database_url": db_url}, secure_cookies=False,
                   extra={"smart": {"sandbox_clients": [c.config for c in clients.values()]}})
    load_catalog(app.extensions["hw_fhir"].store)
    live = serve(app)
    yield Server(app, live.url, clients)
    live.stop()
    app.extensions["hw_fhir"].close()


def _subtype(event: dict[str, Any]) -> str:
    return str(event["subtype"][0]["code"])


def _entities(event: dict[str, Any], role: str | None = None) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", [])
            if "what" in e and (role is None or e["role"]["code"] == role)]


def test_fhir_interactions_are_audited_in_balp_shape(server: Server) -> None:
    task = give_homework(server.app, "phq-9", patient="pat-ben")
    token = server.token("writer")
    assert fhir(server.url, token, "GET", f"/Task/{task['id']}").status_code == 200
    assert fhir(server.url, token, "GET", "/Task?patient=Patient/pat-ben").status_code == 200
    assert fhir(server.url, token, "GET", f"/Task/{task['id']}/_history/1").status_code == 200
    assert fhir(server.url, token, "GET", f"/Task/{task['id']}/_history").status_code == 200
    flag = {"resourceType": "Flag", "status": "active", "subject": {"reference": "Patient/pat-ben"},
            "code": {"text": "test"}}
    created = fhir(server.url, token, "POST", "/Flag", json=flag)
    assert created.status_code == 201, created.text
    flag_id = created.json()["id"]
    assert fhir(server.url, token, "PUT", f"/Flag/{flag_id}",
                json={**created.json(), "status": "inactive"}).status_code == 200
    assert fhir(server.url, token, "DELETE", f"/Flag/{flag_id}").status_code == 204
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": flag, "request": {"method": "POST", "url": "Flag"}}]}
    assert fhir(server.url, token, "POST", "", json=bundle).status_code == 200

    events = server.events("patient=Patient/pat-ben&altid=writer")
    by_subtype = {_subtype(e): e for e in events}
    assert {"read", "search-type", "vread", "history-instance", "create", "update", "delete",
            "transaction"} <= set(by_subtype)
    read = by_subtype["read"]
    validate(read)  # a valid R4 AuditEvent
    assert read["type"]["code"] == "rest" and read["subtype"][0]["system"] == INTERACTION
    assert read["action"] == "R" and read["outcome"] == "0" and read["recorded"]
    assert _entities(read, "1") == ["Patient/pat-ben"]
    assert f"Task/{task['id']}" in _entities(read, "4")
    user = read["agent"][0]
    assert user["requestor"] is True and user["altId"] == "writer"
    assert user["network"]["address"] == "127.0.0.1"
    assert {"create": "C", "update": "U", "delete": "D"} == {
        k: by_subtype[k]["action"] for k in ("create", "update", "delete")}
    assert f"Flag/{flag_id}" in _entities(by_subtype["delete"])
    # only references: no names, no answers, no query values
    text = orjson.dumps(events).decode()
    assert "Ben" not in text and "Schmidt" not in text and "patient=" not in text


def test_refused_attempts_are_audited(server: Server) -> None:
    assert requests.get(f"{server.url}/fhir/Patient/pat-ava", timeout=10).status_code == 401
    bad = requests.get(f"{server.url}/fhir/Patient/pat-ava",
                       headers={"Authorization": "Bearer not-a-token"}, timeout=10)
    assert bad.status_code == 401
    denied = fhir(server.url, server.token("tasks-only"), "GET", "/Patient/pat-ava")
    assert denied.status_code == 403
    failures = server.events("outcome=4&subtype=read&patient=Patient/pat-ava")
    assert len(failures) == 3
    assert sorted(e["agent"][0].get("altId", "") for e in failures) == ["", "", "tasks-only"]
    assert all(e["agent"][0]["network"]["address"] == "127.0.0.1" for e in failures)


def test_refused_token_requests_are_failed_logins(server: Server) -> None:
    refused = server.clients["sync"].token_request(server.url, assertion="not.a.jwt")
    assert refused.status_code in (400, 401)
    logins = server.events("type=110114&outcome=4")
    assert len(logins) == 1 and _subtype(logins[0]) == "110122"
    assert logins[0]["agent"][0]["network"]["address"] == "127.0.0.1"
    assert "not.a.jwt" not in orjson.dumps(logins).decode()


def test_the_trail_is_append_only_and_needs_a_system_scope(server: Server) -> None:
    assert fhir(server.url, server.token("sync"), "GET", "/Patient/pat-ava").status_code == 200
    event = server.events("patient=Patient/pat-ava", who="sync")[0]
    writer = server.token("writer")
    for method, path, body in (("POST", "/AuditEvent", {**event, "id": None}),
                               ("PUT", f"/AuditEvent/{event['id']}", {**event, "outcome": "8"}),
                               ("DELETE", f"/AuditEvent/{event['id']}", None)):
        response = fhir(server.url, writer, method, path, json=body)
        assert response.status_code == 403, (method, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"AuditEvent/{event['id']}"}}]}
    assert fhir(server.url, writer, "POST", "", json=bundle).status_code == 403
    same = fhir(server.url, server.token("auditor"), "GET", f"/AuditEvent/{event['id']}")
    assert same.status_code == 200 and same.json() == event
    # a system/ scope without AuditEvent, and user/ scopes, cannot read the trail
    assert fhir(server.url, server.token("tasks-only"), "GET", "/AuditEvent").status_code == 403
    browser = Browser(server.url)
    clinician = token_for(browser, "user/*.rs", user="Practitioner/dr-rivera")["access_token"]
    assert fhir(server.url, clinician, "GET", "/AuditEvent").status_code == 403
    assert fhir(server.url, clinician, "GET", f"/AuditEvent/{event['id']}").status_code == 403
    # ... and their attempts are in it, with the clinician as the agent
    tried = server.events("agent=Practitioner/dr-rivera&outcome=4")
    assert tried and all(e["agent"][0]["who"]["reference"] == "Practitioner/dr-rivera" for e in tried)


def test_search_parameters_filter_the_trail(server: Server) -> None:
    token = server.token("sync")
    for patient in ("pat-ava", "pat-ben"):
        assert fhir(server.url, token, "GET", f"/Patient/{patient}").status_code == 200
    ava = server.events("patient=pat-ava")
    assert ava and all("Patient/pat-ava" in _entities(e, "1") for e in ava)
    assert not any("Patient/pat-ben" in _entities(e, "1") for e in ava)
    assert server.events(f"type={REST}&subtype={INTERACTION}|read&entity=Patient/pat-ben")
    today = datetime.now(timezone.utc).date()
    assert server.events(f"date=ge{today.isoformat()}&patient=pat-ava")
    assert not server.events(f"date=lt{today.isoformat()}&patient=pat-ava")
    assert not server.events("patient=pat-ava&action=D")
    refused = requests.get(f"{server.url}/fhir/AuditEvent?name=Ava",
                           headers={"Authorization": f"Bearer {server.token('auditor')}"}, timeout=10)
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"


def test_clinician_and_patient_pages_are_audited(server: Server) -> None:
    browser = Browser(server.url)
    result = browser.ehr_launch("dr-rivera", "pat-ava")
    assert result.page
    task = give_homework(server.app, "phq-9", patient="pat-carmen")
    phone = requests.Session()
    opened = phone.get(server.url + link_for(server.app, task))
    assert opened.status_code == 200 and "/my/tasks/" in opened.url
    stranger = requests.Session()
    assert stranger.get(server.url + "/p/not-a-real-token").status_code in (403, 404, 410)
    pages = server.events("patient=Patient/pat-ava&type=110110")
    assert any(e["agent"][0]["who"]["reference"] == "Practitioner/dr-rivera" for e in pages)
    carmen = server.events("patient=Patient/pat-carmen&type=110110")
    views = [e for e in carmen if e["agent"][0]["who"]["reference"] == "Patient/pat-carmen"]
    assert any(f"Task/{task['id']}" in _entities(e) for e in views)
    bad_links = [e for e in server.events("type=110110&outcome=4") if _subtype(e) == "patient.link"]
    assert bad_links and bad_links[0]["agent"][0]["who"] == {"display": "anonymous"}
    assert "not-a-real-token" not in orjson.dumps(bad_links).decode()


def test_worker_reminders_are_audited_and_the_retention_prunes(server: Server) -> None:
    from hw_fhir.default_audit import audit_upkeep, reminder_sent

    store = server.app.extensions["hw_fhir"].store
    task = give_homework(server.app, "phq-9", patient="pat-ava")
    request = {"resourceType": "CommunicationRequest", "id": "cr1",
               "subject": {"reference": "Patient/pat-ava"}}
    communication = {"resourceType": "Communication", "id": "c1",
                     "subject": {"reference": "Patient/pat-ava"}}
    reminder_sent(store=store, communication=communication, request=request, task=task)
    sent = server.events(f"entity=Task/{task['id']}&altid=hw-fhir-worker")
    assert [(_subtype(e), e["type"]["code"]) for e in sent] == [("reminder-sent", "110100")]
    assert "Patient/pat-ava" in _entities(sent[0], "1")
    # events older than the retention (default 2190 days) are pruned by the worker job
    moment = datetime.now(timezone.utc)
    for days in (2200, 2180):
        audit.trail_for(store).record(audit.Access(
            type=audit.TYPE_REST, subtype="read", action="R", patients=("Patient/pat-dev",),
            recorded=(moment - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")), now=True)
    old = f"patient=pat-dev&date=lt{moment.date().isoformat()}"
    assert len(server.events(old)) == 2
    assert audit_upkeep(server.app.extensions["hw_fhir"]) >= 1
    kept = server.events(old)
    assert [e["recorded"][:10] for e in kept] == [(moment - timedelta(days=2180)).date().isoformat()]
    assert sent[0]["id"] in {e["id"] for e in server.events()}
