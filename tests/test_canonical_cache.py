"""Questionnaires by canonical from the SQL store's cache, forgotten when one is written."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from hw_fhir.library import resolve_questionnaire
from hw_fhir.store import SqlStore, open_store

URL = "http://example.org/fhir/Questionnaire/mood"


def _questionnaire(version: str, title: str) -> dict[str, Any]:
    return {"resourceType": "Questionnaire", "url": URL, "version": version, "status": "active",
            "title": title, "item": [{"linkId": "mood", "type": "integer", "text": "Mood"}]}


class _Searches:
    """Counts the statements that read the search index (a cache miss searches)."""

    def __init__(self, store: SqlStore) -> None:
        self.store, self.count = store, 0

    def __enter__(self) -> "_Searches":
        event.listen(self.store.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.store.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "sp_uri" in statement:
            self.count += 1


def test_lookups_by_canonical_search_once_until_a_questionnaire_is_written(sql_store: SqlStore) -> None:
    sql_store.create(_questionnaire("1.0.0", "Mood"))
    first = resolve_questionnaire(sql_store, f"{URL}|1.0.0")
    with _Searches(sql_store) as searches:
        again = resolve_questionnaire(sql_store, f"{URL}|1.0.0")
        again["title"] = "changed by a caller"  # callers get their own copy
        third = resolve_questionnaire(sql_store, f"{URL}|1.0.0")
    assert searches.count == 0
    assert first == third and third["title"] == "Mood"

    # an update of the Questionnaire is seen at once
    sql_store.update(dict(first, title="Mood (revised)"))
    with _Searches(sql_store) as searches:
        assert resolve_questionnaire(sql_store, f"{URL}|1.0.0")["title"] == "Mood (revised)"
    assert searches.count >= 1
    # a new version too, for the bare url (newest active version)
    sql_store.create(_questionnaire("2.0.0", "Mood 2"))
    assert resolve_questionnaire(sql_store, URL)["version"] == "2.0.0"
    sql_store.delete("Questionnaire", first["id"])
    assert resolve_questionnaire(sql_store, URL)["version"] == "2.0.0"
    assert sql_store.canonicals.find("Questionnaire", URL, "1.0.0") == []


def test_a_write_by_another_process_is_seen(sql_store: SqlStore) -> None:
    other = open_store(sql_store.url, upgrade=False)  # another process's store on the same database
    try:
        stored = other.create(_questionnaire("1.0.0", "Mood")).stored
        assert resolve_questionnaire(sql_store, f"{URL}|1.0.0")["title"] == "Mood"
        other.update(dict(stored.resource, title="Renamed elsewhere"))
        assert resolve_questionnaire(sql_store, f"{URL}|1.0.0")["title"] == "Renamed elsewhere"
    finally:
        other.dispose()


class _Checks:
    """Counts the cache's checks for writes (the newest version of a type)."""

    def __init__(self, store: SqlStore) -> None:
        self.store, self.count = store, 0

    def __enter__(self) -> "_Checks":
        event.listen(self.store.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.store.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "max(resource_version.seq)" in statement:
            self.count += 1


def test_finds_in_one_checked_block_share_one_check_of_every_definition_type(
        sql_store: SqlStore) -> None:
    cache = sql_store.canonicals
    sql_store.create(_questionnaire("1.0.0", "Mood"))
    with _Checks(sql_store) as checks:  # outside a block: one check per find
        cache.find("Questionnaire", URL, "1.0.0")
        cache.find("CodeSystem", "http://example.org/cs")
    assert checks.count == 2
    other = open_store(sql_store.url, upgrade=False)  # another process's store
    try:
        with _Checks(sql_store) as checks, cache.checked_once():
            # written before the block's first find: seen
            other.create(_questionnaire("2.0.0", "Mood 2"))
            assert [s.resource["title"] for s in cache.find("Questionnaire", URL, "2.0.0")] \
                == ["Mood 2"]
            assert cache.find("CodeSystem", "http://example.org/cs") == []
            assert cache.find("ValueSet", "http://example.org/vs") == []
            assert len(cache.find("Questionnaire", URL, "1.0.0")) == 1
        assert checks.count == 1
        with _Checks(sql_store) as checks, cache.checked_once():  # a new block checks again
            other.create({"resourceType": "CodeSystem", "url": "http://example.org/cs",
                          "status": "active", "content": "complete"})
            assert len(cache.find("CodeSystem", "http://example.org/cs")) == 1
        assert checks.count == 1
    finally:
        other.dispose()
