"""The one Store contract: every test runs on SqlStore (SQLite, PostgreSQL) and on RemoteStore.

The RemoteStore runs against this app's own /fhir API served over real HTTP, so
the suite also checks that the REST facade keeps every promise of the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hw_fhir.errors import Conflict, Gone, InvalidInput, InvalidResource, InvalidSearch, NotFound, VersionConflict
from hw_fhir.store import SearchResult, Store, iter_all, open_store
from hw_fhir.store.remote import RemoteStore
from hw_fhir.store.searchparams import PARAMS, normalize_string

SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
LOINC = "http://loinc.org"
MRN = "urn:hw:mrn"
PHQ9 = "http://hw-fhir.org/fhir/Questionnaire/phq-9"
GAD7 = "http://hw-fhir.org/fhir/Questionnaire/gad-7"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "remote"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """An empty store: SqlStore on SQLite, on PostgreSQL, and RemoteStore over HTTP."""
    if request.param == "remote":
        server = request.getfixturevalue("live_server")
        remote = RemoteStore(f"{server.url}/fhir", backoff=0.05)
        yield remote
        remote.close()
        return
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    sql = open_store(url)
    yield sql
    sql.dispose()


# ------------------------------------------------------------------ helpers


def patient(family: str, *given: str, **extra: Any) -> dict[str, Any]:
    """Return a small Patient."""
    return {"resourceType": "Patient", "name": [{"family": family, "given": list(given)}], **extra}


def task(status: str = "requested", **extra: Any) -> dict[str, Any]:
    """Return a small SDC-style Task."""
    return {"resourceType": "Task", "status": status, "intent": "order",
            "code": {"coding": [{"system": SDC_TEMP, "code": "complete-questionnaire"}]}, **extra}


def ids(store: Store, rtype: str, params: list[tuple[str, str]] | dict[str, str]) -> set[str]:
    """Return the ids of every match of a search (one big page)."""
    pairs = list(params.items()) if isinstance(params, dict) else list(params)
    result = store.search(rtype, [*pairs, ("_count", "1000")], strict=True)
    assert not result.has_more
    return {m.id for m in result.matches}


def next_page(store: Store, result: SearchResult, params: list[tuple[str, str]]) -> SearchResult:
    """Fetch the page after ``result``: the server's next link (remote) or _offset (SQL)."""
    if isinstance(store, RemoteStore):
        page = store.next_page(result)
        assert page is not None
        return page
    return store.search(result.resource_type or "",
                        [*params, ("_offset", str(result.offset + len(result.matches)))])


def all_pages(store: Store, rtype: str, params: list[tuple[str, str]]) -> list[SearchResult]:
    """Return every page of a search."""
    pages = [store.search(rtype, params)]
    while pages[-1].has_more:
        pages.append(next_page(store, pages[-1], params))
        assert len(pages) < 100
    return pages


def snapshot(store: Store) -> tuple[list[tuple[Any, ...]], dict[str, list[dict[str, Any]]]]:
    """Return every stored version (system history) and every current resource, by type."""
    versions: list[tuple[Any, ...]] = []
    cursor = None
    while True:
        page = store.history(count=50, cursor=cursor)
        versions += [(s.resource_type, s.id, s.version_id, s.deleted, s.method,
                      None if s.deleted else s.resource) for s in page.entries]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    current = {rtype: sorted(iter_all(store, rtype), key=lambda r: r["id"]) for rtype in PARAMS}
    return versions, current


# ------------------------------------------------------------ CRUD, versions


def test_protocol_is_satisfied(store: Store) -> None:
    assert isinstance(store, Store)


def test_create_read_update_delete_history(store: Store) -> None:
    first = store.create(patient("Lindqvist", "Eva", id="ignored-client-id"))
    assert first.created
    pid = first.stored.id
    assert pid and pid != "ignored-client-id"
    assert first.stored.version_id == "1" and first.stored.method == "POST"
    assert first.resource["meta"]["versionId"] == "1"
    assert first.resource["name"][0]["family"] == "Lindqvist"

    read = store.read("Patient", pid)
    assert (read.version_id, read.last_updated) == ("1", first.stored.last_updated)
    assert read.resource["name"] == first.resource["name"]

    second = store.update(dict(read.resource, active=True))
    assert not second.created and second.stored.version_id == "2"
    third = store.update(dict(second.resource, gender="female"))
    assert third.stored.version_id == "3"
    assert first.stored.last_updated < second.stored.last_updated < third.stored.last_updated
    assert store.read("Patient", pid).resource["gender"] == "female"

    old = store.vread("Patient", pid, "1")
    assert old.version_id == "1" and "active" not in old.resource
    assert store.vread("Patient", pid, "2").resource["active"] is True

    store.delete("Patient", pid)
    with pytest.raises(Gone):
        store.read("Patient", pid)
    with pytest.raises(Gone):
        store.vread("Patient", pid, "4")
    assert store.vread("Patient", pid, "3").resource["gender"] == "female"
    assert ids(store, "Patient", {"_id": pid}) == set()
    assert pid not in {r["id"] for r in iter_all(store, "Patient")}

    store.delete("Patient", pid)  # deleting a deleted resource is a no-op
    history = store.history("Patient", pid)
    assert [e.version_id for e in history.entries] == ["4", "3", "2", "1"]
    assert [e.method for e in history.entries] == ["DELETE", "PUT", "PUT", "POST"]
    assert [e.deleted for e in history.entries] == [True, False, False, False]
    stamps = [e.last_updated for e in reversed(history.entries)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert history.entries[1].resource["gender"] == "female"

    revived = store.update(dict(third.resource, active=False))
    assert revived.created and revived.stored.version_id == "5"
    assert store.read("Patient", pid).resource["active"] is False


def test_unknown_resource_and_version_are_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        store.read("Patient", "no-such-patient")
    assert not isinstance(info.value, Gone)
    made = store.create(patient("Okafor"))
    with pytest.raises(NotFound):
        store.vread("Patient", made.stored.id, "7")
    with pytest.raises(NotFound):
        store.history("Patient", "no-such-patient")
    store.delete("Patient", "no-such-patient")  # a no-op, not an error


def test_history_pages_with_a_cursor_and_since(store: Store) -> None:
    written = [store.create(patient(f"Hist{n}")).stored for n in range(5)]
    store.update(dict(written[0].resource, active=True))
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        page = store.history("Patient", count=2, cursor=cursor)
        assert len(page.entries) <= 2
        seen += [(e.id, e.version_id) for e in page.entries]
        cursor = page.next_cursor
        if not cursor:
            break
    expected = [(written[0].id, "2")] + [(s.id, "1") for s in reversed(written)]
    assert seen == expected
    since = store.history("Patient", since=written[3].last_updated)
    assert [(e.id, e.version_id) for e in since.entries] == expected[:3]
    assert store.history("Task").entries == []


def test_update_with_a_client_id_creates(store: Store) -> None:
    made = store.update(patient("Nakamura", id="client-chosen-1"))
    assert made.created and made.stored.id == "client-chosen-1" and made.stored.version_id == "1"
    again = store.update(dict(made.resource, active=True))
    assert not again.created and again.stored.version_id == "2"
    assert store.read("Patient", "client-chosen-1").resource["active"] is True


def test_if_match(store: Store) -> None:
    made = store.create(patient("Ivanova"))
    pid = made.stored.id
    store.update(dict(made.resource, active=True), if_match="1")
    with pytest.raises(VersionConflict):
        store.update(dict(made.resource, active=False), if_match='W/"1"')
    assert store.read("Patient", pid).version_id == "2"
    ok = store.update(dict(made.resource, gender="other"), if_match='W/"2"')
    assert ok.stored.version_id == "3"
    with pytest.raises(VersionConflict):
        store.update(patient("Nobody", id="not-there-yet"), if_match="1")
    with pytest.raises(NotFound):
        store.read("Patient", "not-there-yet")


def test_conditional_create(store: Store) -> None:
    ident = {"system": MRN, "value": "cc-1"}
    criteria = f"identifier={MRN}|cc-1"
    first = store.create(patient("Silva", identifier=[ident]), if_none_exist=criteria)
    assert first.created
    again = store.create(patient("Silva-Changed", identifier=[ident]), if_none_exist=criteria)
    assert not again.created
    assert (again.stored.id, again.stored.version_id) == (first.stored.id, "1")
    assert again.resource["name"][0]["family"] == "Silva"
    assert ids(store, "Patient", {"identifier": f"{MRN}|cc-1"}) == {first.stored.id}

    store.create(patient("Twin", identifier=[{"system": MRN, "value": "cc-2"}]))
    store.create(patient("Twin", identifier=[{"system": MRN, "value": "cc-2"}]))
    before = snapshot(store)
    with pytest.raises(Conflict):
        store.create(patient("Third", identifier=[{"system": MRN, "value": "cc-2"}]),
                     if_none_exist=f"identifier={MRN}|cc-2")
    assert snapshot(store) == before


def test_invalid_resources_are_refused(store: Store) -> None:
    with pytest.raises(InvalidResource):
        store.create({"resourceType": "Task", "status": "not-a-status", "intent": "order"})
    with pytest.raises(InvalidResource):
        store.create({"resourceType": "Patient", "birthDate": "yesterday"})
    assert snapshot(store)[0] == []


# ------------------------------------------------------------------ search


@pytest.fixture
def corpus(store: Store) -> dict[str, Any]:
    """Write a small search corpus with fixed ids; return the write results by id."""
    resources = [
        patient("Müller", "Anna", id="p-anna", gender="female", birthDate="1980-05-01",
                identifier=[{"system": MRN, "value": "100"}]),
        patient("Mullerson", "Bert", id="p-bert", gender="male", birthDate="1990-01-15",
                identifier=[{"value": "100"}]),
        patient("Ökland", "Cléo", id="p-cleo", birthDate="2000-12-31",
                identifier=[{"system": MRN, "value": "300"}, {"system": "urn:other", "value": "100"}]),
        patient("Adams", "Dan", id="p-dan", gender="male", birthDate="1975-03-03"),
        task("requested", id="t1", **{"for": {"reference": "Patient/p-anna"}},
             owner={"reference": "Patient/p-anna"}, authoredOn="2024-01-05T10:00:00Z",
             executionPeriod={"start": "2024-01-05", "end": "2024-01-06"},
             identifier=[{"system": "urn:hw:task", "value": "t1"}]),
        task("completed", id="t2", **{"for": {"reference": "Patient/p-anna"}},
             authoredOn="2024-01-10T09:30:00Z",
             executionPeriod={"start": "2024-01-08T00:00:00Z", "end": "2024-01-20"},
             output=[{"type": {"coding": [{"system": SDC_TEMP, "code": "questionnaire-response"}]},
                      "valueReference": {"reference": "QuestionnaireResponse/qr-1"}}]),
        task("in-progress", id="t3", **{"for": {"reference": "Patient/p-bert"}},
             owner={"reference": "Patient/p-bert"}, authoredOn="2024-01-15T12:00:00Z",
             executionPeriod={"start": "2024-01-25"}),
        {"resourceType": "Task", "id": "t4", "status": "cancelled", "intent": "order",
         "for": {"reference": "Group/g-1"}, "authoredOn": "2024-01-10T23:30:00-05:00"},
        {"resourceType": "QuestionnaireResponse", "id": "qr-1", "status": "completed",
         "questionnaire": f"{PHQ9}|1.0.0", "subject": {"reference": "Patient/p-anna"},
         "authored": "2024-01-10T09:00:00Z"},
        {"resourceType": "QuestionnaireResponse", "id": "qr-2", "status": "completed",
         "questionnaire": f"{PHQ9}|2.0.0", "subject": {"reference": "Patient/p-bert"}},
        {"resourceType": "QuestionnaireResponse", "id": "qr-3", "status": "in-progress",
         "questionnaire": GAD7, "subject": {"reference": "Patient/p-anna"}},
        {"resourceType": "Questionnaire", "id": "q-phq9-1", "status": "active", "url": PHQ9,
         "version": "1.0.0", "title": "PHQ-9"},
        {"resourceType": "Questionnaire", "id": "q-phq9-2", "status": "draft", "url": PHQ9,
         "version": "2.0.0", "title": "PHQ-9 (revised)"},
        {"resourceType": "Observation", "id": "o-1", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "44261-6"}]},
         "subject": {"reference": "Patient/p-anna"}, "effectiveDateTime": "2024-01-10T09:00:00Z",
         "derivedFrom": [{"reference": "QuestionnaireResponse/qr-1"}],
         "valueQuantity": {"value": 7, "unit": "{score}"}},
        {"resourceType": "Observation", "id": "o-2", "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "70274-6"}]},
         "subject": {"reference": "Patient/p-anna"},
         "effectivePeriod": {"start": "2024-01-01", "end": "2024-01-31"},
         "derivedFrom": [{"reference": "QuestionnaireResponse/qr-3"}]},
        {"resourceType": "Observation", "id": "o-3", "status": "preliminary",
         "code": {"coding": [{"code": "local-1"}]}, "subject": {"reference": "Patient/p-bert"},
         "effectiveDateTime": "2024-02-01"},
    ]
    written = {}
    for resource in resources:
        result = store.update(resource)
        assert result.created
        written[resource["id"]] = result.stored
    return written


TOKEN_CASES = [
    ("Patient", {"identifier": f"{MRN}|100"}, {"p-anna"}),
    ("Patient", {"identifier": "|100"}, {"p-bert"}),
    ("Patient", {"identifier": f"{MRN}|"}, {"p-anna", "p-cleo"}),
    ("Patient", {"identifier": "100"}, {"p-anna", "p-bert", "p-cleo"}),
    ("Patient", {"identifier:not": f"{MRN}|100"}, {"p-bert", "p-cleo", "p-dan"}),
    ("Patient", {"gender": "male"}, {"p-bert", "p-dan"}),
    ("Patient", {"gender:not": "male"}, {"p-anna", "p-cleo"}),
    ("Patient", {"gender": "female,male"}, {"p-anna", "p-bert", "p-dan"}),
    ("Patient", {"gender:missing": "true"}, {"p-cleo"}),
    ("Task", {"status": "requested,completed"}, {"t1", "t2"}),
    ("Task", {"status:not": "completed"}, {"t1", "t3", "t4"}),
    ("Task", {"code": f"{SDC_TEMP}|complete-questionnaire"}, {"t1", "t2", "t3"}),
    ("Task", {"code:missing": "true"}, {"t4"}),
    ("Task", {"identifier": "urn:hw:task|t1"}, {"t1"}),
    ("Observation", {"code": f"{LOINC}|44261-6"}, {"o-1"}),
    ("Observation", {"code": f"{LOINC}|"}, {"o-1", "o-2"}),
    ("Observation", {"code": "|local-1"}, {"o-3"}),
    ("Observation", {"code": "local-1,70274-6"}, {"o-2", "o-3"}),
    ("Observation", {"status": "final"}, {"o-1", "o-2"}),
    ("Questionnaire", {"version": "2.0.0"}, {"q-phq9-2"}),
]

REFERENCE_CASES = [
    ("Task", {"patient": "Patient/p-anna"}, {"t1", "t2"}),
    ("Task", {"patient": "p-anna"}, {"t1", "t2"}),
    ("Task", {"subject": "p-bert"}, {"t3"}),
    ("Task", {"subject": "Group/g-1"}, {"t4"}),
    ("Task", {"subject:Patient": "p-anna"}, {"t1", "t2"}),
    ("Task", {"patient": "p-anna,p-bert"}, {"t1", "t2", "t3"}),
    ("Task", {"patient:missing": "true"}, {"t4"}),
    ("Task", {"owner:missing": "true"}, {"t2", "t4"}),
    ("Task", {"owner:missing": "false"}, {"t1", "t3"}),
    ("Task", {"output": "QuestionnaireResponse/qr-1"}, {"t2"}),
    ("Observation", {"derived-from": "QuestionnaireResponse/qr-3"}, {"o-2"}),
    ("QuestionnaireResponse", {"patient": "p-anna"}, {"qr-1", "qr-3"}),
]

STRING_CASES = [
    ("Patient", {"family": "muller"}, {"p-anna", "p-bert"}),
    ("Patient", {"family": "MÜL"}, {"p-anna", "p-bert"}),
    ("Patient", {"family:exact": "Müller"}, {"p-anna"}),
    ("Patient", {"family:exact": "Mul"}, set()),
    ("Patient", {"family:contains": "LLER"}, {"p-anna", "p-bert"}),
    ("Patient", {"family": "okl"}, {"p-cleo"}),
    ("Patient", {"family": "kla"}, set()),
    ("Patient", {"family:contains": "kla"}, {"p-cleo"}),
    ("Patient", {"given": "cleo"}, {"p-cleo"}),
    ("Patient", {"name": "Cléo"}, {"p-cleo"}),
    ("Patient", {"name": "bert"}, {"p-bert"}),
    ("Patient", {"name": "adams,anna"}, {"p-anna", "p-dan"}),
    ("Questionnaire", {"title:exact": "PHQ-9"}, {"q-phq9-1"}),
    ("Questionnaire", {"title": "phq-9"}, {"q-phq9-1", "q-phq9-2"}),
]

# t4 was authored 2024-01-10T23:30-05:00, i.e. on 2024-01-11 in UTC.
DATE_CASES = [
    ("Task", {"authored-on": "2024-01-10"}, {"t2"}),
    ("Task", {"authored-on": "eq2024-01-11"}, {"t4"}),
    ("Task", {"authored-on": "ne2024-01-10"}, {"t1", "t3", "t4"}),
    ("Task", {"authored-on": "gt2024-01-10"}, {"t3", "t4"}),
    ("Task", {"authored-on": "lt2024-01-10"}, {"t1"}),
    ("Task", {"authored-on": "ge2024-01-10"}, {"t2", "t3", "t4"}),
    ("Task", {"authored-on": "le2024-01-10"}, {"t1", "t2"}),
    ("Task", {"authored-on": "2024-01-10T09:30:00Z"}, {"t2"}),
    ("Task", {"authored-on": "eq2024-01"}, {"t1", "t2", "t3", "t4"}),
    ("Task", [("authored-on", "ge2024-01-06"), ("authored-on", "le2024-01-12")], {"t2", "t4"}),
    ("Task", {"authored-on": "2024-01-05,2024-01-15"}, {"t1", "t3"}),
    # periods: t1 = Jan 5-6, t2 = Jan 8-20, t3 = Jan 25 onwards, t4 none
    ("Task", {"period": "eq2024-01-10"}, set()),
    ("Task", {"period": "eq2024-01"}, {"t1", "t2"}),
    ("Task", {"period": "ne2024-01-10"}, {"t1", "t2", "t3"}),
    ("Task", {"period": "gt2024-01-10"}, {"t2", "t3"}),
    ("Task", {"period": "lt2024-01-10"}, {"t1", "t2"}),
    ("Task", {"period": "ge2024-01-21"}, {"t3"}),
    ("Task", {"period": "le2024-01-07"}, {"t1"}),
    ("Task", {"period:missing": "true"}, {"t4"}),
    ("Observation", {"date": "2024-01-10"}, {"o-1"}),
    ("Observation", {"date": "eq2024-01"}, {"o-1", "o-2"}),
    ("Observation", {"date": "gt2024-01-15"}, {"o-2", "o-3"}),
    ("Patient", {"birthdate": "lt1985"}, {"p-anna", "p-dan"}),
    ("Patient", {"birthdate": "ge1990-01-15"}, {"p-bert", "p-cleo"}),
]

URI_CASES = [
    ("QuestionnaireResponse", {"questionnaire": PHQ9}, {"qr-1", "qr-2"}),
    ("QuestionnaireResponse", {"questionnaire": f"{PHQ9}|1.0.0"}, {"qr-1"}),
    ("QuestionnaireResponse", {"questionnaire": f"{PHQ9}|3.0.0"}, set()),
    ("QuestionnaireResponse", {"questionnaire": GAD7}, {"qr-3"}),
    ("QuestionnaireResponse", {"questionnaire": "http://hw-fhir.org/fhir/Questionnaire/phq"}, set()),
    ("QuestionnaireResponse", {"questionnaire": f"{GAD7},{PHQ9}|2.0.0"}, {"qr-2", "qr-3"}),
    ("Questionnaire", {"url": PHQ9}, {"q-phq9-1", "q-phq9-2"}),
    ("Questionnaire", [("url", PHQ9), ("version", "1.0.0")], {"q-phq9-1"}),
]

ID_CASES = [
    ("Task", {"_id": "t1,t3"}, {"t1", "t3"}),
    ("Task", [("_id", "t1,t2"), ("_id", "t2,t3")], {"t2"}),
    ("Task", [("status", "completed"), ("patient", "p-anna")], {"t2"}),
    ("Task", [("status", "requested"), ("patient", "p-bert")], set()),
    ("Patient", {"_id": "nobody"}, set()),
]


SEARCH_CASES = {"token": TOKEN_CASES, "reference": REFERENCE_CASES, "string": STRING_CASES,
                "date": DATE_CASES, "uri": URI_CASES, "id-and-or": ID_CASES}


@pytest.mark.parametrize("family", list(SEARCH_CASES))
def test_search(store: Store, corpus: dict[str, Any], family: str) -> None:
    wrong = []
    for rtype, params, expected in SEARCH_CASES[family]:
        got = ids(store, rtype, params)
        if got != expected:
            wrong.append(f"{rtype}?{params}: got {sorted(got)}, expected {sorted(expected)}")
    assert not wrong, "\n".join(wrong)


def test_search_covers_every_parameter_type() -> None:
    """The cases above exercise every parameter type of searchparams.PARAMS."""
    used = {(rtype, name.split(":")[0])
            for cases in (TOKEN_CASES, REFERENCE_CASES, STRING_CASES, DATE_CASES, URI_CASES)
            for rtype, params, _ in cases
            for name, _ in (params.items() if isinstance(params, dict) else params)}
    kinds = {PARAMS[rtype][name].type for rtype, name in used}
    assert kinds == {sp.type for params in PARAMS.values() for sp in params.values()}


def test_string_exact_is_case_and_accent_sensitive(store: Store, corpus: dict[str, Any]) -> None:
    assert ids(store, "Patient", {"family:exact": "muller"}) == set()
    assert ids(store, "Patient", {"family:exact": "müller"}) == set()
    assert ids(store, "Patient", {"family:exact": "Müller"}) == {"p-anna"}
    assert ids(store, "Patient", {"given:exact": "Cleo"}) == set()
    assert ids(store, "Patient", {"given:exact": "Cléo"}) == {"p-cleo"}


def test_search_last_updated(store: Store, corpus: dict[str, Any]) -> None:
    stamps = {tid: corpus[tid].last_updated for tid in ("t1", "t2", "t3", "t4")}
    pivot = stamps["t2"]
    for prefix, keep in [("gt", lambda s: s > pivot), ("ge", lambda s: s >= pivot),
                         ("lt", lambda s: s < pivot), ("le", lambda s: s <= pivot),
                         ("eq", lambda s: s == pivot)]:
        expected = {tid for tid, stamp in stamps.items() if keep(stamp)}
        assert ids(store, "Task", {"_lastUpdated": prefix + pivot}) == expected, prefix
    day = pivot[:10]
    assert ids(store, "Task", {"_lastUpdated": day}) == {t for t, s in stamps.items() if s[:10] == day}


def test_search_strictness(store: Store, corpus: dict[str, Any]) -> None:
    with pytest.raises(InvalidSearch):
        store.search("Task", [("no-such-param", "x")], strict=True)
    lenient = store.search("Task", [("no-such-param", "x")])
    assert {m.id for m in lenient.matches} == {"t1", "t2", "t3", "t4"}
    assert any("no-such-param" in w for w in lenient.warnings)
    with pytest.raises(InvalidSearch):
        store.search("Task", [("authored-on", "xx2024")])
    with pytest.raises(InvalidSearch):
        store.search("Task", [("_count", "-1")])


def test_sort(store: Store, corpus: dict[str, Any]) -> None:
    patients = [corpus[p].resource for p in ("p-anna", "p-bert", "p-cleo", "p-dan")]
    by_family = [p["id"] for p in sorted(patients, key=lambda p: normalize_string(p["name"][0]["family"]))]
    by_birth = [p["id"] for p in sorted(patients, key=lambda p: p["birthDate"])]

    def order(params: list[tuple[str, str]]) -> list[str]:
        return [m.id for m in store.search("Patient", params).matches]

    assert order([("_sort", "family")]) == by_family
    assert order([("_sort", "-family")]) == by_family[::-1]
    assert order([("_sort", "birthdate")]) == by_birth
    assert order([("_sort", "-birthdate")]) == by_birth[::-1]
    newest_first = sorted(by_family, key=lambda p: corpus[p].last_updated, reverse=True)
    assert order([("_sort", "-_lastUpdated")]) == newest_first
    assert [m.id for m in store.search("Task", [("_sort", "-authored-on")]).matches] == \
        ["t3", "t4", "t2", "t1"]


def test_total_and_summary_count(store: Store, corpus: dict[str, Any]) -> None:
    page = store.search("Task", [("_count", "2"), ("_total", "accurate")])
    assert page.total == 4 and len(page.matches) == 2 and page.has_more
    assert store.search("Task", [("_total", "none")]).total is None
    assert store.search("Task", [("status", "completed")]).total == 1
    summary = store.search("Task", [("_summary", "count"), ("patient", "p-anna")])
    assert summary.total == 2 and summary.matches == []


def test_paging_visits_every_match_once(store: Store) -> None:
    made = [store.create(patient(f"Page{n:02d}", identifier=[{"system": "urn:page", "value": str(n)}],
                                 birthDate=f"19{50 + (n * 7) % 10}-01-01")).stored for n in range(23)]
    expected = {s.id for s in made}
    params = [("identifier", "urn:page|"), ("_count", "5")]
    pages = all_pages(store, "Patient", params)
    assert [len(p.matches) for p in pages] == [5, 5, 5, 5, 3]
    seen = [m.id for p in pages for m in p.matches]
    assert len(seen) == len(set(seen)) and set(seen) == expected

    sorted_params = [("identifier", "urn:page|"), ("_sort", "-birthdate,family"), ("_count", "4")]
    sorted_pages = all_pages(store, "Patient", sorted_params)
    got = [m.id for p in sorted_pages for m in p.matches]
    by_store = {s.id: s.resource for s in made}
    want = sorted(expected, key=lambda i: by_store[i]["name"][0]["family"])
    want.sort(key=lambda i: by_store[i]["birthDate"], reverse=True)
    assert got == want
    assert {r["id"] for r in iter_all(store, "Patient", [("identifier", "urn:page|")])} == expected


def test_include_and_revinclude(store: Store, corpus: dict[str, Any]) -> None:
    def search(rtype: str, params: list[tuple[str, str]]) -> tuple[set[str], set[str]]:
        result = store.search(rtype, params, strict=True)
        return ({m.reference for m in result.matches}, {i.reference for i in result.included})

    assert search("Task", [("_id", "t2"), ("_include", "Task:output")]) == (
        {"Task/t2"}, {"QuestionnaireResponse/qr-1"})
    assert search("Task", [("_id", "t1,t2"), ("_include", "Task:output:QuestionnaireResponse")]) == (
        {"Task/t1", "Task/t2"}, {"QuestionnaireResponse/qr-1"})
    assert search("QuestionnaireResponse", [("_id", "qr-1"), ("_revinclude", "Task:output")]) == (
        {"QuestionnaireResponse/qr-1"}, {"Task/t2"})
    assert search("Observation", [("_id", "o-1,o-2"), ("_include", "Observation:derived-from")]) == (
        {"Observation/o-1", "Observation/o-2"},
        {"QuestionnaireResponse/qr-1", "QuestionnaireResponse/qr-3"})
    assert search("QuestionnaireResponse", [("patient", "p-anna"),
                                            ("_revinclude", "Observation:derived-from"),
                                            ("_revinclude", "Task:output")]) == (
        {"QuestionnaireResponse/qr-1", "QuestionnaireResponse/qr-3"},
        {"Observation/o-1", "Observation/o-2", "Task/t2"})
    assert search("QuestionnaireResponse", [("_id", "qr-2"), ("_revinclude", "Task:output")]) == (
        {"QuestionnaireResponse/qr-2"}, set())
    included = store.search("Task", [("_id", "t2"), ("_include", "Task:output")]).included[0]
    assert included.resource["questionnaire"] == f"{PHQ9}|1.0.0"
    with pytest.raises(InvalidSearch):
        store.search("Task", [("_include", "Task:status")])


# ------------------------------------------------------------ transactions


def test_transaction_resolves_urn_uuid_references(store: Store) -> None:
    existing = store.create(patient("Existing", identifier=[{"system": MRN, "value": "tx-9"}])).stored
    p, qr, t, known = (f"urn:uuid:{uuid.uuid4()}" for _ in range(4))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": t, "resource": task("completed", **{"for": {"reference": p}},
                                        focus={"reference": known},
                                        output=[{"type": {"text": "response"},
                                                 "valueReference": {"reference": qr}}]),
         "request": {"method": "POST", "url": "Task"}},
        {"fullUrl": p, "resource": patient("Transact", identifier=[{"system": MRN, "value": "tx-1"}]),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": qr, "resource": {"resourceType": "QuestionnaireResponse", "status": "completed",
                                     "questionnaire": PHQ9, "subject": {"reference": p}},
         "request": {"method": "POST", "url": "QuestionnaireResponse"}},
        {"fullUrl": known, "resource": patient("Existing-Again"),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MRN}|tx-9"}},
    ]}
    response = store.transaction(bundle)
    assert response["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert [s.split()[0] for s in statuses] == ["201", "201", "201", "200"]
    locations = [e["response"]["location"].split("/_history/")[0] for e in response["entry"]]
    task_ref, patient_ref, qr_ref, known_ref = (loc.split("/fhir/")[-1] for loc in locations)
    assert known_ref == existing.reference
    stored_task = store.read("Task", task_ref.split("/")[1]).resource
    assert stored_task["for"]["reference"] == patient_ref
    assert stored_task["output"][0]["valueReference"]["reference"] == qr_ref
    assert stored_task["focus"]["reference"] == existing.reference
    assert store.read("QuestionnaireResponse", qr_ref.split("/")[1]).resource["subject"] == \
        {"reference": patient_ref}
    assert ids(store, "Task", {"patient": patient_ref}) == {task_ref.split("/")[1]}
    assert store.read("Patient", existing.id).version_id == "1"


@pytest.mark.parametrize("bad", ["invalid-resource", "stale-if-match", "missing-read"])
def test_transaction_with_one_bad_entry_stores_nothing(store: Store, bad: str) -> None:
    kept = store.update(patient("Kept", id="kept-1")).stored
    store.update(dict(kept.resource, active=True))
    before = snapshot(store)
    p = f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = [
        {"fullUrl": p, "resource": patient("Lost"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": task(**{"for": {"reference": p}}), "request": {"method": "POST", "url": "Task"}},
        {"resource": dict(kept.resource, gender="male"),
         "request": {"method": "PUT", "url": "Patient/kept-1"}},
        {"request": {"method": "DELETE", "url": "Patient/kept-1"}},
    ]
    if bad == "invalid-resource":
        entries.append({"resource": task("not-a-status"), "request": {"method": "POST", "url": "Task"}})
        expected: type[Exception] = InvalidInput
    elif bad == "stale-if-match":
        entries[2]["request"]["ifMatch"] = 'W/"1"'
        entries.pop()  # keep the resource, so the PUT meets the version check
        expected = VersionConflict
    else:
        entries.append({"request": {"method": "GET", "url": "Patient/no-such-patient"}})
        expected = NotFound
    with pytest.raises(expected):
        store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert snapshot(store) == before


def test_batch_with_one_bad_entry_stores_the_others(store: Store) -> None:
    response = store.transaction({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient("Batch-One"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": task("not-a-status"), "request": {"method": "POST", "url": "Task"}},
        {"resource": patient("Batch-Two", id="batch-2"), "request": {"method": "PUT", "url": "Patient/batch-2"}},
        {"request": {"method": "GET", "url": "Patient/no-such-patient"}},
    ]})
    assert response["type"] == "batch-response"
    codes = [e["response"]["status"].split()[0] for e in response["entry"]]
    assert codes == ["201", "400", "201", "404"]
    assert response["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    families = sorted(r["name"][0]["family"] for r in iter_all(store, "Patient"))
    assert families == ["Batch-One", "Batch-Two"]
    assert iter_all(store, "Task") == []
    assert store.read("Patient", "batch-2").version_id == "1"

