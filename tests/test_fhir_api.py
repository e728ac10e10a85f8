"""The /fhir API: interactions, headers, Prefer, and bad input that leaves the store untouched."""

from __future__ import annotations

import json

import pytest

FHIR = "application/fhir+json"


def post(client, path, body, **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, data=data, headers={"Content-Type": FHIR, **headers})


def put(client, path, body, **headers):
    return client.put(path, data=json.dumps(body), headers={"Content-Type": FHIR, **headers})


def snapshot(app) -> list[tuple]:
    """Every stored version in the database, for before/after comparisons."""
    store = app.extensions["hw_fhir"].store
    entries = []
    cursor = None
    while True:
        page = store.history(count=500, cursor=cursor)
        entries.extend((e.resource_type, e.id, e.version_id, e.raw) for e in page.entries)
        if not page.next_cursor:
            return entries
        cursor = page.next_cursor


def patient(client, family="Lind") -> dict:
    r = post(client, "/fhir/Patient", {"resourceType": "Patient", "name": [{"family": family}]})
    assert r.status_code == 201, r.data
    return r.get_json()


def task(pid: str, status: str = "requested") -> dict:
    return {"resourceType": "Task", "status": status, "intent": "order",
            "for": {"reference": f"Patient/{pid}"}, "authoredOn": "2026-03-01T10:00:00Z"}


def test_metadata_lists_resources_and_search_params(client):
    r = client.get("/fhir/metadata")
    assert r.status_code == 200
    assert r.mimetype == FHIR
    cs = r.get_json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    by_type = {res["type"]: res for res in cs["rest"][0]["resource"]}
    task_params = {p["name"] for p in by_type["Task"]["searchParam"]}
    assert {"patient", "status", "owner", "based-on", "authored-on", "period", "_id",
            "_lastUpdated"} <= task_params
    assert "Task:output" in by_type["Task"]["searchInclude"]
    assert {"code": "transaction"} in cs["rest"][0]["interaction"]


def test_create_read_vread_update_delete_with_headers(client):
    p = patient(client)
    r = post(client, "/fhir/Task", task(p["id"]))
    assert r.status_code == 201
    t = r.get_json()
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"].endswith(f"/fhir/Task/{t['id']}/_history/1")
    assert "Last-Modified" in r.headers
    assert t["meta"]["versionId"] == "1"

    r = client.get(f"/fhir/Task/{t['id']}")
    assert r.status_code == 200 and r.get_json()["status"] == "requested"
    assert client.get(f"/fhir/Task/{t['id']}", headers={"If-None-Match": 'W/"1"'}).status_code == 304

    r = put(client, f"/fhir/Task/{t['id']}", dict(t, status="in-progress"), **{"If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.headers["ETag"] == 'W/"2"'
    r = put(client, f"/fhir/Task/{t['id']}", dict(t, status="completed"), **{"If-Match": 'W/"1"'})
    assert r.status_code == 412
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Task/{t['id']}").get_json()["status"] == "in-progress"

    assert client.get(f"/fhir/Task/{t['id']}/_history/1").get_json()["status"] == "requested"
    assert client.delete(f"/fhir/Task/{t['id']}").status_code == 204
    r = client.get(f"/fhir/Task/{t['id']}")
    assert r.status_code == 410 and r.get_json()["issue"][0]["code"] == "deleted"
    hist = client.get(f"/fhir/Task/{t['id']}/_history").get_json()
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT", "POST"]
    assert "resource" not in hist["entry"][0]


def test_prefer_return(client):
    p = patient(client)
    r = post(client, "/fhir/Task", task(p["id"]), Prefer="return=minimal")
    assert r.status_code == 201 and r.data == b"" and r.headers["Location"]
    r = post(client, "/fhir/Task", task(p["id"]), Prefer="return=OperationOutcome")
    assert r.get_json()["resourceType"] == "OperationOutcome"


def test_update_as_create_and_conditional_create(client):
    r = put(client, "/fhir/Patient/p-123", {"resourceType": "Patient", "id": "p-123"})
    assert r.status_code == 201
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "42"}]}
    first = post(client, "/fhir/Patient", body, **{"If-None-Exist": "identifier=urn:mrn|42"})
    again = post(client, "/fhir/Patient", body, **{"If-None-Exist": "identifier=urn:mrn|42"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.get_json()["id"] == again.get_json()["id"]


def test_search_get_and_post_with_paging(client):
    p = patient(client)
    other = patient(client, "Other")
    for _ in range(5):
        post(client, "/fhir/Task", task(p["id"]))
    post(client, "/fhir/Task", task(other["id"]))
    post(client, "/fhir/Task", task(p["id"], status="completed"))
    r = client.get(f"/fhir/Task?patient={p['id']}&status=requested&_count=2")
    bundle = r.get_json()
    assert bundle["type"] == "searchset" and bundle["total"] == 5
    seen = [e["resource"]["id"] for e in bundle["entry"]]
    while nxt := next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None):
        bundle = client.get(nxt.replace("http://localhost", "")).get_json()
        seen += [e["resource"]["id"] for e in bundle["entry"]]
    assert len(seen) == 5 == len(set(seen))
    r = client.post("/fhir/Task/_search", data={"patient": f"Patient/{p['id']}", "status": "completed"})
    assert r.get_json()["total"] == 1


def test_unknown_search_parameter_lenient_and_strict(client):
    r = client.get("/fhir/Task?colour=blue")
    bundle = r.get_json()
    assert r.status_code == 200
    outcome = [e for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]
    assert "colour" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    r = client.get("/fhir/Task?colour=blue", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400 and "colour" in r.get_json()["issue"][0]["diagnostics"]


def test_history_since_and_paging(client):
    p = patient(client)
    for _ in range(3):
        post(client, "/fhir/Task", task(p["id"]))
    all_entries = client.get("/fhir/_history").get_json()["entry"]
    assert len(all_entries) == 4
    cutoff = all_entries[1]["response"]["lastModified"]
    since = client.get(f"/fhir/Task/_history?_since={cutoff}").get_json()
    assert len(since["entry"]) == 2
    page = client.get("/fhir/_history?_count=3").get_json()
    assert len(page["entry"]) == 3 and page["link"][1]["relation"] == "next"


def test_transaction_through_the_api(client):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:a1", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": task("x") | {"for": {"reference": "urn:uuid:a1"}},
         "request": {"method": "POST", "url": "Task"}},
    ]}
    r = post(client, "/fhir", bundle)
    assert r.status_code == 200, r.data
    out = r.get_json()
    pid = out["entry"][0]["resource"]["id"]
    assert out["entry"][1]["resource"]["for"]["reference"] == f"Patient/{pid}"
    assert out["entry"][1]["response"]["status"] == "201 Created"


BAD_BODIES = [
    pytest.param(b"{not json", "Task", 400, id="malformed-json"),
    pytest.param({"resourceType": "Patient"}, "Task", 400, id="wrong-resourceType"),
    pytest.param({"resourceType": "Task", "status": "requested", "intent": "order", "colour": 1},
                 "Task", 400, id="unknown-element"),
    pytest.param({"resourceType": "Task", "status": "finished", "intent": "order"}, "Task", 400,
                 id="bad-code"),
    pytest.param({"resourceType": "Task", "intent": "order"}, "Task", 400, id="missing-required"),
    pytest.param({"resourceType": "Task", "status": "requested", "intent": "order",
                  "authoredOn": "yesterday"}, "Task", 400, id="bad-datetime"),
    pytest.param([1, 2], "Task", 400, id="json-array"),
]


@pytest.mark.parametrize("body,rtype,status", BAD_BODIES)
def test_bad_create_is_rejected_and_nothing_changes(app, client, body, rtype, status):
    patient(client)
    before = snapshot(app)
    r = post(client, f"/fhir/{rtype}", body)
    assert r.status_code == status
    outcome = r.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error" and outcome["issue"][0]["diagnostics"]
    assert snapshot(app) == before


def test_wrong_content_type_and_method(client):
    r = client.post("/fhir/Task", data="status=requested",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert client.patch("/fhir/Task/1", data="[]").status_code == 405
    assert client.get("/fhir/Nonsense").status_code == 404
    assert client.get("/fhir/Task/does-not-exist").status_code == 404
    assert client.get("/fhir/Task/x/_history/abc").status_code == 404


def test_bad_search_values(client):
    for query in ("_count=-1", "_count=ten", "authored-on=lastweek", "authored-on=xx2024",
                  "_sort=colour", "status:fuzzy=requested", "_total=some"):
        r = client.get(f"/fhir/Task?{query}")
        assert r.status_code == 400, query
        assert r.get_json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/_history?_since=notadate").status_code == 400
    assert client.get("/fhir/_history?_count=0").status_code == 400


def test_transaction_with_one_bad_entry_stores_nothing(app, client):
    patient(client)
    before = snapshot(app)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Task", "status": "nope", "intent": "order"},
         "request": {"method": "POST", "url": "Task"}},
    ]}
    r = post(client, "/fhir", bundle)
    assert r.status_code == 400
    assert "entry[1]" in r.get_json()["issue"][0]["expression"][0]
    assert snapshot(app) == before


def test_transaction_failing_midway_rolls_back(app, client):
    p = patient(client)
    before = snapshot(app)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": p["id"]},
         "request": {"method": "PUT", "url": f"Patient/{p['id']}", "ifMatch": 'W/"9"'}},
    ]}
    r = post(client, "/fhir", bundle)
    assert r.status_code == 412
    assert snapshot(app) == before


def test_update_id_mismatch_and_stale_if_match_change_nothing(app, client):
    p = patient(client)
    before = snapshot(app)
    assert put(client, f"/fhir/Patient/{p['id']}", dict(p, id="other")).status_code == 400
    assert put(client, f"/fhir/Patient/{p['id']}", p, **{"If-Match": 'W/"7"'}).status_code == 412
    assert put(client, f"/fhir/Patient/{p['id']}", p, **{"If-Match": "banana"}).status_code == 400
    assert snapshot(app) == before


def test_unexpected_errors_are_operation_outcomes_without_traces(app, client):
    @app.get("/fhir-boom")
    def boom():  # pragma: no cover - exercised through the client
        raise RuntimeError("secret internals")

    r = client.get("/fhir-boom", headers={"Accept": "application/fhir+json"})
    assert r.status_code == 500
    assert b"secret internals" not in r.data and b"Traceback" not in r.data
