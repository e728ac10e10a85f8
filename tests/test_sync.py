"""Incremental sync while writes happen: ``_history`` and ``_lastUpdated`` paging, the change feed.

A writer thread keeps creating and updating resources while a reader pages; every
version that existed when paging began must be read, and none twice.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import pytest
import requests
from conftest import serve
from sqlalchemy import select
from sync_support import task

from hw_fhir.store import schema as S
from hw_fhir.sync.changes import barrier, read_changes


class Writer:
    """A thread that creates and updates Tasks until stopped."""

    def __init__(
        self,
        create: Callable[[dict[str, Any]], dict[str, Any]],
        update: Callable[[dict[str, Any]], Any],
    ) -> None:
        self.create, self.update = create, update
        self.stop = threading.Event()
        self.count = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            made: list[dict[str, Any]] = []
            while not self.stop.is_set():
                made.append(self.create(task(f"w{self.count % 5}")))
                if self.count % 3 == 0 and made:
                    current = made[self.count % len(made)]
                    made[self.count % len(made)] = (
                        self.update({**current, "status": "in-progress"}) or current
                    )
                self.count += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def __enter__(self) -> "Writer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert self.error is None, self.error


def _versions(store: Any) -> set[tuple[str, str, str]]:
    v = S.resource_version
    with store.engine.connect() as conn:
        return {
            (r.res_type, r.res_id, str(r.version_id))
            for r in conn.execute(select(v.c.res_type, v.c.res_id, v.c.version_id))
        }


def test_history_pages_skip_and_repeat_nothing_while_writes_happen(sql_store: Any) -> None:
    for i in range(150):
        sql_store.create(task(f"p{i % 10}"))
    before = _versions(sql_store)

    def update(resource: dict[str, Any]) -> dict[str, Any]:
        return sql_store.update(resource).resource

    seen: list[tuple[str, str, str]] = []
    with Writer(lambda r: sql_store.create(r).resource, update) as writer:
        cursor = None
        while True:
            page = sql_store.history(count=17, cursor=cursor)
            seen.extend((e.resource_type, e.id, e.version_id) for e in page.entries)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert writer.count > 0, "the writer wrote nothing while paging"
    assert len(seen) == len(set(seen)), "a version was returned twice"
    assert before <= set(seen), "a version that existed before paging was skipped"


@pytest.fixture
def served(app: Any) -> Iterator[str]:
    server = serve(app)
    yield server.url
    server.stop()


def _http_writer(base: str) -> Writer:
    session = requests.Session()

    def create(resource: dict[str, Any]) -> dict[str, Any]:
        r = session.post(
            f"{base}/fhir/Task",
            json=resource,
            timeout=10,
            headers={"Content-Type": "application/fhir+json"},
        )
        assert r.status_code == 201, r.text
        return r.json()

    def update(resource: dict[str, Any]) -> dict[str, Any]:
        r = session.put(
            f"{base}/fhir/Task/{resource['id']}",
            json=resource,
            timeout=10,
            headers={"Content-Type": "application/fhir+json"},
        )
        assert r.status_code == 200, r.text
        return r.json()

    return Writer(create, update)


def _follow(url: str) -> Iterator[dict[str, Any]]:
    while url:
        bundle = requests.get(url, timeout=10).json()
        assert bundle["resourceType"] == "Bundle", bundle
        yield from bundle.get("entry", [])
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), "")


def test_history_over_http_while_another_client_writes(app: Any, served: str) -> None:
    store = app.extensions["hw_fhir"].store
    for i in range(120):
        store.create(task(f"p{i % 10}"))
    before = _versions(store)
    with _http_writer(served) as writer:
        seen = [
            (*e["fullUrl"].rsplit("/", 2)[-2:], e["response"]["etag"].split('"')[1])
            for e in _follow(f"{served}/fhir/_history?_count=13")
        ]
    assert writer.count > 0
    assert len(seen) == len(set(seen))
    assert before <= set(seen)


def test_history_since_returns_exactly_the_later_versions(app: Any, served: str) -> None:
    store = app.extensions["hw_fhir"].store
    for _ in range(20):
        store.create(task("p"))
    since = barrier(store).instant
    later = {store.create(task("q")).stored.id for _ in range(30)}
    got = [
        e["fullUrl"].rsplit("/", 1)[1]
        for e in _follow(f"{served}/fhir/Task/_history?_since={since}&_count=7")
    ]
    assert sorted(got) == sorted(later)


def test_last_updated_search_pages_while_another_client_writes(app: Any, served: str) -> None:
    store = app.extensions["hw_fhir"].store
    ids = {store.create(task(f"p{i % 4}")).stored.id for i in range(120)}
    with _http_writer(served) as writer:
        seen = [
            (e["resource"]["id"], e["resource"]["meta"]["versionId"])
            for e in _follow(f"{served}/fhir/Task?_lastUpdated=ge2000-01-01&_count=11")
        ]
    assert writer.count > 0
    assert len(seen) == len(set(seen)), "a version was returned twice"
    assert ids <= {i for i, _ in seen}, "a resource that existed before paging was skipped"


def test_change_feed_with_concurrent_writers_misses_nothing(sql_store: Any) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            while not stop.is_set():
                sql_store.create(task(f"t{n}"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    seen: list[int] = []
    cursor = 0
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            horizon = barrier(sql_store).seq
            with sql_store.engine.connect() as conn:
                while True:
                    changes = read_changes(conn, after=cursor, upto=horizon, limit=50)
                    seen.extend(c.seq for c in changes)
                    if len(changes) < 50:
                        cursor = horizon
                        break
                    cursor = changes[-1].seq
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    horizon = barrier(sql_store).seq
    with sql_store.engine.connect() as conn:
        seen.extend(c.seq for c in read_changes(conn, after=cursor, upto=horizon, limit=10**6))
        everything = [
            r.seq
            for r in conn.execute(
                select(S.resource_version.c.seq).order_by(S.resource_version.c.seq)
            )
        ]
    assert len(everything) > 100
    assert seen == everything, "the feed skipped or repeated a write"
