"""Concurrent writers: If-Match lets exactly one writer win each version; conditional creates make one resource.

Runs on one SqlStore shared by the threads (SQLite and PostgreSQL), and over
HTTP with one RemoteStore per thread against the app's /fhir API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hw_fhir.errors import VersionConflict
from hw_fhir.store import SqlStore, Store, open_store
from hw_fhir.store.remote import RemoteStore

THREADS = 8
NOTES_PER_THREAD = 3


@pytest.fixture
def shared_store(db_url: str) -> Iterator[SqlStore]:
    """One migrated SqlStore that every thread uses."""
    store = open_store(db_url)
    yield store
    store.dispose()


def run_threads(work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(n)`` in THREADS threads released together; return results, re-raise any error."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS
    errors: list[BaseException] = []

    def target(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[n] = work(n)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer thread hung"
    if errors:
        raise errors[0]
    return results


def append_notes(store: Store, task_id: str, n: int) -> tuple[list[str], int]:
    """Append this thread's notes one by one (read, change, If-Match write, retry on conflict)."""
    won: list[str] = []
    conflicts = 0
    while len(won) < NOTES_PER_THREAD:
        current = store.read("Task", task_id)
        notes = list(current.resource.get("note") or [])
        notes.append({"text": f"thread {n} note {len(won)}"})
        try:
            result = store.update(dict(current.resource, note=notes), if_match=current.version_id)
        except VersionConflict:
            conflicts += 1
            continue
        won.append(result.stored.version_id)
    return won, conflicts


def check_no_lost_update(store: Store, task_id: str, results: list[tuple[list[str], int]]) -> None:
    """Each version has exactly one winner and every note survives, in version order."""
    assert sum(conflicts for _, conflicts in results) > 0, "the writers never collided"
    versions = sorted(int(v) for won, _ in results for v in won)
    writes = THREADS * NOTES_PER_THREAD
    assert versions == list(range(2, writes + 2)), "two writers won the same version"
    final = store.read("Task", task_id)
    assert final.version_id == str(writes + 1)
    texts = [note["text"] for note in final.resource["note"]]
    expected = {f"thread {n} note {i}" for n in range(THREADS) for i in range(NOTES_PER_THREAD)}
    assert len(texts) == writes and set(texts) == expected
    history = store.history("Task", task_id, count=1000).entries
    assert [e.version_id for e in history] == [str(v) for v in range(writes + 1, 0, -1)]
    previous: list[str] = []
    for entry in reversed(history):  # every version extends the one before it
        notes = [note["text"] for note in entry.resource.get("note") or []]
        assert notes[:len(previous)] == previous and len(notes) == len(previous) + (entry.version_id != "1")
        previous = notes


def new_task(store: Store) -> str:
    """Create the Task the threads fight over."""
    return store.create({"resourceType": "Task", "status": "requested", "intent": "order",
                         "for": {"reference": "Patient/race"}}).stored.id


def test_if_match_writers_never_lose_an_update(shared_store: SqlStore) -> None:
    task_id = new_task(shared_store)
    results = run_threads(lambda n: append_notes(shared_store, task_id, n))
    check_no_lost_update(shared_store, task_id, results)


def test_if_match_writers_over_http(live_server: Any) -> None:
    base = f"{live_server.url}/fhir"
    with RemoteStore(base) as setup:
        task_id = new_task(setup)

        def work(n: int) -> tuple[list[str], int]:
            with RemoteStore(base) as mine:
                return append_notes(mine, task_id, n)

        check_no_lost_update(setup, task_id, run_threads(work))


def conditional_create_race(make_store: Callable[[], Store], store: Store, rounds: int = 4) -> None:
    """Race THREADS conditional creates with one identifier, several times; expect one resource each."""
    for r in range(rounds):
        value = f"race-{r}"

        def work(n: int) -> tuple[bool, str]:
            mine = make_store()
            try:
                result = mine.create(
                    {"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": value}],
                     "name": [{"family": f"Thread{n}"}]},
                    if_none_exist=f"identifier=urn:race|{value}")
            finally:
                if isinstance(mine, RemoteStore) and mine is not store:
                    mine.close()
            return result.created, result.stored.id

        results = run_threads(work)
        assert sum(created for created, _ in results) == 1
        assert len({rid for _, rid in results}) == 1
        found = store.search("Patient", [("identifier", f"urn:race|{value}")])
        assert [m.id for m in found.matches] == [results[0][1]]
    assert len(store.history("Patient", count=1000).entries) == rounds


def test_concurrent_conditional_creates_make_one_resource(shared_store: SqlStore) -> None:
    conditional_create_race(lambda: shared_store, shared_store)


def test_concurrent_conditional_creates_over_http(live_server: Any) -> None:
    base = f"{live_server.url}/fhir"
    with RemoteStore(base) as store:
        conditional_create_race(lambda: RemoteStore(base), store)
