"""The activity library in the store: catalog loading, clone, edit drafts, publish, retire."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

import pytest

from hw_fhir import catalog, library
from hw_fhir.errors import (
    BusinessRuleError,
    Conflict,
    InvalidInput,
    InvalidResource,
    NotFound,
    VersionConflict,
)
from hw_fhir.models import validate
from hw_fhir.store import iter_all

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
MOOD_LOG = "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0"
DR = "Practitioner/dr-rivera"


def snapshot(store: Any) -> set[tuple[str, str, str]]:
    """Every stored version, as (type, id, version): equal snapshots = nothing written."""
    return {(e.resource_type, e.id, e.version_id) for e in store.history(count=100000).entries}


@pytest.fixture
def store(sql_store):
    """A store with the shipped catalog loaded."""
    library.load_catalog(sql_store)
    return sql_store


def small_questionnaire(**changes: Any) -> dict[str, Any]:
    """A small, valid draft Questionnaire."""
    q = {
        "resourceType": "Questionnaire",
        "url": "http://example.org/Questionnaire/small",
        "version": "1.0.0",
        "status": "draft",
        "item": [
            {"linkId": "did-it", "text": "Did you do it?", "type": "boolean", "required": True},
            {
                "linkId": "feel",
                "text": "How was it?",
                "type": "choice",
                "answerOption": [
                    {"valueCoding": {"system": "urn:x", "code": "ok"}},
                    {"valueCoding": {"system": "urn:x", "code": "bad"}},
                ],
            },
            {
                "linkId": "why",
                "text": "Why not?",
                "type": "string",
                "enableWhen": [{"question": "did-it", "operator": "=", "answerBoolean": False}],
            },
        ],
    }
    q.update(changes)
    return q


# -- the catalog -----------------------------------------------------------------------------


def test_load_catalog_writes_every_activity_once(sql_store):
    shipped = catalog.load_questionnaires()
    first = library.load_catalog(sql_store)
    assert sorted(first.created) == sorted(catalog.canonical(q) for q in shipped)
    assert first.existing == ()
    stored = iter_all(sql_store, "Questionnaire")
    assert len(stored) == len(shipped)
    for questionnaire in stored:
        assert validate(questionnaire) == questionnaire
    assert sql_store.read("Questionnaire", "mood-log").resource["url"] == MOOD_LOG.split("|")[0]

    before = snapshot(sql_store)
    second = library.load_catalog(sql_store)
    assert second.created == ()
    assert sorted(second.existing) == sorted(first.created)
    assert snapshot(sql_store) == before


def test_catalog_measures_are_found_by_loinc_code(store):
    found = store.search("Questionnaire", [("code", "http://loinc.org|44249-1")]).resources
    assert [q["id"] for q in found] == ["phq-9"]
    gad = store.search("Questionnaire", [("code", "http://loinc.org|69737-5")]).resources
    assert [q["id"] for q in gad] == ["gad-7"]


def test_load_catalog_never_changes_a_stored_version(store):
    changed = copy.deepcopy(store.read("Questionnaire", "mood-log").resource)
    changed["title"] = "Something else entirely"
    before = snapshot(store)
    result = library.load_catalog(store, [changed])
    assert result.created == () and result.existing == (MOOD_LOG,)
    assert store.read("Questionnaire", "mood-log").resource["title"] != "Something else entirely"
    assert snapshot(store) == before


def test_load_catalog_keeps_new_versions_apart_when_the_id_is_taken(store):
    newer = copy.deepcopy(store.read("Questionnaire", "mood-log").resource)
    newer["version"] = "2.0.0"
    result = library.load_catalog(store, [newer])
    assert result.created == (MOOD_LOG.replace("1.0.0", "2.0.0"),)
    versions = iter_all(store, "Questionnaire", [("url", MOOD_LOG.split("|")[0])])
    assert sorted(q["version"] for q in versions) == ["1.0.0", "2.0.0"]
    assert store.read("Questionnaire", "mood-log").resource["version"] == "1.0.0"


def test_resolve_questionnaire_by_canonical_url_id_and_reference(store):
    assert library.resolve_questionnaire(store, MOOD_LOG)["id"] == "mood-log"
    assert library.resolve_questionnaire(store, "Questionnaire/mood-log")["version"] == "1.0.0"
    assert library.resolve_questionnaire(store, "mood-log")["id"] == "mood-log"
    newer = dict(store.read("Questionnaire", "mood-log").resource, version="1.1.0")
    newer.pop("id")
    newer.pop("meta")
    store.create(newer)
    assert library.resolve_questionnaire(store, MOOD_LOG.split("|")[0])["version"] == "1.1.0"
    with pytest.raises(NotFound):
        library.resolve_questionnaire(store, MOOD_LOG.replace("1.0.0", "9.9.9"))
    with pytest.raises(InvalidInput):
        library.resolve_questionnaire(store, "not an id!")


# -- clone -------------------------------------------------------------------------------------


def test_clone_is_a_draft_in_the_clinicians_namespace_derived_from_the_source(store):
    source_before = store.read("Questionnaire", "mood-log")
    clone = library.clone_questionnaire(
        store, MOOD_LOG, practitioner=DR, title="Ava's mood log", now=NOW
    )
    assert (
        clone["url"] == "http://hw-fhir.org/fhir/clinician/dr-rivera/Questionnaire/ava-s-mood-log"
    )
    assert clone["version"] == "1.0.0"
    assert clone["status"] == "draft"
    assert clone["derivedFrom"] == [MOOD_LOG]
    assert clone["title"] == "Ava's mood log"
    assert clone["identifier"] == [
        {"system": library.clinician_system(DR), "value": "ava-s-mood-log"}
    ]
    assert clone["item"] == source_before.resource["item"]
    assert clone["id"] != "mood-log"
    assert validate(clone) == clone
    source_after = store.read("Questionnaire", "mood-log")
    assert source_after.version_id == source_before.version_id


def test_cloning_twice_gives_distinct_urls_and_both_are_listed(store):
    first = library.clone_questionnaire(store, "mood-log", practitioner="dr-rivera", now=NOW)
    second = library.clone_questionnaire(store, "mood-log", practitioner="dr-rivera", now=NOW)
    assert first["url"] != second["url"]
    assert second["url"].endswith("-2")
    mine = library.clinician_questionnaires(store, "dr-rivera")
    assert {q["id"] for q in mine} == {first["id"], second["id"]}
    assert library.clinician_questionnaires(store, "dr-okafor") == []


def test_clone_of_a_clone_derives_from_the_clone(store):
    first = library.clone_questionnaire(store, MOOD_LOG, practitioner=DR, now=NOW)
    library.publish(store, first["id"], now=NOW)
    again = library.clone_questionnaire(store, f"{first['url']}|1.0.0", practitioner="dr-okafor")
    assert again["derivedFrom"] == [f"{first['url']}|1.0.0"]
    assert again["url"].startswith(library.clinician_system("dr-okafor") + "/")


# -- edit ---------------------------------------------------------------------------------------


def test_edit_draft_changes_texts_items_and_options(store):
    clone = library.clone_questionnaire(store, MOOD_LOG, practitioner=DR, now=NOW)
    feelings = library.find_item(clone, "feelings")

    def edit(q: dict[str, Any]) -> dict[str, Any]:
        q = library.replace_item(q, "mood", text="Mood today, 0 to 10")
        q = library.set_answer_options(
            q, "feelings", [("calm", "Calm"), ("tense", "Tense")], system="urn:example:feelings"
        )
        q = library.remove_item(q, "sleep-hours")
        return library.add_item(
            q, {"linkId": "walk", "type": "boolean", "text": "Did you go for a walk?"}, after="mood"
        )

    edited = library.edit_draft(store, clone["id"], edit, now=NOW)
    assert edited["meta"]["versionId"] == "2"
    assert library.find_item(edited, "mood")["text"] == "Mood today, 0 to 10"
    options = library.find_item(edited, "feelings")["answerOption"]
    assert [o["valueCoding"]["code"] for o in options] == ["calm", "tense"]
    assert options != feelings["answerOption"]
    link_ids = [i["linkId"] for i in edited["item"]]
    assert "sleep-hours" not in link_ids
    assert link_ids[link_ids.index("mood") + 1] == "walk"
    assert edited["url"] == clone["url"] and edited["status"] == "draft"


def test_edit_draft_with_a_whole_resource_and_if_match(store):
    clone = library.clone_questionnaire(store, MOOD_LOG, practitioner=DR, now=NOW)
    new = dict(clone, title="Renamed")
    edited = library.edit_draft(store, clone["id"], new, if_match='W/"1"')
    assert edited["title"] == "Renamed"
    with pytest.raises(VersionConflict):
        library.edit_draft(store, clone["id"], dict(new, title="Stale"), if_match='W/"1"')
    assert store.read("Questionnaire", clone["id"]).resource["title"] == "Renamed"


def test_edit_cannot_change_identity_or_status(store):
    clone = library.clone_questionnaire(store, MOOD_LOG, practitioner=DR, now=NOW)
    before = snapshot(store)
    for change in (
        {"url": "http://evil.example/q"},
        {"version": "9"},
        {"status": "active"},
        {"derivedFrom": []},
    ):
        with pytest.raises(BusinessRuleError) as caught:
            library.edit_draft(store, clone["id"], dict(clone, **change))
        assert caught.value.issues[0].expression == f"Questionnaire.{next(iter(change))}"
    assert snapshot(store) == before


def test_a_published_version_is_never_edited_in_place(store):
    before = snapshot(store)
    with pytest.raises(BusinessRuleError, match="only a draft can be edited"):
        library.edit_draft(store, "mood-log", lambda q: library.replace_item(q, "mood", text="x"))
    clone = library.clone_questionnaire(store, MOOD_LOG, practitioner=DR, now=NOW)
    published = library.publish(store, clone["id"], now=NOW)
    assert published["status"] == "active"
    after_publish = snapshot(store)
    with pytest.raises(BusinessRuleError):
        library.edit_draft(store, clone["id"], dict(published, title="Changed"))
    assert snapshot(store) == after_publish
    assert snapshot(store) - before  # the clone and its publication were written


BROKEN_EDITS = [
    (
        "duplicate linkId",
        lambda q: library.add_item(q, {"linkId": "mood", "type": "string", "text": "again"}),
        "used more than once",
    ),
    (
        "enableWhen to a missing item",
        lambda q: library.replace_item(
            q,
            "hard",
            enableWhen=[{"question": "nope", "operator": "exists", "answerBoolean": True}],
        ),
        "unknown linkId 'nope'",
    ),
    (
        "choice without options",
        lambda q: library.replace_item(q, "feelings", answerOption=None),
        "needs answerOption or answerValueSet",
    ),
    (
        "enableWhen answer of the wrong type",
        lambda q: library.replace_item(
            q, "hard", enableWhen=[{"question": "mood", "operator": "=", "answerString": "high"}]
        ),
        "compares the integer question 'mood' with answerString",
    ),
    (
        "enableWhen on a display item",
        lambda q: library.replace_item(
            q,
            "hard",
            enableWhen=[{"question": "intro", "operator": "exists", "answerBoolean": True}],
        ),
        "a display item that has no answer",
    ),
    (
        "group without items",
        lambda q: library.add_item(q, {"linkId": "g", "type": "group", "text": "Empty"}),
        "needs at least one item",
    ),
    (
        "answerOption on a boolean",
        lambda q: library.replace_item(
            q, "mood", type="boolean", answerOption=[{"valueInteger": 1}]
        ),
        "cannot have answerOption",
    ),
    (
        "repeated option",
        lambda q: library.set_answer_options(
            q, "feelings", [("a", "A"), ("a", "A again")], system="urn:x"
        ),
        "listed twice",
    ),
    (
        "invalid item type",
        lambda q: library.replace_item(q, "mood", type="slider"),
        "not a valid Questionnaire item type",
    ),
]


@pytest.mark.parametrize("name,edit,message", BROKEN_EDITS, ids=[b[0] for b in BROKEN_EDITS])
def test_an_edit_cannot_break_the_questionnaire(store, name, edit, message):
    clone = library.clone_questionnaire(store, MOOD_LOG, practitioner=DR, now=NOW)
    before = snapshot(store)
    with pytest.raises(InvalidResource) as caught:
        library.edit_draft(store, clone["id"], edit)
    assert any(message in issue.message for issue in caught.value.issues), caught.value.issues
    assert all(issue.expression for issue in caught.value.issues)
    assert snapshot(store) == before


def test_check_questionnaire_points_at_the_item():
    q = small_questionnaire()
    q["item"][2]["enableWhen"][0]["question"] = "gone"
    with pytest.raises(InvalidResource) as caught:
        library.check_questionnaire(q)
    assert caught.value.issues[0].expression == "Questionnaire.item[2].enableWhen[0].question"
    assert library.check_questionnaire(small_questionnaire())["item"][0]["linkId"] == "did-it"


def test_enable_when_must_name_an_offered_option():
    q = small_questionnaire()
    q["item"][2]["enableWhen"] = [
        {"question": "feel", "operator": "=", "answerCoding": {"system": "urn:x", "code": "awful"}}
    ]
    with pytest.raises(InvalidResource, match="not an answer option"):
        library.check_questionnaire(q)


# -- publish, retire, new versions -----------------------------------------------------------


def test_publish_and_retire(store):
    clone = library.clone_questionnaire(store, MOOD_LOG, practitioner=DR, now=NOW)
    published = library.publish(store, clone["id"], now=NOW)
    assert published["status"] == "active" and published["date"] == "2026-03-02T15:00:00Z"
    with pytest.raises(BusinessRuleError):
        library.publish(store, clone["id"])
    retired = library.retire(store, clone["id"])
    assert retired["status"] == "retired"
    assert library.retire(store, clone["id"])["meta"]["versionId"] == retired["meta"]["versionId"]
    history = store.history("Questionnaire", clone["id"]).entries
    assert [e.resource["status"] for e in reversed(history)] == ["draft", "active", "retired"]


def test_new_version_starts_the_next_draft_with_the_same_url(store):
    clone = library.clone_questionnaire(store, MOOD_LOG, practitioner=DR, now=NOW)
    library.publish(store, clone["id"])
    draft = library.new_version(store, clone["id"], now=NOW)
    assert (draft["url"], draft["version"], draft["status"]) == (clone["url"], "1.1.0", "draft")
    assert draft["id"] != clone["id"]
    with pytest.raises(Conflict, match="already has a draft"):
        library.new_version(store, clone["id"])
    edited = library.edit_draft(
        store, draft["id"], lambda q: library.replace_item(q, "mood", text="v2 wording")
    )
    library.publish(store, edited["id"])
    assert (
        library.find_item(store.read("Questionnaire", clone["id"]).resource, "mood")["text"]
        != "v2 wording"
    )
    newest = library.resolve_questionnaire(store, clone["url"])
    assert newest["version"] == "1.1.0"


def test_library_activities_are_cloned_not_versioned(store):
    with pytest.raises(BusinessRuleError, match="clone it"):
        library.new_version(store, "mood-log")


def test_set_answer_options_accepts_plain_values():
    q = small_questionnaire()
    q = library.replace_item(q, "why", type="choice", enableWhen=None)
    out = library.set_answer_options(q, "why", ["time", "energy", 3])
    assert library.find_item(out, "why")["answerOption"] == [
        {"valueString": "time"},
        {"valueString": "energy"},
        {"valueInteger": 3},
    ]
    assert "answerOption" not in library.find_item(q, "why")  # the input is not changed
    with pytest.raises(NotFound):
        library.find_item(q, "missing")
