"""Bulk Data $export over real HTTP, driven by Backend Services clients of the sandbox.

Kick-off, polling, the worker, the manifest, downloads (every NDJSON line validates),
``_since``, ``_type``, ``_typeFilter``, Patient and Group level, scopes, other
clients, cancel and expiry.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote

import orjson
import pytest
import requests
from conftest import serve
from smart_support import BackendClient, make_app
from sync_support import homework, run_worker_cycle, score

from hw_fhir.models import validate
from hw_fhir.sync.export import expire_exports

NDJSON_TYPES = ("application/fhir+ndjson", "application/ndjson", "ndjson")


class Bulk:
    """A Backend Services client of the served app, speaking the Bulk Data protocol."""

    def __init__(self, base: str, client: BackendClient) -> None:
        self.base = base
        self.client = client
        self._token: str | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            response = self.client.token_request(self.base)
            assert response.status_code == 200, response.text
            self._token = response.json()["access_token"]
        return self._token

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/fhir+json", **extra}

    def kickoff(self, path: str = "$export", params: Any = None, **extra: str) -> requests.Response:
        return requests.get(
            f"{self.base}/fhir/{path}",
            params=params,
            timeout=10,
            headers=self.headers(Prefer="respond-async", **extra),
        )

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return requests.get(url, headers=self.headers(), timeout=10, **kwargs)

    def delete(self, url: str) -> requests.Response:
        return requests.delete(url, headers=self.headers(), timeout=10)


@pytest.fixture
def bulk_app(app_config: dict[str, Any]) -> Iterator[Any]:
    clients = {
        "analytics": BackendClient.create("analytics", "RS384", "system/*.rs"),
        "warehouse": BackendClient.create("warehouse", "ES384", "system/*.rs"),
        "scores-only": BackendClient.create("scores-only", "RS384", "system/Observation.rs"),
    }
    app = make_app(
        app_config, extra={"smart": {"sandbox_clients": [c.config for c in clients.values()]}}
    )
    store = app.extensions["hw_fhir"].store
    for patient in ("pat-ava", "pat-ben", "pat-carmen"):
        homework(store, patient, 3)
    server = serve(app)
    yield app, {name: Bulk(server.url, c) for name, c in clients.items()}
    server.stop()
    app.extensions["hw_fhir"].close()


def _run(bulk: Bulk, path: str = "$export", params: Any = None, app: Any = None) -> dict[str, Any]:
    """Kick off, let the worker run, poll until done; return the manifest."""
    kick = bulk.kickoff(path, params)
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["Content-Location"]
    run_worker_cycle(app.extensions["hw_fhir"])
    for _ in range(50):
        status = bulk.get(status_url)
        if status.status_code != 202:
            break
        time.sleep(0.1)
    assert status.status_code == 200, status.text
    manifest = status.json()
    manifest["_status_url"] = status_url
    return manifest


def _download(
    bulk: Bulk, manifest: dict[str, Any], kind: str = "output"
) -> dict[str, list[dict[str, Any]]]:
    """Download every file of a manifest section; check each line; return resources by type."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest[kind]:
        response = bulk.get(item["url"])
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("application/fhir+ndjson")
        lines = response.content.decode().splitlines()
        assert len(lines) == item["count"]
        for line in lines:
            resource = orjson.loads(line)
            assert resource["resourceType"] == item["type"]
            assert validate(resource) == resource  # every line is valid R4, exactly as stored
            out.setdefault(item["type"], []).append(resource)
    return out


def test_complete_export_over_http(bulk_app: Any) -> None:
    app, clients = bulk_app
    bulk = clients["analytics"]
    store = app.extensions["hw_fhir"].store
    kick = bulk.kickoff("$export", {"_outputFormat": "application/fhir+ndjson"})
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["Content-Location"]
    assert status_url.startswith(f"{bulk.base}/fhir/")
    pending = bulk.get(status_url)  # the worker has not run yet
    assert pending.status_code == 202
    assert pending.headers["X-Progress"] and int(pending.headers["Retry-After"]) > 0
    report = run_worker_cycle(app.extensions["hw_fhir"])
    assert report.work["export_jobs"] >= 1
    done = bulk.get(status_url)
    assert done.status_code == 200, done.text
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True
    assert unquote(manifest["request"]) == unquote(kick.request.url)
    assert manifest["error"] == [] and manifest["deleted"] == []
    assert "Expires" in done.headers
    exported = _download(bulk, manifest)
    expected_types = {
        "Patient",
        "Practitioner",
        "Task",
        "QuestionnaireResponse",
        "Observation",
        "Flag",
    }
    assert expected_types <= set(exported)
    for rtype, resources in exported.items():
        ids = [r["id"] for r in resources]
        assert len(ids) == len(set(ids)), f"{rtype} exported twice"
        if rtype != "AuditEvent":  # the audit trail lives in its own table (hw_fhir.audit)
            assert len(ids) == store.count(rtype), rtype
    assert "Subscription" not in exported
    # the system-level export holds the audit trail, the kick-off of this very export included
    kickoffs = [e for e in exported["AuditEvent"] if e["subtype"][0]["code"] == "operation"]
    assert kickoffs and all(e["outcome"] == "0" for e in kickoffs)


@pytest.mark.parametrize("output_format", NDJSON_TYPES)
def test_every_ndjson_output_format_is_accepted(bulk_app: Any, output_format: str) -> None:
    app, clients = bulk_app
    manifest = _run(
        clients["analytics"], "$export", {"_outputFormat": output_format, "_type": "Flag"}, app
    )
    assert [f["type"] for f in manifest["output"]] == ["Flag"]


def test_since_returns_only_what_changed(bulk_app: Any) -> None:
    app, clients = bulk_app
    bulk = clients["analytics"]
    store = app.extensions["hw_fhir"].store
    first = _run(bulk, "$export", {"_type": "Observation,Task,QuestionnaireResponse"}, app)
    since = first["transactionTime"]
    tasks = store.search("Task", [("_count", "3")]).matches
    changed = store.update({**tasks[0].resource, "status": "in-progress"}).stored
    created = store.create(score("pat-dev", 12)).stored
    store.delete("Task", tasks[1].id)
    second = _run(
        bulk, "$export", {"_type": "Observation,Task,QuestionnaireResponse", "_since": since}, app
    )
    assert second["transactionTime"] > since
    exported = _download(bulk, second)
    assert {(t, r["id"]) for t, rs in exported.items() for r in rs} == {
        ("Task", changed.id),
        ("Observation", created.id),
    }
    assert exported["Task"][0]["meta"]["versionId"] == changed.version_id
    gone = _download(bulk, second, "deleted")
    assert [e["request"] for b in gone["Bundle"] for e in b["entry"]] == [
        {"method": "DELETE", "url": f"Task/{tasks[1].id}"}
    ]
    third = _run(
        bulk, "$export", {"_type": "Observation,Task", "_since": second["transactionTime"]}, app
    )
    assert third["output"] == [] and third["deleted"] == []


def test_another_client_cannot_see_the_job_or_its_files(bulk_app: Any) -> None:
    app, clients = bulk_app
    owner, other = clients["analytics"], clients["warehouse"]
    manifest = _run(owner, "$export", {"_type": "Patient"}, app)
    file_url = manifest["output"][0]["url"]
    status_url = manifest["_status_url"]
    assert owner.get(file_url).status_code == 200
    for url in (status_url, file_url):
        refused = other.get(url)
        assert refused.status_code == 404, refused.text
        assert b"pat-ava" not in refused.content
        anonymous = requests.get(url, timeout=10)
        assert anonymous.status_code == 401
        assert b"pat-ava" not in anonymous.content
    assert other.delete(status_url).status_code == 404
    assert owner.get(status_url).status_code == 200  # still there for its owner


def test_scopes_limit_what_is_exported(bulk_app: Any) -> None:
    app, clients = bulk_app
    narrow = clients["scores-only"]
    everything = _run(narrow, "$export", None, app)
    assert {f["type"] for f in everything["output"]} == {"Observation"}
    assert everything["error"] == []
    asked = _run(narrow, "$export", {"_type": "Patient,Observation"}, app)
    assert {f["type"] for f in asked["output"]} == {"Observation"}
    errors = _download(narrow, asked, "error")["OperationOutcome"]
    assert "Patient" in errors[0]["issue"][0]["diagnostics"]
    refused = narrow.kickoff("$export", {"_type": "Patient"})
    assert refused.status_code == 403


def test_patient_and_group_level_exports(bulk_app: Any) -> None:
    app, clients = bulk_app
    bulk = clients["analytics"]
    store = app.extensions["hw_fhir"].store
    store.update(
        {
            "resourceType": "Group",
            "id": "rivera-clients",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": "Patient/pat-ben"}}],
        }
    )
    patients = _download(bulk, _run(bulk, "Patient/$export", None, app))
    assert "Questionnaire" not in patients and "Practitioner" not in patients
    assert {r["id"] for r in patients["Patient"]} == {r.id for r in store.search("Patient").matches}
    group = _download(bulk, _run(bulk, "Group/rivera-clients/$export", None, app))
    assert [r["id"] for r in group["Patient"]] == ["pat-ben"]
    for rtype in ("Task", "QuestionnaireResponse", "Observation", "Flag"):
        refs = {(r.get("subject") or r.get("for"))["reference"] for r in group[rtype]}
        assert refs == {"Patient/pat-ben"}, rtype
        assert len(group[rtype]) == store.search(rtype, [("patient", "Patient/pat-ben")]).total
    missing = bulk.kickoff("Group/no-such-group/$export")
    assert missing.status_code == 404


def test_type_filter(bulk_app: Any) -> None:
    app, clients = bulk_app
    bulk = clients["analytics"]
    store = app.extensions["hw_fhir"].store
    manifest = _run(
        bulk,
        "$export",
        {
            "_type": "QuestionnaireResponse,Task",
            "_typeFilter": "QuestionnaireResponse?status=completed",
        },
        app,
    )
    exported = _download(bulk, manifest)
    assert {r["status"] for r in exported["QuestionnaireResponse"]} == {"completed"}
    assert (
        len(exported["QuestionnaireResponse"])
        == store.search("QuestionnaireResponse", [("status", "completed")]).total
    )
    assert len(exported["Task"]) == store.count("Task")  # no filter for Task: all of them
    two = _run(
        bulk,
        "$export",
        [
            ("_type", "Task"),
            ("_typeFilter", "Task?status=completed"),
            ("_typeFilter", "Task?status=requested"),
        ],
        app,
    )
    statuses = [r["status"] for r in _download(bulk, two)["Task"]]
    assert sorted(statuses) == sorted(
        r.resource["status"]
        for r in store.search(
            "Task", [("status", "completed,requested"), ("_count", "1000")]
        ).matches
    )


@pytest.mark.parametrize(
    "params, headers, status",
    [
        ({"_type": "Patient"}, {"Prefer": ""}, 400),
        ({"_outputFormat": "text/csv"}, {}, 400),
        ({"_type": "Spaceship"}, {}, 400),
        ({"_since": "yesterday"}, {}, 400),
        ({"_since": "2026-01-01T10:00:00"}, {}, 400),
        ({"_typeFilter": "Task?no-such-param=1"}, {}, 400),
        ({"_typeFilter": "Task?status=done&_sort=status"}, {}, 400),
        ({"_type": "Task", "_typeFilter": "Flag?status=active"}, {}, 400),
        ({"_elements": "id"}, {}, 400),
        ({"_elements": "id"}, {"Prefer": "respond-async, handling=lenient"}, 202),
    ],
)
def test_kickoff_refuses_bad_requests(
    bulk_app: Any, params: dict[str, str], headers: dict[str, str], status: int
) -> None:
    _, clients = bulk_app
    bulk = clients["analytics"]
    response = requests.get(
        f"{bulk.base}/fhir/$export",
        params=params,
        timeout=10,
        headers={**bulk.headers(Prefer="respond-async"), **headers},
    )
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["resourceType"] == "OperationOutcome"
        assert "Content-Location" not in response.headers


def test_post_kickoff_with_parameters(bulk_app: Any) -> None:
    app, clients = bulk_app
    bulk = clients["analytics"]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_outputFormat", "valueString": "ndjson"},
            {"name": "_type", "valueString": "Flag"},
        ],
    }
    kick = requests.post(
        f"{bulk.base}/fhir/$export",
        data=orjson.dumps(body),
        timeout=10,
        headers=bulk.headers(Prefer="respond-async", **{"Content-Type": "application/fhir+json"}),
    )
    assert kick.status_code == 202, kick.text
    run_worker_cycle(app.extensions["hw_fhir"])
    manifest = bulk.get(kick.headers["Content-Location"]).json()
    assert [f["type"] for f in manifest["output"]] == ["Flag"]


def test_cancel_stops_and_forgets_the_job(bulk_app: Any) -> None:
    app, clients = bulk_app
    bulk = clients["analytics"]
    queued = bulk.kickoff("$export", {"_type": "Patient"}).headers["Content-Location"]
    assert bulk.delete(queued).status_code == 202
    assert bulk.get(queued).status_code == 404
    report = run_worker_cycle(app.extensions["hw_fhir"])
    assert report.work["export_jobs"] == 0  # nothing left to run
    manifest = _run(bulk, "$export", {"_type": "Patient"}, app)
    folder = (
        Path(app.extensions["hw_fhir"].settings.instance_path)
        / "exports"
        / manifest["_status_url"].rsplit("/", 1)[1]
    )
    assert folder.is_dir()
    assert bulk.delete(manifest["_status_url"]).status_code == 202
    assert not folder.exists()
    assert bulk.get(manifest["output"][0]["url"]).status_code == 404


def test_files_expire(bulk_app: Any) -> None:
    app, clients = bulk_app
    bulk = clients["analytics"]
    manifest = _run(bulk, "$export", {"_type": "Patient"}, app)
    services = app.extensions["hw_fhir"]
    folder = (
        Path(services.settings.instance_path)
        / "exports"
        / manifest["_status_url"].rsplit("/", 1)[1]
    )
    assert expire_exports(services) == 0 and folder.is_dir()  # not yet
    assert expire_exports(services, now=time.time() + 25 * 3600) == 1
    assert not folder.exists()
    assert bulk.get(manifest["_status_url"]).status_code == 404
    assert bulk.get(manifest["output"][0]["url"]).status_code == 404


def test_too_many_exports_at_once_are_refused(bulk_app: Any) -> None:
    _, clients = bulk_app
    bulk = clients["warehouse"]
    for _ in range(5):
        assert bulk.kickoff("$export", {"_type": "Flag"}).status_code == 202
    refused = bulk.kickoff("$export", {"_type": "Flag"})
    assert refused.status_code == 429, refused.text
    assert clients["analytics"].kickoff("$export", {"_type": "Flag"}).status_code == 202


def test_capability_statement_lists_the_export_operations(bulk_app: Any) -> None:
    _, clients = bulk_app
    statement = requests.get(f"{clients['analytics'].base}/fhir/metadata", timeout=10).json()
    names = {op["name"] for op in statement["rest"][0]["operation"]}
    assert {"export", "patient-export", "group-export", "status"} <= names
