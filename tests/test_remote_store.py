"""RemoteStore against a scripted, flaky FHIR server on 127.0.0.1: retries, auth, errors, paging.

The server counts every request it receives, so "not retried" is checked on
the server side, not by trusting the client.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from hw_fhir.errors import (
    BusinessRuleError,
    Conflict,
    Forbidden,
    Gone,
    HwFhirError,
    InvalidInput,
    InvalidResource,
    InvalidSearch,
    NotFound,
    RemoteError,
    Unauthorized,
    VersionConflict,
)
from hw_fhir.store import Store
from hw_fhir.store.remote import RemoteStore


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """One scripted answer."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def outcome(message: str, code: str = "exception", expression: str | None = None) -> dict[str, Any]:
    """Return an OperationOutcome with one issue."""
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def stored_patient(pid: str = "p-1", version: str = "1", family: str = "Lindgren") -> dict[str, Any]:
    """Return a Patient as a server stores it."""
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}],
            "meta": {"versionId": version, "lastUpdated": "2026-01-02T03:04:05.000006Z"}}


class FlakyFhir:
    """A tiny FHIR server: answers from a script first, then like a well-behaved server."""

    def __init__(self) -> None:
        self.replies: list[Reply | Callable[[Seen], Reply]] = []
        self.default: Callable[[Seen], Reply] = self.well_behaved
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def handle_any(self) -> None:
                outer.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_port}"
        self.url = f"{self.origin}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def script(self, *replies: Reply | Callable[[Seen], Reply]) -> None:
        """Queue answers for the next requests."""
        self.replies.extend(replies)

    def well_behaved(self, seen: Seen) -> Reply:
        """Answer like a correct FHIR server would."""
        parts = [p for p in seen.path.split("?")[0].split("/") if p][1:]  # below /fhir
        if seen.method == "POST" and not parts:
            return Reply(200, {"resourceType": "Bundle", "type": "transaction-response", "entry": []})
        if seen.method == "POST":
            return Reply(201, dict(seen.json, id="new-1",
                                   meta={"versionId": "1", "lastUpdated": "2026-01-02T03:04:05Z"}))
        if seen.method == "PUT":
            return Reply(200, dict(seen.json, meta={"versionId": "2",
                                                    "lastUpdated": "2026-01-02T03:04:06Z"}))
        if seen.method == "DELETE":
            return Reply(204)
        if len(parts) >= 2 and parts[1] != "_history":
            return Reply(200, stored_patient(parts[1]))
        return Reply(200, {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []})

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        seen = Seen(h.command, h.path, {k.lower(): v for k, v in h.headers.items()},
                    h.rfile.read(length) if length else b"", time.monotonic())
        with self.lock:
            self.seen.append(seen)
            reply = self.replies.pop(0) if self.replies else self.default
        if not isinstance(reply, Reply):
            reply = reply(seen)
        time.sleep(reply.delay)
        payload = json.dumps(reply.body).encode() if reply.body is not None else b""
        try:
            h.send_response(reply.status)
            for key, value in reply.headers.items():
                h.send_header(key, value)
            h.send_header("Content-Type", "application/fhir+json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FlakyFhir]:
    """A scripted FHIR server on 127.0.0.1."""
    flaky = FlakyFhir()
    yield flaky
    flaky.close()


def remote(server: FlakyFhir, **kwargs: Any) -> RemoteStore:
    """A RemoteStore for the scripted server with quick backoff."""
    kwargs.setdefault("backoff", 0.01)
    return RemoteStore(server.url, **kwargs)


class CountingSession(requests.Session):
    """A requests Session that counts the requests it was asked to send."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.calls += 1
        return super().request(*args, **kwargs)


def closed_port() -> int:
    """Return a local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NEW_PATIENT = {"resourceType": "Patient", "name": [{"family": "Lindgren"}],
               "identifier": [{"system": "urn:mrn", "value": "42"}]}


# ---------------------------------------------------------------- retries


def test_remote_store_satisfies_the_protocol(server: FlakyFhir) -> None:
    assert isinstance(remote(server), Store)


def test_503_then_200_is_retried(server: FlakyFhir) -> None:
    server.script(Reply(503, outcome("warming up")))
    stored = remote(server).read("Patient", "p-7")
    assert stored.id == "p-7" and stored.version_id == "1"
    assert [s.method + " " + s.path for s in server.seen] == ["GET /fhir/Patient/p-7"] * 2


def test_giving_up_raises_remote_error_with_the_servers_issues(server: FlakyFhir) -> None:
    server.script(*[Reply(502, outcome("upstream EHR is down", code="transient"))] * 10)
    with pytest.raises(RemoteError) as info:
        remote(server, retries=2).read("Patient", "p-1")
    assert len(server.seen) == 3
    assert info.value.status == 502 and info.value.response.status_code == 502
    assert [i.message for i in info.value.issues] == ["upstream EHR is down"]
    assert info.value.issues[0].code == "transient"


@pytest.mark.parametrize("header", ["1", "http-date"])
def test_429_waits_for_retry_after(server: FlakyFhir, header: str) -> None:
    value = "1" if header == "1" else formatdate(time.time() + 2, usegmt=True)
    server.script(Reply(429, outcome("slow down", code="throttled"), {"Retry-After": value}))
    stored = remote(server, backoff=0.01).read("Patient", "p-1")
    assert stored.id == "p-1"
    assert len(server.seen) == 2
    assert server.seen[1].at - server.seen[0].at >= 0.95


def test_retry_after_beyond_the_limit_is_not_waited_for(server: FlakyFhir) -> None:
    server.script(Reply(429, outcome("come back tomorrow"), {"Retry-After": "86400"}))
    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        remote(server, max_retry_after=5).read("Patient", "p-1")
    assert time.monotonic() - started < 3
    assert info.value.status == 429 and len(server.seen) == 1


def test_backoff_grows_between_attempts(server: FlakyFhir) -> None:
    server.script(*[Reply(500)] * 3)
    remote(server, retries=3, backoff=0.2).read("Patient", "p-1")
    gaps = [b.at - a.at for a, b in zip(server.seen, server.seen[1:])]
    assert len(gaps) == 3
    # jittered between half and all of 0.2, 0.4, 0.8 seconds: the third wait outlasts any first
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and 0.39 <= gaps[2] < 3


def test_connection_refused_is_retried_then_remote_error() -> None:
    session = CountingSession()
    store = RemoteStore(f"http://127.0.0.1:{closed_port()}/fhir", retries=2, backoff=0.05,
                        session=session)
    with pytest.raises(RemoteError) as info:
        store.read("Patient", "p-1")
    assert session.calls == 3
    assert info.value.response is None
    # nothing was sent, so even a plain create may be tried again
    with pytest.raises(RemoteError):
        store.create(NEW_PATIENT)
    assert session.calls == 6


@pytest.mark.parametrize("reply", [Reply(500, outcome("boom")), Reply(503), Reply(502),
                                   Reply(429, headers={"Retry-After": "0"})],
                         ids=["500", "503", "502", "429"])
def test_plain_create_is_never_retried(server: FlakyFhir, reply: Reply) -> None:
    server.script(reply)
    with pytest.raises(RemoteError) as info:
        remote(server, retries=5).create(NEW_PATIENT)
    assert info.value.status == reply.status
    time.sleep(0.1)
    assert [(s.method, s.path) for s in server.seen] == [("POST", "/fhir/Patient")]


def test_plain_create_that_times_out_is_not_retried(server: FlakyFhir) -> None:
    server.script(Reply(201, dict(NEW_PATIENT, id="slow"), delay=1.0))
    with pytest.raises(RemoteError):
        remote(server, timeout=0.3, retries=3).create(NEW_PATIENT)
    time.sleep(1.0)
    assert len(server.seen) == 1


def test_get_that_times_out_is_retried(server: FlakyFhir) -> None:
    # the retry must answer within the timeout even on a loaded CI machine: 2 s, not 0.3 s
    server.script(Reply(200, stored_patient("p-1"), delay=4.0))
    stored = remote(server, timeout=2.0).read("Patient", "p-1")
    assert stored.id == "p-1" and len(server.seen) == 2


@pytest.mark.parametrize("second, created", [(201, True), (200, False)])
def test_conditional_create_is_retried(server: FlakyFhir, second: int, created: bool) -> None:
    server.script(Reply(503), Reply(second, stored_patient("p-9")))
    result = remote(server).create(NEW_PATIENT, if_none_exist="identifier=urn:mrn|42")
    assert result.created is created and result.stored.id == "p-9"
    assert len(server.seen) == 2
    assert {s.headers["if-none-exist"] for s in server.seen} == {"identifier=urn:mrn|42"}
    assert all(s.headers["prefer"] == "return=representation" for s in server.seen)
    assert "id" not in server.seen[0].json


def test_transaction_is_retried_only_when_every_entry_is_safe(server: FlakyFhir) -> None:
    unsafe = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": NEW_PATIENT, "request": {"method": "POST", "url": "Patient"}}]}
    safe = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": NEW_PATIENT, "request": {"method": "POST", "url": "Patient",
                                              "ifNoneExist": "identifier=urn:mrn|42"}},
        {"resource": stored_patient("p-2"), "request": {"method": "PUT", "url": "Patient/p-2"}},
        {"request": {"method": "DELETE", "url": "Patient/p-3"}}]}
    store = remote(server)
    server.script(Reply(503))
    with pytest.raises(RemoteError):
        store.transaction(unsafe)
    assert len(server.seen) == 1
    server.script(Reply(503))
    assert store.transaction(safe)["type"] == "transaction-response"
    assert len(server.seen) == 3 and server.seen[-1].path == "/fhir"


# ------------------------------------------------------------------- auth


def test_token_provider_is_called_for_every_request(server: FlakyFhir) -> None:
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return f"token-{len(calls)}"

    store = remote(server, token_provider=provider)
    store.read("Patient", "p-1")
    store.search("Patient", [("name", "x")])
    store.update(stored_patient("p-1"))
    assert [s.headers["authorization"] for s in server.seen] == \
        ["Bearer token-1", "Bearer token-2", "Bearer token-3"]


class Tokens:
    """A token provider whose first token is stale until refreshed."""

    def __init__(self) -> None:
        self.current = "stale"
        self.calls: list[bool] = []

    def __call__(self, *, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        if force_refresh:
            self.current = "fresh"
        return self.current


def only_fresh(server: FlakyFhir) -> Callable[[Seen], Reply]:
    def answer(seen: Seen) -> Reply:
        if seen.headers.get("authorization") != "Bearer fresh":
            return Reply(401, outcome("token expired", code="login"),
                         {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return server.well_behaved(seen)
    return answer


def test_401_refreshes_the_token_and_repeats_once(server: FlakyFhir) -> None:
    server.default = only_fresh(server)
    tokens = Tokens()
    store = remote(server, token_provider=tokens)
    assert store.read("Patient", "p-1").id == "p-1"
    assert tokens.calls == [False, True]
    assert [s.headers["authorization"] for s in server.seen] == ["Bearer stale", "Bearer fresh"]
    result = store.create(NEW_PATIENT)  # a refused create was not stored: safe to repeat
    assert result.created and tokens.calls == [False, True, False]
    assert [s.method for s in server.seen] == ["GET", "GET", "POST"]


def test_401_twice_raises_unauthorized(server: FlakyFhir) -> None:
    server.default = lambda seen: Reply(401, outcome("no", code="login"))
    tokens = Tokens()
    with pytest.raises(Unauthorized) as info:
        remote(server, token_provider=tokens).create(NEW_PATIENT)
    assert tokens.calls == [False, True] and len(server.seen) == 2
    assert info.value.issues[0].message == "no"


def test_provider_without_force_refresh_is_asked_again(server: FlakyFhir) -> None:
    tokens = iter(["old", "fresh"])
    server.default = only_fresh(server)
    assert remote(server, token_provider=lambda: next(tokens)).read("Patient", "p-1").id == "p-1"
    assert [s.headers["authorization"] for s in server.seen] == ["Bearer old", "Bearer fresh"]


def test_without_a_provider_no_authorization_is_sent(server: FlakyFhir) -> None:
    server.script(Reply(401, outcome("login first", code="login")))
    with pytest.raises(Unauthorized):
        remote(server).read("Patient", "p-1")
    assert len(server.seen) == 1 and "authorization" not in server.seen[0].headers


def test_tokens_queries_and_contents_are_never_logged(server: FlakyFhir,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hw_fhir.store.remote")
    server.script(Reply(401), Reply(503), Reply(503))
    secret = "s3cr3t-access-token"
    store = remote(server, token_provider=lambda: secret)
    store.update(dict(stored_patient("p-1"), name=[{"family": "Very-Private-Name"}]))
    store.search("Patient", [("family", "Hidden-Query-Value")])
    assert caplog.records, "expected retry log lines"
    assert "/fhir/Patient/p-1" in caplog.text
    for leak in (secret, "Very-Private-Name", "Hidden-Query-Value"):
        assert leak not in caplog.text


# ------------------------------------------------------------- HTTP shape


def test_update_sends_if_match_as_a_weak_etag(server: FlakyFhir) -> None:
    store = remote(server)
    for given in ("3", '"3"', 'W/"3"'):
        result = store.update(stored_patient("p-1", version="3"), if_match=given)
        assert result.stored.version_id == "2" and not result.created
    assert {s.headers["if-match"] for s in server.seen} == {'W/"3"'}
    assert all(s.method == "PUT" and s.path == "/fhir/Patient/p-1" for s in server.seen)
    assert server.seen[0].headers["content-type"].startswith("application/fhir+json")


def test_create_without_a_body_reads_the_location(server: FlakyFhir) -> None:
    server.script(Reply(201, None, {"Location": f"{server.url}/Patient/p-5/_history/1"}))
    result = remote(server).create(NEW_PATIENT)
    assert result.created and result.stored.id == "p-5"
    assert [(s.method, s.path) for s in server.seen] == [
        ("POST", "/fhir/Patient"), ("GET", "/fhir/Patient/p-5/_history/1")]


def test_delete_of_a_missing_resource_is_a_no_op(server: FlakyFhir) -> None:
    server.script(Reply(404, outcome("unknown", code="not-found")), Reply(410))
    store = remote(server)
    store.delete("Patient", "gone-1")
    store.delete("Patient", "gone-2")
    server.script(Reply(404, outcome("no such type", code="not-supported")))
    with pytest.raises(NotFound):
        store.delete("Nonsense", "x")


ERROR_CASES = [
    (400, outcome("Patient.birthDate: bad date", "structure", "Patient.birthDate"), InvalidResource),
    (400, outcome("bad header", "invalid"), InvalidInput),
    (401, outcome("login", "login"), Unauthorized),
    (403, outcome("scope patient/*.read does not allow writes", "forbidden"), Forbidden),
    (404, outcome("no such thing", "not-found"), NotFound),
    (410, outcome("deleted", "deleted"), Gone),
    (409, outcome("clash", "conflict"), Conflict),
    (412, outcome("version 3 is not current", "conflict"), VersionConflict),
    (422, outcome("task is already completed", "business-rule"), BusinessRuleError),
    (418, outcome("I'm a teapot", "exception"), RemoteError),
]


@pytest.mark.parametrize("status, body, expected", ERROR_CASES, ids=[str(c[0]) for c in ERROR_CASES])
def test_error_statuses_map_to_the_error_tree(server: FlakyFhir, status: int, body: dict[str, Any],
                                              expected: type[HwFhirError]) -> None:
    server.script(Reply(status, body))
    with pytest.raises(HwFhirError) as info:
        remote(server).update(stored_patient("p-1"))
    assert type(info.value) is expected
    issue = body["issue"][0]
    assert info.value.issues[0].message == issue["diagnostics"]
    assert info.value.issues[0].code == issue["code"]
    assert info.value.issues[0].expression == (issue.get("expression") or [None])[0]
    assert len(server.seen) == 1
    if expected is RemoteError:
        assert info.value.response.status_code == status


def test_bad_search_is_invalid_search(server: FlakyFhir) -> None:
    server.script(Reply(400, outcome("Unknown search parameter 'x'", "not-supported")))
    with pytest.raises(InvalidSearch):
        remote(server).search("Patient", [("x", "1")], strict=True)
    assert server.seen[0].headers["prefer"] == "handling=strict"
    assert server.seen[0].path == "/fhir/Patient?x=1"


def test_error_without_operation_outcome(server: FlakyFhir) -> None:
    server.script(Reply(404, None))
    with pytest.raises(NotFound) as info:
        remote(server).read("Patient", "p-1")
    assert "404" in info.value.message


# ----------------------------------------------------------------- paging


def searchset(ids: list[str], next_url: str | None, total: int | None = None) -> dict[str, Any]:
    links = [{"relation": "self", "url": "ignored"}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links,
                              "entry": [{"resource": stored_patient(i), "search": {"mode": "match"}}
                                        for i in ids]}
    if total is not None:
        bundle["total"] = total
    return bundle


def test_search_pages_through_next_links(server: FlakyFhir) -> None:
    page2 = f"{server.url}/Patient?_count=2&_getpages=abc&_offset=2"
    server.script(Reply(200, searchset(["a", "b"], page2, total=3)), Reply(200, searchset(["c"], None)))
    store = remote(server, token_provider=lambda: "tok")
    first = store.search("Patient", [("_count", "2")])
    assert [m.id for m in first.matches] == ["a", "b"]
    assert first.has_more and first.next_url == page2 and first.total == 3 and first.count == 2
    second = store.next_page(first)
    assert second is not None and [m.id for m in second.matches] == ["c"]
    assert not second.has_more and second.offset == 2 and store.next_page(second) is None
    assert [s.path for s in server.seen] == ["/fhir/Patient?_count=2",
                                             "/fhir/Patient?_count=2&_getpages=abc&_offset=2"]
    assert all(s.headers["authorization"] == "Bearer tok" for s in server.seen)


def test_next_links_to_another_origin_are_not_followed(server: FlakyFhir) -> None:
    server.script(Reply(200, searchset(["a"], "http://elsewhere.invalid/fhir/Patient?page=2")))
    store = remote(server, token_provider=lambda: "tok")
    first = store.search("Patient", [])
    with pytest.raises(RemoteError):
        store.next_page(first)
    assert len(server.seen) == 1


def test_history_maps_the_next_link_to_the_cursor(server: FlakyFhir) -> None:
    page2 = f"{server.url}/Patient/p-1/_history?_count=2&_cursor=17"
    history = {"resourceType": "Bundle", "type": "history",
               "link": [{"relation": "next", "url": page2}],
               "entry": [
                   {"fullUrl": f"{server.url}/Patient/p-1",
                    "request": {"method": "DELETE", "url": "Patient/p-1"},
                    "response": {"status": "204 No Content", "etag": 'W/"3"',
                                 "lastModified": "2026-01-03T00:00:00Z"}},
                   {"fullUrl": f"{server.url}/Patient/p-1", "resource": stored_patient("p-1", "2"),
                    "request": {"method": "PUT", "url": "Patient/p-1"},
                    "response": {"status": "200 OK"}}]}
    last = {"resourceType": "Bundle", "type": "history", "entry": [
        {"resource": stored_patient("p-1", "1"), "request": {"method": "POST", "url": "Patient"},
         "response": {"status": "201 Created"}}]}
    server.script(Reply(200, history), Reply(200, last))
    store = remote(server)
    first = store.history("Patient", "p-1", count=2, since="2026-01-01")
    assert [(e.version_id, e.deleted, e.method) for e in first.entries] == [
        ("3", True, "DELETE"), ("2", False, "PUT")]
    assert first.next_cursor == page2
    rest = store.history("Patient", "p-1", cursor=first.next_cursor)
    assert [(e.version_id, e.method) for e in rest.entries] == [("1", "POST")]
    assert rest.next_cursor is None
    assert server.seen[0].path == "/fhir/Patient/p-1/_history?_count=2&_since=2026-01-01"
    assert server.seen[1].path == "/fhir/Patient/p-1/_history?_count=2&_cursor=17"
