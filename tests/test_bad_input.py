"""Bad input over real HTTP gets a 4xx with an OperationOutcome (or a readable page), never a 500,
and nothing is stored: deep JSON, NUL characters, absurd cursors, CR/LF in redirects, and the
configured size/shape limits. On SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from conftest import serve
from patient_support import csrf, give_homework, link_for, patient_app

JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def api(app_config: dict[str, Any], db_url: str):
    from smart_app import create_app

    app = create_app({**app_config, "database_url": db_url, "max_resource_bytes": 50_000,
                      "max_array_length": 1_000, "max_depth": 20, "max_index_rows": 300})
    server = serve(app)
    yield app, server.url
    server.stop()
    app.extensions["hw_fhir"].close()


def _outcome(r: requests.Response, *statuses: int) -> dict[str, Any]:
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "Traceback" not in r.text
    return body


def _count(app: Any, rtype: str) -> int:
    return len(app.extensions["hw_fhir"].store.search(rtype, [("_count", "1000")]).matches)


def _nested(levels: int) -> bytes:
    return b"[" * levels + b'"x"' + b"]" * levels


@pytest.mark.parametrize("levels", [25, 900, 1000])
def test_deeply_nested_json_is_refused(api, levels):
    app, url = api
    body = b'{"resourceType":"Patient","extension":' + _nested(levels) + b"}"
    r = requests.post(f"{url}/fhir/Patient", data=body, headers=JSON, timeout=30)
    _outcome(r, 400, 422)
    bundle = (b'{"resourceType":"Bundle","type":"transaction","entry":[{"resource":'
              + body + b',"request":{"method":"POST","url":"Patient"}}]}')
    _outcome(requests.post(f"{url}/fhir", data=bundle, headers=JSON, timeout=30), 400, 422)
    assert _count(app, "Patient") == 0


def test_nul_characters_in_strings_and_search_values_are_refused(api):
    app, url = api
    r = requests.post(f"{url}/fhir/Patient", headers=JSON, timeout=10,
                      json={"resourceType": "Patient", "name": [{"family": "a\u0000b"}]})
    assert "NUL" in str(_outcome(r, 400))
    r = requests.put(f"{url}/fhir/Patient/p1", headers=JSON, timeout=10,
                     json={"resourceType": "Patient", "id": "p1", "gender": "other",
                           "name": [{"\u0000family": "x"}]})
    _outcome(r, 400)
    assert _count(app, "Patient") == 0
    for query in ("family=a%00b", "name%00=x", "_id=%00", "identifier=urn:x|a%00"):
        _outcome(requests.get(f"{url}/fhir/Patient?{query}", timeout=10), 400)
    _outcome(requests.post(f"{url}/fhir/Patient/_search", data={"family": "a\x00b"}, timeout=10),
             400)
    _outcome(requests.get(f"{url}/fhir/Patient/_history?_since=2026%00", timeout=10), 400)


@pytest.mark.parametrize("cursor", ["-99999999999999999999999", "99999999999999999999999", "-1",
                                    "1e5", "%00"])
def test_absurd_history_cursors_are_400(api, cursor):
    _, url = api
    requests.post(f"{url}/fhir/Patient", json={"resourceType": "Patient"}, headers=JSON, timeout=10)
    for path in ("_history", "Patient/_history"):
        _outcome(requests.get(f"{url}/fhir/{path}?_cursor={cursor}", timeout=10), 400)


def test_a_resource_over_the_size_limit_is_413(api):
    app, url = api
    big = {"resourceType": "Patient", "name": [{"text": "x" * 60_000}]}
    body = _outcome(requests.post(f"{url}/fhir/Patient", json=big, headers=JSON, timeout=10), 413)
    assert "HW_FHIR_MAX_RESOURCE_BYTES" in str(body)
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": big, "request": {"method": "POST", "url": "Patient"}}]}
    _outcome(requests.post(f"{url}/fhir", json=bundle, headers=JSON, timeout=10), 413)
    assert _count(app, "Patient") == 0


def test_arrays_depth_and_index_rows_over_their_limits_are_422(api):
    app, url = api
    many = {"resourceType": "Patient",
            "identifier": [{"system": "urn:x", "value": str(n)} for n in range(1_001)]}
    assert "HW_FHIR_MAX_ARRAY_LENGTH" in str(_outcome(
        requests.post(f"{url}/fhir/Patient", json=many, headers=JSON, timeout=10), 422))
    rows = {"resourceType": "Patient",
            "identifier": [{"system": "urn:x", "value": str(n)} for n in range(400)]}
    assert "HW_FHIR_MAX_INDEX_ROWS" in str(_outcome(
        requests.put(f"{url}/fhir/Patient/rows", json={**rows, "id": "rows"}, headers=JSON,
                     timeout=10), 422))
    deep: Any = {"url": "urn:leaf", "valueString": "x"}
    for _ in range(12):
        deep = {"url": "urn:x", "extension": [deep]}
    body = _outcome(requests.post(f"{url}/fhir/Patient", json={"resourceType": "Patient",
                                                               "extension": [deep]},
                                  headers=JSON, timeout=10), 422)
    assert "HW_FHIR_MAX_DEPTH" in str(body)
    assert _count(app, "Patient") == 0
    fine = {"resourceType": "Patient",
            "identifier": [{"system": "urn:x", "value": str(n)} for n in range(50)]}
    assert requests.post(f"{url}/fhir/Patient", json=fine, headers=JSON, timeout=10).status_code == 201


def test_limits_are_checked_at_start_up():
    from hw_fhir.config import load_settings
    from hw_fhir.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="MAX_DEPTH"):
        load_settings({}, max_depth=500)
    with pytest.raises(ConfigurationError, match="MAX_RESOURCE_BYTES"):
        load_settings({}, max_resource_bytes=0)


def test_cr_lf_in_the_sign_out_next_is_not_followed(app_config):
    app = patient_app(app_config)
    server = serve(app)
    try:
        task = give_homework(app, "thought-record")
        browser = requests.Session()
        for after in ("/p/x\r\nSet-Cookie: planted=1", "/p/x\nLocation: https://evil.example",
                      "/p/\\evil.example", "/p/x\x00"):
            # signing out rotates the session (and its CSRF token): sign in again each time
            page = browser.get(f"{server.url}{link_for(app, task)}", timeout=10)
            assert page.status_code == 200, page.text[:300]
            token = csrf(page.text)
            r = browser.post(f"{server.url}/my/signout", allow_redirects=False, timeout=10,
                             data={"csrf_token": token, "next": after})
            assert r.status_code == 200, (after, r.status_code)
            assert "signed out" in r.text and "planted" not in r.headers.get("Set-Cookie", "")
            assert "Location" not in r.headers
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()


def test_nul_in_a_search_value_is_refused_by_the_store_itself(sql_store):
    """Any reader (pages, workers), not only /fhir: InvalidSearch, not a database error."""
    from hw_fhir.errors import InvalidSearch

    with pytest.raises(InvalidSearch):
        sql_store.search("Patient", [("family", "a\x00b")])
    with pytest.raises(InvalidSearch):
        sql_store.search("Patient", [("identifier", "urn:x|\x00")])
