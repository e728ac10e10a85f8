"""A clinician's own activities: copy, edit items in the editor, publish, retire, new version.

An edit that would break the Questionnaire is refused with the reasons, and nothing is stored.
"""

from __future__ import annotations

from typing import Any

import pytest

from clinician_support import Session, editor_form_values, snapshot
from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)
from hw_fhir import review
from hw_fhir.errors import InvalidInput
from hw_fhir.library import clinician_system, clone_questionnaire, publish


def _clone(ava: Session, source: str = "grounding") -> str:
    response = ava.post("/clinician/library/clone", {"source": source, "title": "My grounding"})
    assert response.status_code == 303, response.text
    assert "notice=cloned" in response.headers["Location"]
    return response.headers["Location"].split("/library/")[1].split("/edit")[0]


def _items(store: Any, qid: str) -> list[dict[str, Any]]:
    return store.read("Questionnaire", qid).resource["item"]


# -- pure editor ------------------------------------------------------------------------------


def test_apply_item_editor_edits_moves_adds_and_removes() -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "title": "T",
        "item": [
            {"linkId": "a", "type": "string", "text": "A"},
            {
                "linkId": "b",
                "type": "choice",
                "text": "B",
                "answerOption": [
                    {
                        "valueCoding": {"system": "s", "code": "y", "display": "Yes"},
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/StructureDefinition/itemWeight",
                                "valueDecimal": 1,
                            }
                        ],
                    },
                    {"valueCoding": {"system": "s", "code": "n", "display": "No"}},
                ],
            },
        ],
    }
    edited = review.apply_item_editor(
        questionnaire,
        {
            "title": "New title",
            "text.a": "A?",
            "required.a": "1",
            "type.a": "string",
            "help.a": "Think",
            "options.b": "No\nYes\nMaybe",
            "type.b": "choice",
            "action": "up:b",
        },
    )
    assert edited["title"] == "New title"
    assert [i["linkId"] for i in edited["item"]] == ["b", "a"]
    a = edited["item"][1]
    assert a["text"] == "A?" and a["required"] is True
    assert a["item"][0]["text"] == "Think" and a["item"][0]["type"] == "display"
    options = edited["item"][0]["answerOption"]
    assert [o["valueCoding"]["code"] for o in options] == ["n", "y", "maybe"]
    assert options[1]["extension"][0]["valueDecimal"] == 1  # a kept option keeps its weight
    assert options[2]["valueCoding"]["system"] == "s"
    assert questionnaire["item"][0]["text"] == "A"  # the input is not changed

    added = review.apply_item_editor(
        edited,
        {"action": "add", "new_text": "How long?", "new_type": "integer", "new_required": "1"},
    )
    assert added["item"][-1] == {
        "linkId": "how-long",
        "text": "How long?",
        "type": "integer",
        "required": True,
    }
    removed = review.apply_item_editor(added, {"action": "remove:a"})
    assert [i["linkId"] for i in removed["item"]] == ["b", "how-long"]


def test_apply_item_editor_changing_away_from_a_choice_drops_options() -> None:
    questionnaire = {
        "item": [
            {"linkId": "b", "type": "choice", "text": "B", "answerOption": [{"valueString": "x"}]}
        ]
    }
    edited = review.apply_item_editor(questionnaire, {"type.b": "text"})
    assert "answerOption" not in edited["item"][0]


@pytest.mark.parametrize(
    "form",
    [
        {"action": "remove:nope"},
        {"action": "explode"},
        {"action": "add", "new_text": ""},
        {"type.a": "spreadsheet"},
        {"action": "add", "new_text": "x", "new_type": "group"},
        {"action": "add", "new_text": "x", "new_parent": "a"},
    ],
)
def test_apply_item_editor_refuses_what_it_cannot_do(form: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        review.apply_item_editor({"item": [{"linkId": "a", "type": "string", "text": "A"}]}, form)


def test_editor_rows_hide_help_items() -> None:
    edited = review.apply_item_editor(
        {"item": [{"linkId": "a", "type": "string", "text": "A"}]}, {"help.a": "Some help"}
    )
    rows = review.editor_rows(edited)
    assert [(r.link_id, r.help, r.first, r.last) for r in rows] == [("a", "Some help", True, True)]


# -- pages ------------------------------------------------------------------------------------


def test_clone_then_edit_then_publish_then_assign(store: Any, ava: Session) -> None:
    qid = _clone(ava)
    clone = store.read("Questionnaire", qid).resource
    assert clone["status"] == "draft" and clone["title"] == "My grounding"
    assert clone["url"].startswith(clinician_system("dr-rivera"))
    page = ava.get(f"/clinician/library/{qid}/edit")
    assert page.status_code == 200
    form = editor_form_values(page.text)
    assert form["text.done"].startswith("Did you practice")
    form.update(
        {
            "text.notes": "Anything you noticed?",
            "action": "add",
            "new_text": "Where were you?",
            "new_type": "choice",
            "new_options": "Home\nWork\nOut and about",
        }
    )
    response = ava.post(f"/clinician/library/{qid}/edit", form)
    assert response.status_code == 303, response.text
    items = _items(store, qid)
    assert next(i for i in items if i["linkId"] == "notes")["text"] == "Anything you noticed?"
    assert items[-1]["text"] == "Where were you?"
    assert [o["valueCoding"]["display"] for o in items[-1]["answerOption"]] == [
        "Home",
        "Work",
        "Out and about",
    ]
    # reorder: move the new item up
    form = {
        **editor_form_values(ava.get(f"/clinician/library/{qid}/edit").text),
        "action": f"up:{items[-1]['linkId']}",
    }
    assert ava.post(f"/clinician/library/{qid}/edit", form).status_code == 303
    assert _items(store, qid)[-2]["text"] == "Where were you?"
    # publish, then it is assignable
    published = ava.post(f"/clinician/library/{qid}/publish")
    assert "notice=published" in published.headers["Location"]
    assert store.read("Questionnaire", qid).resource["status"] == "active"
    library = ava.get("/clinician/patients/pat-ava/assign", q="grounding").text
    assert f'id="activity-{qid}"' in library and "yours" in library
    assert ava.get(f"/clinician/patients/pat-ava/assign/{qid}").status_code == 200


def test_an_edit_that_would_break_the_activity_is_refused(store: Any, ava: Session) -> None:
    qid = _clone(ava)
    before = snapshot(store, "Questionnaire")
    form = {**editor_form_values(ava.get(f"/clinician/library/{qid}/edit").text), "action": "remove:done"}
    response = ava.post(f"/clinician/library/{qid}/edit", form)
    assert response.status_code == 400
    assert "Nothing was saved" in response.text and "enableWhen" in response.text
    assert snapshot(store, "Questionnaire") == before
    # the page shows the attempted edit, so nothing typed is lost
    assert 'id="item-done"' not in response.text


def test_a_choice_without_options_is_refused(store: Any, ava: Session) -> None:
    qid = _clone(ava, "mood-log")
    before = snapshot(store, "Questionnaire")
    form = {
        **editor_form_values(ava.get(f"/clinician/library/{qid}/edit").text),
        "options.feelings": "  \n ",
    }
    response = ava.post(f"/clinician/library/{qid}/edit", form)
    assert response.status_code == 400 and "Nothing was saved" in response.text
    assert snapshot(store, "Questionnaire") == before


def test_a_stale_editor_page_does_not_overwrite_newer_changes(store: Any, ava: Session) -> None:
    qid = _clone(ava)
    stale = editor_form_values(ava.get(f"/clinician/library/{qid}/edit").text)
    fresh = {**stale, "title": "Newer title"}
    assert ava.post(f"/clinician/library/{qid}/edit", fresh).status_code == 303
    response = ava.post(f"/clinician/library/{qid}/edit", {**stale, "title": "Older title"})
    assert response.status_code == 412 and "Nothing was saved" in response.text
    assert store.read("Questionnaire", qid).resource["title"] == "Newer title"


def test_library_activities_and_other_clinicians_activities_cannot_be_edited(
    store: Any, ava: Session
) -> None:
    theirs = clone_questionnaire(store, "grounding", practitioner="dr-okafor")
    before = snapshot(store, "Questionnaire")
    for qid in ("grounding", theirs["id"]):
        assert ava.get(f"/clinician/library/{qid}/edit").status_code == 403
        assert ava.post(f"/clinician/library/{qid}/edit", {"title": "Mine now"}).status_code == 403
        assert ava.post(f"/clinician/library/{qid}/publish").status_code == 403
    assert snapshot(store, "Questionnaire") == before


def test_published_activities_are_read_only_until_a_new_version(store: Any, ava: Session) -> None:
    qid = _clone(ava)
    publish(store, qid)
    page = ava.get(f"/clinician/library/{qid}/edit").text
    assert 'id="editor-form"' not in page and "cannot be changed" in page
    before = snapshot(store, "Questionnaire")
    response = ava.post(f"/clinician/library/{qid}/edit", {"title": "Changed", "action": "save"})
    assert response.status_code == 422 and snapshot(store, "Questionnaire") == before
    made = ava.post(f"/clinician/library/{qid}/new-version")
    assert "notice=new-version" in made.headers["Location"]
    new_id = made.headers["Location"].split("/library/")[1].split("/edit")[0]
    draft = store.read("Questionnaire", new_id).resource
    assert draft["status"] == "draft" and draft["version"] == "1.1.0"
    retired = ava.post(f"/clinician/library/{qid}/retire")
    assert "notice=retired" in retired.headers["Location"]
    assert store.read("Questionnaire", qid).resource["status"] == "retired"


def test_my_activities_page(store: Any, ava: Session) -> None:
    qid = _clone(ava)
    page = ava.get("/clinician/library", q="breathing").text
    assert f'id="own-{qid}"' in page and 'id="publish-' in page
    assert 'id="clone-paced-breathing"' in page and 'id="clone-grounding"' not in page


def test_editor_posts_need_csrf(store: Any, ava: Session) -> None:
    qid = _clone(ava)
    before = snapshot(store, "Questionnaire")
    assert ava.post(f"/clinician/library/{qid}/edit", {"title": "x"}, csrf=False).status_code == 403
    assert (
        ava.post("/clinician/library/clone", {"source": "grounding"}, csrf=False).status_code == 403
    )
    assert snapshot(store, "Questionnaire") == before
