"""The activity editor never loses work and edits what the patient renderer supports.

Publish saves the form first; limits, slider, several answers, media and branching are
editable (and refused with a message when they would not work, store unchanged); a copy
gets its own title so Assign never lists two activities by the same name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from clinician_support import Session, editor_form_values, snapshot
from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)

from hw_fhir import render
from hw_fhir.item_settings import apply_item_settings, item_settings




def _clone(ava: Session, source: str = "mood-log", title: str | None = None) -> str:
    data = {"source": source, **({"title": title} if title else {})}
    response = ava.post("/clinician/library/clone", data)
    assert response.status_code == 303, response.text
    return response.headers["Location"].split("/library/")[1].split("/edit")[0]


def _item(store: Any, qid: str, link_id: str) -> dict[str, Any]:
    items = list(_walk(store.read("Questionnaire", qid).resource["item"]))
    return next(i for i in items if i["linkId"] == link_id)


def _walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from _walk(item.get("item") or [])


def _form(ava: Session, qid: str, **changes: str) -> dict[str, Any]:
    form = editor_form_values(ava.get(f"/clinician/library/{qid}/edit").text)
    form.update(changes)
    return form


def test_a_copy_gets_its_own_title(store: Any, ava: Session) -> None:
    first = _clone(ava)
    second = _clone(ava)
    titles = [store.read("Questionnaire", q).resource["title"] for q in (first, second)]
    assert titles == ["Daily mood log (copy)", "Daily mood log (copy 2)"]
    named = _clone(ava, title="Daily mood log")  # the library's own title: made distinct
    assert store.read("Questionnaire", named).resource["title"] == "Daily mood log (2)"


def test_publish_saves_the_form_first(store: Any, ava: Session) -> None:
    qid = _clone(ava)
    form = _form(ava, qid, **{"text.hard": "What was hardest today?", "action": "publish"})
    response = ava.post(f"/clinician/library/{qid}/edit", form)
    assert response.status_code == 303 and "notice=published" in response.headers["Location"]
    stored = store.read("Questionnaire", qid).resource
    assert stored["status"] == "active"
    assert _item(store, qid, "hard")["text"] == "What was hardest today?"


def test_publish_with_a_bad_edit_publishes_nothing_and_keeps_the_typing(
    store: Any, ava: Session
) -> None:
    qid = _clone(ava)
    before = snapshot(store, "Questionnaire")
    form = _form(ava, qid, **{"min.mood": "12", "text.hard": "Kept text", "action": "publish"})
    response = ava.post(f"/clinician/library/{qid}/edit", form)
    assert response.status_code == 400
    assert "must be below the highest" in response.text
    assert "Kept text" in response.text  # what was typed is still on the page
    assert snapshot(store, "Questionnaire") == before
    assert store.read("Questionnaire", qid).resource["status"] == "draft"


def test_limits_slider_several_answers_media_and_branching(store: Any, ava: Session) -> None:
    qid = _clone(ava)
    form = _form(
        ava,
        qid,
        **{
            "min.sleep-hours": "0",
            "max.sleep-hours": "14",
            "slider.sleep-hours": "1",
            "step.sleep-hours": "0.5",
            "repeats.feelings": "",
            "media.intro": "/static/media/audio/breathing.mp3",
            "media_type.intro": "audio/mpeg",
            "when_q.hard": "mood",
            "when_op.hard": "<=",
            "when_a.hard": "4",
            "when_q.helped": "feelings",
            "when_op.helped": "=",
            "when_a.helped": "",
        },
    )
    form["when_a.helped"] = _option_label(store, qid, "feelings")
    response = ava.post(f"/clinician/library/{qid}/edit", form)
    assert response.status_code == 303, response.text
    sleep = _item(store, qid, "sleep-hours")
    built = {f.link_id: f for f in _fields(render.build_form(store.read("Questionnaire", qid).resource))}
    assert built["sleep-hours"].widget == "slider"
    settings = item_settings(store.read("Questionnaire", qid).resource)
    assert (settings["sleep-hours"].min, settings["sleep-hours"].max) == ("0", "14")
    assert settings["sleep-hours"].step == "0.5" and settings["sleep-hours"].slider
    assert "repeats" not in _item(store, qid, "feelings")
    assert built["feelings"].widget != "checkbox"
    assert settings["intro"].media_url == "/static/media/audio/breathing.mp3"
    media = built["intro"].media
    assert media is not None and media.content_type == "audio/mpeg"  # the patient gets it
    assert _item(store, qid, "hard")["enableWhen"] == [
        {"question": "mood", "operator": "<=", "answerInteger": 4}
    ]
    helped = _item(store, qid, "helped")["enableWhen"][0]
    assert helped["question"] == "feelings" and "answerCoding" in helped
    assert sleep["type"] == "decimal"
    # the editor shows the saved settings again
    page = ava.get(f"/clinician/library/{qid}/edit").text
    assert re.search(r'id="when-q-hard">.*?<option value="mood" selected', page, re.S)
    # several answers back on
    form = _form(ava, qid, **{"repeats.feelings": "1"})
    again = ava.post(f"/clinician/library/{qid}/edit", form)
    assert again.status_code == 303, re.findall(r"<li>(.*?)</li>", again.text)[:5]
    assert _item(store, qid, "feelings")["repeats"] is True


def _option_label(store: Any, qid: str, link_id: str) -> str:
    option = _item(store, qid, link_id)["answerOption"][0]
    return option["valueCoding"].get("display") or option["valueCoding"]["code"]


def _fields(view: Any) -> Iterator[Any]:
    for item in getattr(view, "items", None) or getattr(view, "children", ()):
        yield item
        yield from _fields(item)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min.mood": "low"}, "must be a whole number"),
        ({"min.sleep-hours": "", "max.sleep-hours": "", "slider.sleep-hours": "1"}, "needs a lowest"),
        ({"step.mood": "0"}, "slider step"),
        ({"media.intro": "javascript:alert(1)", "media_type.intro": "image/png"}, "https://"),
        ({"media.intro": "/static/x.png", "media_type.intro": ""}, "what kind of media"),
        ({"when_q.hard": "nowhere"}, "before it"),
        ({"when_q.hard": "feelings", "when_a.hard": "Purple"}, "is not an answer"),
        ({"when_q.hard": "feelings", "when_op.hard": ">", "when_a.hard": "x"}, "number or a date"),
        ({"when_q.hard": "mood", "when_a.hard": ""}, "Write the answer"),
        ({"when_q.hard": "mood", "when_op.hard": "~"}, "Unknown condition"),
        ({"title": "Daily mood log"}, "Another activity is already called"),
    ],
)
def test_bad_settings_are_refused_with_a_message(
    store: Any, ava: Session, changes: dict[str, str], message: str
) -> None:
    qid = _clone(ava)
    before = snapshot(store, "Questionnaire")
    response = ava.post(f"/clinician/library/{qid}/edit", _form(ava, qid, **changes))
    assert response.status_code == 400
    assert "Nothing was saved" in response.text and message in response.text
    assert "Traceback" not in response.text
    assert snapshot(store, "Questionnaire") == before


def test_settings_round_trip_without_changes() -> None:
    questionnaire = {
        "item": [
            {"linkId": "a", "type": "integer", "text": "A"},
            {"linkId": "b", "type": "string", "text": "B",
             "enableWhen": [{"question": "a", "operator": ">", "answerInteger": 2},
                            {"question": "a", "operator": "<", "answerInteger": 9}],
             "enableBehavior": "all"},
        ]
    }
    form = {"settings.a": "1", "min.a": "1", "max.a": "10", "settings.b": "1", "when_q.b": ""}
    edited = apply_item_settings(questionnaire, form)
    assert [e["url"].rsplit("/", 1)[1] for e in edited["item"][0]["extension"]] == [
        "minValue", "maxValue"
    ]
    assert len(edited["item"][1]["enableWhen"]) == 2  # several conditions are kept
    assert "extension" not in questionnaire["item"][0]  # the input is not changed
