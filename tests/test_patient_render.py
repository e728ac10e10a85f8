"""The form renderer (hw_fhir.render): every item type rendered, read back, validated; enableWhen
on the server; repeating groups; drafts shown again; the whole catalog round-trips."""

from __future__ import annotations

import copy
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from werkzeug.datastructures import MultiDict

from hw_fhir import catalog, render
from hw_fhir.errors import InvalidResponse
from hw_fhir.responses import canonical_of, check_response, validate_response

EXT = "http://hl7.org/fhir/StructureDefinition/"
SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
COLORS = "urn:example:color"
NY = ZoneInfo("America/New_York")


def control(code: str) -> dict[str, Any]:
    return {
        "url": EXT + "questionnaire-itemControl",
        "valueCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/questionnaire-item-control", "code": code}]
        },
    }


def coding(code: str, system: str = COLORS) -> dict[str, Any]:
    return {"system": system, "code": code, "display": code.title()}


def options(*codes: str) -> list[dict[str, Any]]:
    return [{"valueCoding": coding(c)} for c in codes]


def limits(low: int, high: int) -> list[dict[str, Any]]:
    return [
        {"url": EXT + "minValue", "valueInteger": low},
        {"url": EXT + "maxValue", "valueInteger": high},
    ]


def unit(display: str, code: str) -> dict[str, Any]:
    return {
        "url": EXT + "questionnaire-unit",
        "valueCoding": {"system": "http://unitsofmeasure.org", "code": code, "display": display},
    }


ALL_TYPES: dict[str, Any] = {
    "resourceType": "Questionnaire",
    "url": "http://example.org/Questionnaire/all-types",
    "version": "2",
    "status": "active",
    "title": "Every item type",
    "item": [
        {
            "linkId": "intro",
            "type": "display",
            "text": "Read this first.",
            "_text": {
                "extension": [
                    {
                        "url": EXT + "rendering-xhtml",
                        "valueString": '<div xmlns="http://www.w3.org/1999/xhtml">'
                        '<p>Read <strong>this</strong> '
                        '<a href="/static/media/audio/body-scan.mp3">track</a>'
                        '<a href="javascript:alert(1)">bad</a></p><script>alert(1)</script>'
                        '<ol><li onclick="x()">one</li></ol><img src="x" onerror="y()"></div>',
                    }
                ]
            },
            "extension": [
                {
                    "url": SDC + "sdc-questionnaire-itemMedia",
                    "valueAttachment": {
                        "contentType": "audio/mpeg",
                        "url": "/static/media/audio/body-scan.mp3",
                        "title": "Track",
                    },
                }
            ],
        },
        {
            "linkId": "name",
            "type": "string",
            "text": "Your name",
            "required": True,
            "maxLength": 20,
        },
        {"linkId": "story", "type": "text", "text": "Tell the story"},
        {
            "linkId": "count",
            "type": "integer",
            "text": "How many times?",
            "extension": [*limits(0, 10), unit("times", "{times}")],
        },
        {"linkId": "weight", "type": "decimal", "text": "Weight", "extension": [unit("kg", "kg")]},
        {"linkId": "ok", "type": "boolean", "text": "Did it go well?", "required": True},
        {
            "linkId": "color",
            "type": "choice",
            "text": "Colour",
            "answerOption": options("red", "green", "blue"),
        },
        {
            "linkId": "city",
            "type": "choice",
            "text": "City",
            "answerOption": options(
                "amsterdam", "berlin", "cairo", "delhi", "edinburgh", "fez", "geneva", "hanoi"
            ),
        },
        {
            "linkId": "picked",
            "type": "choice",
            "text": "Pick",
            "extension": [control("drop-down")],
            "answerOption": options("a", "b"),
        },
        {
            "linkId": "fruits",
            "type": "choice",
            "text": "Fruits",
            "repeats": True,
            "extension": [control("check-box")],
            "answerOption": options("apple", "pear", "plum"),
        },
        {
            "linkId": "feeling",
            "type": "open-choice",
            "text": "Feeling",
            "maxLength": 30,
            "answerOption": options("calm", "tense"),
        },
        {"linkId": "day", "type": "date", "text": "Which day?"},
        {"linkId": "at", "type": "time", "text": "What time?"},
        {"linkId": "when", "type": "dateTime", "text": "When exactly?"},
        {
            "linkId": "suds",
            "type": "integer",
            "text": "Distress",
            "extension": [
                *limits(0, 100),
                control("slider"),
                {"url": EXT + "questionnaire-sliderStepValue", "valueInteger": 5},
            ],
        },
        {
            "linkId": "extra",
            "type": "string",
            "text": "What went wrong?",
            "enableWhen": [{"question": "ok", "operator": "=", "answerBoolean": False}],
        },
        {
            "linkId": "detail",
            "type": "group",
            "text": "Details",
            "item": [
                {
                    "linkId": "note",
                    "type": "string",
                    "text": "Why red?",
                    "enableWhen": [
                        {
                            "question": "color",
                            "operator": "=",
                            "answerCoding": {"system": COLORS, "code": "red"},
                        }
                    ],
                },
                {"linkId": "mood", "type": "integer", "text": "Mood"},
            ],
        },
        {
            "linkId": "rows",
            "type": "group",
            "text": "Entry",
            "repeats": True,
            "required": True,
            "item": [
                {"linkId": "what", "type": "string", "text": "What happened?", "required": True},
                {
                    "linkId": "rating",
                    "type": "integer",
                    "text": "Rating",
                    "extension": [*limits(0, 10), control("slider")],
                },
                {
                    "linkId": "why",
                    "type": "text",
                    "text": "Why so high?",
                    "enableWhen": [{"question": "rating", "operator": ">", "answerInteger": 5}],
                },
            ],
        },
        {
            "linkId": "score",
            "type": "integer",
            "text": "Total",
            "readOnly": True,
            "extension": [
                {
                    "url": SDC + "sdc-questionnaire-calculatedExpression",
                    "valueExpression": {"language": "text/fhirpath", "expression": "1"},
                }
            ],
        },
    ],
}

VALID = MultiDict(
    [
        ("q:name", "  Ava  "),
        ("q:story", "Line one\r\nLine two"),
        ("q:count", "3"),
        ("q:weight", "72,5"),
        ("q:ok", "false"),
        ("q:color", "0"),
        ("q:city", "7"),
        ("q:picked", "1"),
        ("q:fruits", "0"),
        ("q:fruits", "2"),
        ("q:feeling", ""),
        ("q:feeling~other", "relieved"),
        ("q:day", "2026-03-01"),
        ("q:at", "21:30"),
        ("q:when", "2026-03-08T21:30"),
        ("q:suds", "45"),
        ("q:extra", "Rain"),
        ("q:detail/note", "I like it"),
        ("q:detail/mood", "6"),
        ("q:rows.0/what", "Walk"),
        ("q:rows.0/rating", "3"),
        ("q:rows.0/why", "hidden in the browser"),
        ("q:rows.3/what", "Call"),
        ("q:rows.3/rating", "8"),
        ("q:rows.3/why", "It mattered"),
        ("csrf_token", "ignored"),
        ("_action", "submit"),
    ]
)


def items_by_link(view_items: Any) -> dict[str, render.ItemView]:
    out: dict[str, render.ItemView] = {}
    for item in view_items:
        out[item.link_id] = item
        out.update(items_by_link(item.children))
        for instance in item.instances:
            for child in instance.items:
                out.setdefault(f"{item.link_id}.{instance.number - 1}/{child.link_id}", child)
    return out


def answers(items: list[dict[str, Any]], link_id: str) -> list[Any]:
    found = []
    for item in items:
        if item["linkId"] == link_id:
            found.extend(item.get("answer", []))
        found.extend(answers(item.get("item", []), link_id))
    return found


def parse(form: Any, **kwargs: Any) -> render.ParsedForm:
    return render.parse_form(ALL_TYPES, form, zone=NY, **kwargs)


# -- rendering ------------------------------------------------------------------------------------


def test_every_item_type_gets_its_widget() -> None:
    view = render.build_form(ALL_TYPES)
    widgets = {k: v.widget for k, v in items_by_link(view.items).items() if "." not in k}
    assert widgets == {
        "intro": "display",
        "name": "string",
        "story": "text",
        "count": "integer",
        "weight": "decimal",
        "ok": "boolean",
        "color": "radio",
        "city": "select",
        "picked": "select",
        "fruits": "checkbox",
        "feeling": "radio",
        "day": "date",
        "at": "time",
        "when": "dateTime",
        "suds": "slider",
        "extra": "string",
        "detail": "group",
        "note": "string",
        "mood": "integer",
        "rows": "group",
    }
    assert "score" not in widgets  # calculated scores are not shown


def test_item_details_for_the_template() -> None:
    items = items_by_link(render.build_form(ALL_TYPES).items)
    assert (items["suds"].minimum, items["suds"].maximum, items["suds"].step) == ("0", "100", "5")
    assert items["count"].unit == "times" and items["weight"].unit == "kg"
    assert items["name"].required and items["name"].max_length == 20 and not items["story"].required
    assert [o.label for o in items["color"].options] == ["Red", "Green", "Blue"]
    assert items["feeling"].open_choice and items["feeling"].other_name == "q:feeling~other"
    assert items["note"].input_name == "q:detail/note"
    rows = items["rows"]
    assert [i.name for i in rows.instances] == ["rows.0"]
    assert rows.template is not None and rows.template.name == "rows.__i0__"
    assert [c.input_name for c in rows.template.items] == [
        "q:rows.__i0__/what",
        "q:rows.__i0__/rating",
        "q:rows.__i0__/why",
    ]
    assert items["rows.0/what"].id == "f-rows-0--what"


def test_display_markup_is_sanitised_and_media_embedded() -> None:
    intro = render.build_form(ALL_TYPES).items[0]
    assert intro.html is not None
    assert "<script" not in intro.html and "alert" not in intro.html and "onclick" not in intro.html
    assert "<img" not in intro.html and "javascript:" not in intro.html
    assert "<strong>this</strong>" in intro.html and "<ol><li>one</li></ol>" in intro.html
    assert (
        '<a href="/static/media/audio/body-scan.mp3" target="_blank" rel="noopener noreferrer">'
        in intro.html
    )
    assert intro.media == render.Media("/static/media/audio/body-scan.mp3", "audio/mpeg", "Track")
    assert intro.media.kind == "audio"


def test_sanitiser_keeps_only_safe_tags() -> None:
    dirty = (
        '<p>ok <a href="tel:988">988</a> <a href="//evil.example/x">x</a>'
        '<iframe src="x">inner</iframe><b onmouseover="z">bold</b></p>'
    )
    clean = render.sanitize_xhtml(dirty)
    assert clean == '<p>ok <a href="tel:988">988</a> <a>x</a><b>bold</b></p>'


def test_enable_when_is_described_for_the_browser_and_for_people() -> None:
    items = items_by_link(render.build_form(ALL_TYPES).items)
    assert items["extra"].conditions_json == [{"q": "ok", "op": "=", "kind": "token", "v": "false"}]
    assert items["note"].conditions_json == [{"q": "color", "op": "=", "kind": "token", "v": "0"}]
    assert items["rows.0/why"].conditions_json == [
        {"q": "rating", "op": ">", "kind": "number", "v": 5.0}
    ]
    assert (
        items["extra"].condition_text
        == "Answer this only if your answer to “Did it go well?” is “No”."
    )


# -- reading the form back ------------------------------------------------------------------------


def test_valid_fields_become_fhir_answers_of_every_type() -> None:
    parsed = parse(VALID)
    assert parsed.issues == ()
    items = parsed.items
    first = {
        k: answers(items, k)
        for k in (
            "name",
            "story",
            "count",
            "weight",
            "ok",
            "color",
            "city",
            "picked",
            "fruits",
            "feeling",
            "day",
            "at",
            "when",
            "suds",
        )
    }
    assert first == {
        "name": [{"valueString": "Ava"}],
        "story": [{"valueString": "Line one\nLine two"}],
        "count": [{"valueInteger": 3}],
        "weight": [{"valueDecimal": 72.5}],
        "ok": [{"valueBoolean": False}],
        "color": [{"valueCoding": coding("red")}],
        "city": [{"valueCoding": coding("hanoi")}],
        "picked": [{"valueCoding": coding("b")}],
        "fruits": [{"valueCoding": coding("apple")}, {"valueCoding": coding("plum")}],
        "feeling": [{"valueString": "relieved"}],
        "day": [{"valueDate": "2026-03-01"}],
        "at": [{"valueTime": "21:30:00"}],
        "when": [{"valueDateTime": "2026-03-08T21:30:00-04:00"}],
        "suds": [{"valueInteger": 45}],
    }
    rows = [i for i in items if i["linkId"] == "rows"]
    assert len(rows) == 2  # instances 0 and 3 (a gap left by a removed entry) in order
    assert answers(rows[1]["item"], "what") == [{"valueString": "Call"}]
    assert "score" not in str(items)


def test_a_valid_submission_passes_the_validator_after_pruning() -> None:
    response = render.prune_disabled(ALL_TYPES, parse(VALID).response(ALL_TYPES))
    assert response["questionnaire"] == canonical_of(ALL_TYPES)
    validate_response(ALL_TYPES, response, final=True)
    rows = [i for i in response["item"] if i["linkId"] == "rows"]
    assert answers(rows[0]["item"], "why") == []  # rating 3: the question was switched off
    assert answers(rows[1]["item"], "why") == [{"valueString": "It mattered"}]
    assert answers(response["item"], "extra") == [{"valueString": "Rain"}]  # ok = false: enabled


def test_prune_drops_answers_enable_when_switched_off_and_empty_containers() -> None:
    form = MultiDict(VALID)
    form.setlist("q:ok", ["true"])
    form.setlist("q:color", ["1"])
    form.setlist("q:detail/mood", [""])
    raw = parse(form).response(ALL_TYPES)
    with pytest.raises(InvalidResponse) as caught:
        validate_response(ALL_TYPES, raw, final=True)
    assert any("not enabled" in i.message for i in caught.value.issues)
    pruned = render.prune_disabled(ALL_TYPES, raw)
    assert answers(pruned["item"], "extra") == [] and answers(pruned["item"], "note") == []
    assert not [i for i in pruned["item"] if i["linkId"] == "detail"]  # nothing left inside
    validate_response(ALL_TYPES, pruned, final=True)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("q:count", "three", "Enter a whole number, for example 7."),
        ("q:weight", "heavy", "Enter a number, for example 7.5."),
        ("q:ok", "maybe", "Choose Yes or No."),
        ("q:day", "2026-02-30", "Enter a date, for example 2026-03-08."),
        ("q:at", "25:00", "Enter a time, for example 21:30."),
        ("q:when", "soon", "Enter a date and time, for example 2026-03-08 21:30."),
        ("q:color", "9", "Choose one of the options shown."),
        ("q:rows.3/rating", "lots", "Enter a whole number, for example 7."),
    ],
)
def test_unreadable_fields_are_issues_next_to_their_item(
    field: str, value: str, message: str
) -> None:
    form = MultiDict(VALID)
    form.setlist(field, [value])
    parsed = parse(form)
    [issue] = parsed.issues
    assert issue.message == message
    view = render.build_form(
        ALL_TYPES, parsed.response(ALL_TYPES), issues=parsed.issues, raw=parsed.raw, zone=NY
    )
    items = items_by_link(view.items)
    key = field[2:].replace("rows.3", "rows.1")  # instances are renumbered in order
    shown = items[key if "/" not in key or key.startswith("rows") else key.split("/")[-1]]
    assert shown.errors == (message,)
    assert value in shown.values  # what was typed is shown again
    assert [e.message for e in view.errors] == [message]
    assert view.errors[0].field_id in (shown.id, f"{shown.id}-0")


def test_both_an_option_and_free_text_for_one_answer_is_an_issue() -> None:
    form = MultiDict(VALID)
    form.setlist("q:feeling", ["0"])
    [issue] = parse(form).issues
    assert "not both" in issue.message


def test_validator_issues_land_on_their_items_with_kind_wording() -> None:
    form = MultiDict(VALID)
    form.setlist("q:name", [""])
    form.setlist("q:rows.3/what", [""])
    form.setlist("q:count", ["11"])
    response = render.prune_disabled(ALL_TYPES, parse(form).response(ALL_TYPES))
    issues = [i for i in check_response(ALL_TYPES, response, final=True)]
    view = render.build_form(ALL_TYPES, response, issues=issues, zone=NY)
    items = items_by_link(view.items)
    assert items["name"].errors == ("Please answer this question.",)
    assert items["rows.1/what"].errors == ("Please answer this question.",)
    assert items["rows.0/what"].errors == ()
    assert items["count"].errors == ("11 is above the maximum 10.",)
    assert {e.field_id for e in view.errors} == {"f-name", "f-rows-1--what", "f-count"}


def test_a_required_repeating_group_left_empty_is_flagged_on_the_group() -> None:
    form = MultiDict([(k, v) for k, v in VALID.items(multi=True) if not k.startswith("q:rows")])
    response = parse(form).response(ALL_TYPES)
    view = render.build_form(
        ALL_TYPES, response, issues=check_response(ALL_TYPES, response, final=True)
    )
    rows = items_by_link(view.items)["rows"]
    assert rows.errors == ("Please fill in at least one answer here.",)
    assert len(rows.instances) == 1  # an empty entry is offered


# -- repeats, drafts, round trips -----------------------------------------------------------------


def test_add_and_remove_entries_without_javascript() -> None:
    parsed = parse(VALID)
    view = render.build_form(ALL_TYPES, parsed.response(ALL_TYPES), raw=parsed.raw, add=["rows"])
    rows = items_by_link(view.items)["rows"]
    assert [i.name for i in rows.instances] == ["rows.0", "rows.1", "rows.2"]
    assert rows.instances[2].items[0].values == ()
    removed = parse(VALID, remove=["rows.0"])
    kept = [i for i in removed.items if i["linkId"] == "rows"]
    assert len(kept) == 1 and answers(kept[0]["item"], "what") == [{"valueString": "Call"}]


def test_a_saved_draft_fills_the_form_again() -> None:
    response = render.prune_disabled(ALL_TYPES, parse(VALID).response(ALL_TYPES))
    items = items_by_link(render.build_form(ALL_TYPES, response, zone=NY).items)
    assert items["name"].values == ("Ava",)
    assert items["weight"].values == ("72.5",)
    assert items["ok"].values == ("false",)
    assert [o.selected for o in items["fruits"].options] == [True, False, True]
    assert items["feeling"].other == "relieved" and not any(
        o.selected for o in items["feeling"].options
    )
    assert items["at"].values == ("21:30",)
    assert items["when"].values == ("2026-03-08T21:30",)
    assert items["rows.1/why"].values == ("It mattered",)
    assert items["rows.0/why"].values == ()
    utc = render.build_form(ALL_TYPES, response).items
    assert items_by_link(utc)["when"].values == ("2026-03-09T01:30",)  # the same instant in UTC


def test_initial_values_prefill_an_empty_form() -> None:
    questionnaire = copy.deepcopy(ALL_TYPES)
    questionnaire["item"][1]["initial"] = [{"valueString": "Friend"}]
    questionnaire["item"][6]["answerOption"][2]["initialSelected"] = True
    items = items_by_link(render.build_form(questionnaire).items)
    assert items["name"].values == ("Friend",)
    assert [o.selected for o in items["color"].options] == [False, False, True]


def _fill(view_items: Any, form: MultiDict) -> None:
    """Answer every rendered question the way a person would (first option, lowest number...)."""
    for item in view_items:
        if item.widget == "group":
            if item.repeats:
                for instance in item.instances:
                    _fill(instance.items, form)
            else:
                _fill(item.children, form)
            continue
        value = {
            "string": "words",
            "text": "Some words\nmore",
            "date": "2026-03-01",
            "time": "07:15",
            "dateTime": "2026-03-01T07:15",
            "boolean": "true",
            "radio": "0",
            "select": "0",
            "decimal": item.minimum or "7.5",
            "url": "https://example.org",
            "integer": item.minimum or "3",
            "slider": item.maximum or "5",
        }.get(item.widget)
        if item.widget == "checkbox":
            form.setlist(item.input_name, ["0", "1"])
        elif value is not None:
            form.setlist(item.input_name, [value])
        _fill(item.children, form)


@pytest.mark.parametrize("questionnaire", catalog.load_questionnaires(), ids=lambda q: q["id"])
def test_every_catalog_activity_renders_fills_and_round_trips(
    questionnaire: dict[str, Any],
) -> None:
    view = render.build_form(questionnaire)
    assert view.title == questionnaire["title"] and view.items
    form = MultiDict()
    _fill(view.items, form)
    parsed = render.parse_form(questionnaire, form, zone=NY)
    assert parsed.issues == ()
    response = render.prune_disabled(questionnaire, parsed.response(questionnaire))
    validate_response(questionnaire, response, final=True)
    again = render.build_form(questionnaire, response, zone=NY)
    shown = {}
    for item in items_by_link(again.items).values():
        if item.values:
            shown[item.input_name] = list(item.values)
    for name, values in shown.items():
        assert form.getlist(name) == values, name  # the draft shows exactly what was answered
