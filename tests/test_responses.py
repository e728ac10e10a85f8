"""QuestionnaireResponse validation against its exact Questionnaire version."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hw_fhir.errors import InvalidResponse, Issue
from hw_fhir.models import validate
from hw_fhir.responses import (
    CALCULATED_EXPRESSION,
    MAX_DECIMAL_PLACES,
    MAX_VALUE,
    MIN_LENGTH,
    MIN_VALUE,
    canonical_of,
    check_questionnaire,
    check_response,
    enabled_items,
    flatten_answers,
    validate_response,
)

URL = "http://hw-fhir.example.org/Questionnaire/test"
FEEL = "http://hw-fhir.example.org/CodeSystem/feeling"


def questionnaire(
    *items: dict[str, Any], version: str | None = "1.0.0", **extra: Any
) -> dict[str, Any]:
    q: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "url": URL,
        "status": "active",
        "item": list(items),
        **extra,
    }
    if version:
        q["version"] = version
    return q


def response(
    q: dict[str, Any], *items: dict[str, Any], status: str = "completed"
) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "status": status,
        "questionnaire": canonical_of(q),
        "item": list(items),
    }


def answered(link_id: str, *values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"linkId": link_id, "answer": list(values), **extra}


def ext(url: str, **value: Any) -> dict[str, Any]:
    return {"url": url, **value}


def where(link_id: str) -> str:
    return f"QuestionnaireResponse.item[linkId='{link_id}']"


def expressions(issues: list[Issue]) -> list[str | None]:
    return [i.expression for i in issues]


# -- every item type ------------------------------------------------------------------------

ALL_TYPES = questionnaire(
    {"linkId": "intro", "type": "display", "text": "Take a moment to breathe."},
    {"linkId": "done", "type": "boolean", "text": "Did you practise?"},
    {"linkId": "hours", "type": "decimal", "text": "Hours slept"},
    {"linkId": "mood", "type": "integer", "text": "Mood (0-10)"},
    {"linkId": "day", "type": "date", "text": "Day"},
    {"linkId": "when", "type": "dateTime", "text": "When did it start?"},
    {"linkId": "bed", "type": "time", "text": "Bedtime"},
    {"linkId": "thought", "type": "string", "text": "Automatic thought"},
    {"linkId": "journal", "type": "text", "text": "Journal"},
    {"linkId": "link", "type": "url", "text": "A helpful link"},
    {
        "linkId": "feel",
        "type": "choice",
        "text": "Feeling",
        "answerOption": [
            {"valueCoding": {"system": FEEL, "code": "calm", "display": "Calm"}},
            {"valueCoding": {"system": FEEL, "code": "tense", "display": "Tense"}},
        ],
    },
    {
        "linkId": "place",
        "type": "open-choice",
        "text": "Where were you?",
        "answerOption": [{"valueCoding": {"system": FEEL, "code": "home", "display": "Home"}}],
    },
    {"linkId": "drawing", "type": "attachment", "text": "Your drawing"},
    {"linkId": "helper", "type": "reference", "text": "Who helped?"},
    {"linkId": "walk", "type": "quantity", "text": "How far did you walk?"},
    {
        "linkId": "block",
        "type": "group",
        "text": "Block",
        "item": [{"linkId": "block.note", "type": "string", "text": "Note"}],
    },
)

VALID = {
    "done": {"valueBoolean": False},
    "hours": {"valueDecimal": 7.5},
    "mood": {"valueInteger": 6},
    "day": {"valueDate": "2026-03-08"},
    "when": {"valueDateTime": "2026-03-08T20:15:00+01:00"},
    "bed": {"valueTime": "22:30:00"},
    "thought": {"valueString": "I always mess up"},
    "journal": {"valueString": "Long text\nover lines"},
    "link": {"valueUri": "https://example.org/breathing"},
    "feel": {"valueCoding": {"system": FEEL, "code": "tense"}},
    "place": {"valueString": "At the bus stop"},
    "drawing": {"valueAttachment": {"contentType": "image/png", "data": "iVBORw0KGgo="}},
    "helper": {"valueReference": {"reference": "RelatedPerson/sister"}},
    "walk": {
        "valueQuantity": {
            "value": 2.5,
            "unit": "km",
            "system": "http://unitsofmeasure.org",
            "code": "km",
        }
    },
}


def full_response() -> dict[str, Any]:
    items = [answered(link_id, value) for link_id, value in VALID.items()]
    items.append({"linkId": "block", "item": [answered("block.note", {"valueString": "ok"})]})
    return response(ALL_TYPES, *items)


def test_every_item_type_valid():
    r = full_response()
    validate(ALL_TYPES)  # the fixtures themselves are valid R4
    validate(r)
    assert check_response(ALL_TYPES, r, final=True) == []
    validate_response(ALL_TYPES, r, final=True)


def test_open_choice_accepts_an_option_coding():
    r = response(ALL_TYPES, answered("place", {"valueCoding": {"system": FEEL, "code": "home"}}))
    assert check_response(ALL_TYPES, r) == []


@pytest.mark.parametrize(
    "link_id, answer, fragments",
    [
        ("done", {"valueString": "yes"}, ["yes or no", "the text 'yes'"]),
        ("done", {"valueBoolean": "true"}, ["is not true or false"]),
        (
            "hours",
            {"valueInteger": 7},
            ["a number (valueDecimal)", "a whole number (valueInteger)"],
        ),
        ("hours", {"valueDecimal": "7.5"}, ["'7.5' is not a number"]),
        (
            "mood",
            {"valueString": "seven"},
            ['"Mood (0-10)": expected a whole number', "the text 'seven'"],
        ),
        ("mood", {"valueInteger": 6.5}, ["6.5 is not a whole number"]),
        ("mood", {"valueInteger": True}, ["True is not a whole number"]),
        ("mood", {"valueInteger": 2**31}, ["too large"]),
        ("mood", {"valueDecimal": 6.0}, ["expected a whole number (valueInteger)"]),
        ("day", {"valueDate": "2026-02-30"}, ["is not a date"]),
        ("day", {"valueDate": "08/03/2026"}, ["is not a date"]),
        ("day", {"valueDateTime": "2026-03-08T10:00:00Z"}, ["expected a date (valueDate)"]),
        ("when", {"valueDateTime": "2026-03-08T20:15:00"}, ["is not a date-time"]),
        ("when", {"valueDate": "2026-03-08"}, ["expected a date and time"]),
        ("bed", {"valueTime": "22:30"}, ["is not a time of day (hh:mm:ss)"]),
        ("bed", {"valueString": "half ten"}, ["expected a time of day", "'half ten'"]),
        ("thought", {"valueInteger": 3}, ["expected text (valueString)"]),
        ("thought", {"valueString": "   "}, ["the answer is empty"]),
        ("journal", {"valueCoding": {"code": "x"}}, ["expected text"]),
        ("link", {"valueUri": "not a link"}, ["not a valid web address"]),
        ("link", {"valueString": "https://example.org"}, ["expected a web address"]),
        ("feel", {"valueString": "tense"}, ["expected one of the listed choices"]),
        (
            "feel",
            {"valueCoding": {"system": FEEL, "code": "angry"}},
            ["'angry' is not one of the options ('Calm', 'Tense')"],
        ),
        (
            "feel",
            {"valueCoding": {"system": "http://other.org", "code": "calm"}},
            ["is not one of the options"],
        ),
        ("place", {"valueInteger": 1}, ["expected one of the listed choices", "or text"]),
        (
            "place",
            {"valueCoding": {"system": FEEL, "code": "office"}},
            ["is not one of the options"],
        ),
        ("drawing", {"valueAttachment": {"data": "iVBORw0KGgo="}}, ["needs a contentType"]),
        ("drawing", {"valueString": "see attached"}, ["expected a file"]),
        ("helper", {"valueReference": {}}, ["a reference needs"]),
        ("walk", {"valueQuantity": {"value": "2.5", "unit": "km"}}, ["needs a numeric value"]),
        ("walk", {"valueDecimal": 2.5}, ["expected a quantity"]),
        ("mood", {"valueWhatever": 1}, ["valueWhatever is not a valid answer type"]),
        ("mood", {"valueInteger": 1, "valueString": "1"}, ["one value"]),
        ("mood", {}, ["has no value"]),
    ],
)
def test_every_item_type_invalid(link_id, answer, fragments):
    r = response(ALL_TYPES, answered(link_id, answer))
    issues = check_response(ALL_TYPES, r)
    assert len(issues) == 1, issues
    assert issues[0].expression == where(link_id)
    for fragment in fragments:
        assert fragment in issues[0].message
    with pytest.raises(InvalidResponse):
        validate_response(ALL_TYPES, r, final=False)


def test_display_and_group_items_take_no_answers():
    r = response(
        ALL_TYPES,
        answered("intro", {"valueString": "ok"}),
        {"linkId": "block", "answer": [{"valueString": "no"}]},
    )
    issues = check_response(ALL_TYPES, r)
    assert expressions(issues) == [where("intro"), where("block")]
    assert "display text" in issues[0].message
    assert "is a group" in issues[1].message


def test_question_children_belong_under_the_answer():
    q = questionnaire(
        {
            "linkId": "panic",
            "type": "boolean",
            "item": [{"linkId": "panic.where", "type": "string"}],
        }
    )
    good = response(
        q,
        answered(
            "panic",
            {"valueBoolean": True, "item": [answered("panic.where", {"valueString": "bus"})]},
        ),
    )
    assert check_response(q, good) == []
    bad = response(
        q,
        {
            "linkId": "panic",
            "answer": [{"valueBoolean": True}],
            "item": [answered("panic.where", {"valueString": "bus"})],
        },
    )
    (issue,) = check_response(q, bad)
    assert "belong inside its answer" in issue.message


# -- required ---------------------------------------------------------------------------------

REQUIRED = questionnaire(
    {"linkId": "mood", "type": "integer", "text": "Mood", "required": True},
    {"linkId": "note", "type": "string", "text": "Note"},
    {
        "linkId": "sleep",
        "type": "group",
        "text": "Sleep",
        "required": True,
        "item": [
            {"linkId": "sleep.hours", "type": "decimal", "text": "Hours", "required": True},
            {"linkId": "sleep.quality", "type": "integer"},
        ],
    },
)


def test_required_is_enforced_on_submit_only():
    draft = response(REQUIRED, answered("note", {"valueString": "tired"}), status="in-progress")
    assert check_response(REQUIRED, draft, final=False) == []
    validate_response(REQUIRED, draft, final=False)
    issues = check_response(REQUIRED, draft, final=True)
    assert expressions(issues) == [where("mood"), where("sleep")]
    assert [i.code for i in issues] == ["required", "required"]
    assert issues[0].message == '"Mood": is required'
    with pytest.raises(InvalidResponse) as info:
        validate_response(REQUIRED, draft, final=True)
    assert info.value.status == 422
    assert len(info.value.issues) == 2


def test_required_inside_a_present_group():
    r = response(
        REQUIRED,
        answered("mood", {"valueInteger": 4}),
        {"linkId": "sleep", "item": [answered("sleep.quality", {"valueInteger": 3})]},
    )
    (issue,) = check_response(REQUIRED, r, final=True)
    assert (
        issue.expression == "QuestionnaireResponse.item[linkId='sleep'].item[linkId='sleep.hours']"
    )
    complete = response(
        REQUIRED,
        answered("mood", {"valueInteger": 4}),
        {"linkId": "sleep", "item": [answered("sleep.hours", {"valueDecimal": 6})]},
    )
    assert check_response(REQUIRED, complete, final=True) == []


def test_required_group_present_but_empty():
    r = response(REQUIRED, answered("mood", {"valueInteger": 4}), {"linkId": "sleep", "item": []})
    issues = check_response(REQUIRED, r, final=True)
    assert where("sleep") in expressions(issues)
    assert any("needs at least one answered item" in i.message for i in issues)


def test_required_but_disabled_is_not_required():
    q = questionnaire(
        {"linkId": "did", "type": "boolean", "required": True},
        {
            "linkId": "why",
            "type": "text",
            "required": True,
            "enableWhen": [{"question": "did", "operator": "=", "answerBoolean": False}],
        },
    )
    assert check_response(q, response(q, answered("did", {"valueBoolean": True})), final=True) == []
    issues = check_response(q, response(q, answered("did", {"valueBoolean": False})), final=True)
    assert expressions(issues) == [where("why")]


# -- repeats ----------------------------------------------------------------------------------

REPEATS = questionnaire(
    {"linkId": "single", "type": "string"},
    {"linkId": "many", "type": "string", "repeats": True},
    {
        "linkId": "episode",
        "type": "group",
        "repeats": True,
        "item": [{"linkId": "episode.what", "type": "string", "required": True}],
    },
    {"linkId": "once", "type": "group", "item": [{"linkId": "once.what", "type": "string"}]},
)


def test_repeats():
    ok = response(
        REPEATS,
        answered("many", {"valueString": "a"}, {"valueString": "b"}, {"valueString": "c"}),
        {"linkId": "episode", "item": [answered("episode.what", {"valueString": "lift"})]},
        {"linkId": "episode", "item": [answered("episode.what", {"valueString": "party"})]},
    )
    assert check_response(REPEATS, ok, final=True) == []
    assert flatten_answers(ok) == {"many": ["a", "b", "c"], "episode.what": ["lift", "party"]}
    bad = response(REPEATS, answered("single", {"valueString": "a"}, {"valueString": "b"}))
    (issue,) = check_response(REPEATS, bad)
    assert issue.expression == where("single")
    assert "allows one answer but has 2" in issue.message


def test_a_question_appears_once_with_all_its_answers():
    r = response(
        REPEATS, answered("many", {"valueString": "a"}), answered("many", {"valueString": "b"})
    )
    (issue,) = check_response(REPEATS, r)
    assert "appears 2 times; give all its answers in one item" in issue.message


def test_non_repeating_group_twice():
    r = response(
        REPEATS,
        {"linkId": "once", "item": [answered("once.what", {"valueString": "x"})]},
        {"linkId": "once", "item": [answered("once.what", {"valueString": "y"})]},
    )
    (issue,) = check_response(REPEATS, r)
    assert issue.expression == where("once")
    assert "does not repeat" in issue.message


def test_repeating_group_instances_are_checked_one_by_one():
    r = response(
        REPEATS,
        {"linkId": "episode", "item": [answered("episode.what", {"valueString": "lift"})]},
        {"linkId": "episode", "item": [answered("episode.what", {"valueInteger": 3})]},
        {"linkId": "episode", "item": []},
    )
    issues = check_response(REPEATS, r, final=True)
    assert expressions(issues) == [
        "QuestionnaireResponse.item[linkId='episode'][1].item[linkId='episode.what']",
        "QuestionnaireResponse.item[linkId='episode'][2].item[linkId='episode.what']",
    ]
    assert [i.code for i in issues] == ["value", "required"]


# -- answerOption and answer value sets ----------------------------------------------------------


def test_answer_option_of_other_types():
    q = questionnaire(
        {
            "linkId": "times",
            "type": "choice",
            "answerOption": [{"valueInteger": 1}, {"valueInteger": 2}],
        },
        {
            "linkId": "word",
            "type": "choice",
            "answerOption": [{"valueString": "low"}, {"valueString": "high"}],
        },
        {"linkId": "day", "type": "choice", "answerOption": [{"valueDate": "2026-03-09"}]},
        {"linkId": "free", "type": "open-choice", "answerOption": [{"valueString": "home"}]},
        {"linkId": "nosys", "type": "choice", "answerOption": [{"valueCoding": {"code": "y"}}]},
    )
    good = response(
        q,
        answered("times", {"valueInteger": 2}),
        answered("word", {"valueString": "high"}),
        answered("day", {"valueDate": "2026-03-09"}),
        answered("free", {"valueString": "park"}),
        answered("nosys", {"valueCoding": {"system": "http://any.org", "code": "y"}}),
    )
    assert check_response(q, good) == []
    bad = response(
        q,
        answered("times", {"valueInteger": 3}),
        answered("word", {"valueString": "mid"}),
        answered("day", {"valueDate": "2026-03-10"}),
        answered("nosys", {"valueCoding": {"code": "n"}}),
    )
    issues = check_response(q, bad)
    assert expressions(issues) == [where("times"), where("word"), where("day"), where("nosys")]
    assert all(i.code == "code-invalid" for i in issues)
    assert "3 is not one of the options (1, 2)" in issues[0].message
    assert "'mid' is not one of the options ('low', 'high')" in issues[1].message


CONTAINED = questionnaire(
    {"linkId": "feel", "type": "choice", "answerValueSet": "#feelings"},
    {"linkId": "level", "type": "choice", "answerValueSet": "#levels"},
    {"linkId": "ext", "type": "choice", "answerValueSet": "http://example.org/ValueSet/external"},
    {"linkId": "gone", "type": "choice", "answerValueSet": "#missing"},
    contained=[
        {
            "resourceType": "ValueSet",
            "id": "feelings",
            "status": "active",
            "compose": {
                "include": [{"system": FEEL, "concept": [{"code": "calm"}, {"code": "tense"}]}]
            },
        },
        {
            "resourceType": "ValueSet",
            "id": "levels",
            "status": "active",
            "expansion": {
                "timestamp": "2026-01-01T00:00:00Z",
                "contains": [
                    {"system": FEEL, "code": "low"},
                    {
                        "abstract": True,
                        "display": "higher",
                        "contains": [{"system": FEEL, "code": "high"}],
                    },
                ],
            },
        },
    ],
)


def test_contained_value_sets():
    validate(CONTAINED)
    ok = response(
        CONTAINED,
        answered("feel", {"valueCoding": {"system": FEEL, "code": "calm"}}),
        answered("level", {"valueCoding": {"system": FEEL, "code": "high"}}),
        answered("ext", {"valueCoding": {"system": FEEL, "code": "anything"}}),
    )
    assert check_response(CONTAINED, ok) == []  # external value sets are not resolved
    bad = response(
        CONTAINED,
        answered("feel", {"valueCoding": {"system": FEEL, "code": "angry"}}),
        answered("level", {"valueCoding": {"system": "http://other.org", "code": "low"}}),
        answered("gone", {"valueCoding": {"system": FEEL, "code": "x"}}),
    )
    issues = check_response(CONTAINED, bad)
    assert expressions(issues) == [where("feel"), where("level"), where("gone")]
    assert "is not in the answer list #feelings" in issues[0].message
    assert "is not in the answer list #levels" in issues[1].message
    assert "#missing is missing" in issues[2].message


def test_external_value_set_when_given():
    external = {
        "resourceType": "ValueSet",
        "url": "http://example.org/ValueSet/external",
        "status": "active",
        "compose": {"include": [{"system": FEEL, "concept": [{"code": "ok"}]}]},
    }
    bad = response(CONTAINED, answered("ext", {"valueCoding": {"system": FEEL, "code": "nope"}}))
    vs = {external["url"]: external}
    assert expressions(check_response(CONTAINED, bad, value_sets=vs)) == [where("ext")]
    good = response(CONTAINED, answered("ext", {"valueCoding": {"system": FEEL, "code": "ok"}}))
    assert check_response(CONTAINED, good, value_sets=vs) == []


# -- limits -------------------------------------------------------------------------------------

LIMITS = questionnaire(
    {
        "linkId": "mood",
        "type": "integer",
        "extension": [ext(MIN_VALUE, valueInteger=0), ext(MAX_VALUE, valueInteger=10)],
    },
    {
        "linkId": "hours",
        "type": "decimal",
        "extension": [
            ext(MIN_VALUE, valueDecimal=0.5),
            ext(MAX_VALUE, valueDecimal=24),
            ext(MAX_DECIMAL_PLACES, valueInteger=1),
        ],
    },
    {"linkId": "day", "type": "date", "extension": [ext(MIN_VALUE, valueDate="2026-01-01")]},
    {
        "linkId": "title",
        "type": "string",
        "maxLength": 10,
        "extension": [ext(MIN_LENGTH, valueInteger=3)],
    },
)


@pytest.mark.parametrize(
    "link_id, value, fragment",
    [
        ("mood", {"valueInteger": -1}, "-1 is below the minimum 0"),
        ("mood", {"valueInteger": 11}, "11 is above the maximum 10"),
        ("hours", {"valueDecimal": 0.4}, "below the minimum 0.5"),
        ("hours", {"valueDecimal": 24.5}, "above the maximum 24"),
        ("hours", {"valueDecimal": 7.25}, "more than 1 decimal places"),
        ("day", {"valueDate": "2025-12-31"}, "below the minimum '2026-01-01'"),
        (
            "title",
            {"valueString": "far too long a title"},
            "20 characters long; at most 10 allowed",
        ),
        ("title", {"valueString": "ab"}, "at least 3 needed"),
    ],
)
def test_limits_rejected(link_id, value, fragment):
    issues = check_response(LIMITS, response(LIMITS, answered(link_id, value)))
    assert [(i.expression, i.code) for i in issues] == [(where(link_id), "value")]
    assert fragment in issues[0].message


@pytest.mark.parametrize(
    "link_id, value",
    [
        ("mood", {"valueInteger": 0}),
        ("mood", {"valueInteger": 10}),
        ("hours", {"valueDecimal": 24}),
        ("hours", {"valueDecimal": 7.5}),
        ("day", {"valueDate": "2026-01-01"}),
        ("day", {"valueDate": "2026-02"}),
        ("title", {"valueString": "exactly10!"}),
        ("title", {"valueString": "abc"}),
    ],
)
def test_limits_accepted_at_the_edges(link_id, value):
    assert check_response(LIMITS, response(LIMITS, answered(link_id, value))) == []


# -- enableWhen -----------------------------------------------------------------------------------


def gated(
    condition: dict[str, Any], question_type: str = "integer", **extra: Any
) -> dict[str, Any]:
    return questionnaire(
        {"linkId": "q", "type": question_type, "repeats": True},
        {
            "linkId": "follow",
            "type": "string",
            "enableWhen": [{"question": "q", **condition}],
            **extra,
        },
    )


@pytest.mark.parametrize(
    "condition, answers, enabled",
    [
        ({"operator": "exists", "answerBoolean": True}, [3], True),
        ({"operator": "exists", "answerBoolean": True}, [], False),
        ({"operator": "exists", "answerBoolean": False}, [], True),
        ({"operator": "exists", "answerBoolean": False}, [3], False),
        ({"operator": "=", "answerInteger": 3}, [3], True),
        ({"operator": "=", "answerInteger": 3}, [1, 3], True),
        ({"operator": "=", "answerInteger": 3}, [4], False),
        ({"operator": "=", "answerInteger": 3}, [], False),
        ({"operator": "=", "answerDecimal": 3.0}, [3], True),
        ({"operator": "!=", "answerInteger": 3}, [4], True),
        ({"operator": "!=", "answerInteger": 3}, [4, 3], False),
        ({"operator": "!=", "answerInteger": 3}, [], True),
        ({"operator": ">", "answerInteger": 3}, [4], True),
        ({"operator": ">", "answerInteger": 3}, [3], False),
        ({"operator": "<", "answerInteger": 3}, [2], True),
        ({"operator": "<", "answerInteger": 3}, [3], False),
        ({"operator": ">=", "answerInteger": 3}, [3], True),
        ({"operator": ">=", "answerInteger": 3}, [2], False),
        ({"operator": "<=", "answerInteger": 3}, [3], True),
        ({"operator": "<=", "answerInteger": 3}, [4], False),
        ({"operator": ">", "answerInteger": 3}, [], False),
    ],
)
def test_enable_when_operators(condition, answers, enabled):
    q = gated(condition)
    items = [answered("q", *({"valueInteger": a} for a in answers))] if answers else []
    r = response(q, *items, answered("follow", {"valueString": "yes"}))
    issues = check_response(q, r)
    assert ("follow" in enabled_items(q, r)) is enabled
    if enabled:
        assert issues == []
    else:
        assert expressions(issues) == [where("follow")]
        assert "not enabled" in issues[0].message
        assert issues[0].code == "business-rule"


@pytest.mark.parametrize(
    "question_type, condition, answer, enabled",
    [
        ("boolean", {"operator": "=", "answerBoolean": True}, {"valueBoolean": True}, True),
        ("boolean", {"operator": "=", "answerBoolean": True}, {"valueBoolean": False}, False),
        (
            "choice",
            {"operator": "=", "answerCoding": {"system": FEEL, "code": "tense"}},
            {"valueCoding": {"system": FEEL, "code": "tense", "display": "Tense"}},
            True,
        ),
        (
            "choice",
            {"operator": "=", "answerCoding": {"system": FEEL, "code": "tense"}},
            {"valueCoding": {"system": "http://other.org", "code": "tense"}},
            False,
        ),
        (
            "choice",
            {"operator": "!=", "answerCoding": {"system": FEEL, "code": "tense"}},
            {"valueCoding": {"system": FEEL, "code": "calm"}},
            True,
        ),
        ("date", {"operator": ">=", "answerDate": "2026-03-01"}, {"valueDate": "2026-03-08"}, True),
        ("date", {"operator": "<", "answerDate": "2026-03-01"}, {"valueDate": "2026-03-08"}, False),
        (
            "dateTime",
            {"operator": ">", "answerDateTime": "2026-03-08T20:00:00+01:00"},
            {"valueDateTime": "2026-03-08T19:30:00Z"},
            True,
        ),
        ("time", {"operator": "<", "answerTime": "06:00:00"}, {"valueTime": "05:30:00"}, True),
        ("string", {"operator": "=", "answerString": "panic"}, {"valueString": "panic"}, True),
        ("decimal", {"operator": ">", "answerDecimal": 7.5}, {"valueDecimal": 7.25}, False),
        (
            "quantity",
            {
                "operator": ">=",
                "answerQuantity": {"value": 5, "system": "http://unitsofmeasure.org", "code": "km"},
            },
            {"valueQuantity": {"value": 6, "system": "http://unitsofmeasure.org", "code": "km"}},
            True,
        ),
        (
            "reference",
            {"operator": "=", "answerReference": {"reference": "Patient/1"}},
            {"valueReference": {"reference": "Patient/1"}},
            True,
        ),
    ],
)
def test_enable_when_value_types(question_type, condition, answer, enabled):
    q = gated(condition, question_type)
    r = response(q, answered("q", answer), answered("follow", {"valueString": "x"}))
    assert (check_response(q, r) == []) is enabled
    assert ("follow" in enabled_items(q, r)) is enabled


BEHAVIOR = [
    {"question": "a", "operator": "=", "answerBoolean": True},
    {"question": "b", "operator": "=", "answerBoolean": True},
]


@pytest.mark.parametrize(
    "behavior, a, b, enabled",
    [
        ("all", True, True, True),
        ("all", True, False, False),
        ("any", True, False, True),
        ("any", False, False, False),
        ("any", False, True, True),
    ],
)
def test_enable_behavior(behavior, a, b, enabled):
    q = questionnaire(
        {"linkId": "a", "type": "boolean"},
        {"linkId": "b", "type": "boolean"},
        {"linkId": "c", "type": "string", "enableWhen": BEHAVIOR, "enableBehavior": behavior},
    )
    r = response(q, answered("a", {"valueBoolean": a}), answered("b", {"valueBoolean": b}))
    assert ("c" in enabled_items(q, r)) is enabled
    r["item"].append(answered("c", {"valueString": "x"}))
    assert (check_response(q, r) == []) is enabled


def test_a_disabled_question_counts_as_unanswered():
    q = questionnaire(
        {"linkId": "a", "type": "boolean"},
        {
            "linkId": "b",
            "type": "boolean",
            "enableWhen": [{"question": "a", "operator": "=", "answerBoolean": True}],
        },
        {
            "linkId": "c",
            "type": "string",
            "enableWhen": [{"question": "b", "operator": "=", "answerBoolean": True}],
        },
    )
    r = response(
        q,
        answered("a", {"valueBoolean": False}),
        answered("b", {"valueBoolean": True}),
        answered("c", {"valueString": "x"}),
    )
    issues = check_response(q, r)
    assert expressions(issues) == [where("b"), where("c")]
    assert enabled_items(q, r) == {"a"}


def test_answers_inside_a_disabled_group_are_reported_once():
    q = questionnaire(
        {"linkId": "panic", "type": "boolean"},
        {
            "linkId": "details",
            "type": "group",
            "enableWhen": [{"question": "panic", "operator": "=", "answerBoolean": True}],
            "item": [
                {"linkId": "details.where", "type": "string"},
                {"linkId": "details.peak", "type": "integer"},
            ],
        },
    )
    r = response(
        q,
        answered("panic", {"valueBoolean": False}),
        {
            "linkId": "details",
            "item": [
                answered("details.where", {"valueString": "bus"}),
                answered("details.peak", {"valueInteger": 8}),
            ],
        },
    )
    assert expressions(check_response(q, r)) == [where("details")]


EPISODES = questionnaire(
    {
        "linkId": "episode",
        "type": "group",
        "repeats": True,
        "item": [
            {"linkId": "panic", "type": "boolean"},
            {
                "linkId": "peak",
                "type": "integer",
                "required": True,
                "enableWhen": [{"question": "panic", "operator": "=", "answerBoolean": True}],
            },
        ],
    },
    {
        "linkId": "summary",
        "type": "string",
        "enableWhen": [{"question": "panic", "operator": "=", "answerBoolean": True}],
    },
)


def episode(panic: bool, peak: int | None = None) -> dict[str, Any]:
    items = [answered("panic", {"valueBoolean": panic})]
    if peak is not None:
        items.append(answered("peak", {"valueInteger": peak}))
    return {"linkId": "episode", "item": items}


def test_enable_when_in_repeating_groups_uses_the_nearest_instance():
    ok = response(EPISODES, episode(True, 7), episode(False))
    assert check_response(EPISODES, ok, final=True) == []
    # instance 1 says no panic, yet gives a peak; instance 0 says panic and lacks one
    bad = response(EPISODES, episode(True), episode(False, 5))
    issues = check_response(EPISODES, bad, final=True)
    assert expressions(issues) == [
        "QuestionnaireResponse.item[linkId='episode'][0].item[linkId='peak']",
        "QuestionnaireResponse.item[linkId='episode'][1].item[linkId='peak']",
    ]
    assert [i.code for i in issues] == ["required", "business-rule"]


def test_enable_when_outside_the_repeating_group_sees_every_instance():
    some = response(
        EPISODES, episode(False), episode(True, 3), answered("summary", {"valueString": "x"})
    )
    assert check_response(EPISODES, some) == []
    none = response(
        EPISODES, episode(False), episode(False), answered("summary", {"valueString": "x"})
    )
    assert expressions(check_response(EPISODES, none)) == [where("summary")]


def test_enable_when_on_the_parent_question_of_nested_items():
    q = questionnaire(
        {
            "linkId": "slept",
            "type": "boolean",
            "item": [
                {
                    "linkId": "slept.hours",
                    "type": "decimal",
                    "required": True,
                    "enableWhen": [{"question": "slept", "operator": "=", "answerBoolean": True}],
                }
            ],
        }
    )
    yes = response(
        q,
        answered(
            "slept",
            {"valueBoolean": True, "item": [answered("slept.hours", {"valueDecimal": 6.5})]},
        ),
    )
    assert check_response(q, yes, final=True) == []
    assert enabled_items(q, yes) == {"slept", "slept.hours"}
    no = response(
        q,
        answered(
            "slept",
            {"valueBoolean": False, "item": [answered("slept.hours", {"valueDecimal": 6.5})]},
        ),
    )
    (issue,) = check_response(q, no, final=True)
    assert (
        issue.expression
        == "QuestionnaireResponse.item[linkId='slept'].answer[0].item[linkId='slept.hours']"
    )
    missing = response(q, answered("slept", {"valueBoolean": True}))
    (issue,) = check_response(q, missing, final=True)
    assert issue.code == "required"


def test_enable_when_cycle_disables_the_items():
    q = questionnaire(
        {
            "linkId": "a",
            "type": "string",
            "enableWhen": [{"question": "b", "operator": "exists", "answerBoolean": True}],
        },
        {
            "linkId": "b",
            "type": "string",
            "enableWhen": [{"question": "a", "operator": "exists", "answerBoolean": True}],
        },
        {"linkId": "c", "type": "string"},
    )
    r = response(q, answered("c", {"valueString": "x"}))
    assert "c" in enabled_items(q, r)
    assert check_response(q, r) == []


def test_enabled_items_for_a_group_not_yet_answered():
    q = questionnaire(
        {"linkId": "panic", "type": "boolean"},
        {
            "linkId": "details",
            "type": "group",
            "enableWhen": [{"question": "panic", "operator": "=", "answerBoolean": True}],
            "item": [
                {"linkId": "details.where", "type": "string"},
                {
                    "linkId": "details.peak",
                    "type": "integer",
                    "enableWhen": [
                        {"question": "panic", "operator": "exists", "answerBoolean": True}
                    ],
                },
            ],
        },
    )
    assert enabled_items(q, response(q)) == {"panic"}
    assert enabled_items(q, response(q, answered("panic", {"valueBoolean": True}))) == {
        "panic",
        "details",
        "details.where",
        "details.peak",
    }


# -- read-only items ------------------------------------------------------------------------------


def test_read_only_items():
    q = questionnaire(
        {"linkId": "plain", "type": "integer", "readOnly": True},
        {
            "linkId": "score",
            "type": "integer",
            "readOnly": True,
            "extension": [
                ext(
                    CALCULATED_EXPRESSION,
                    valueExpression={"language": "text/fhirpath", "expression": "1 + 1"},
                )
            ],
        },
        {
            "linkId": "fixed",
            "type": "string",
            "readOnly": True,
            "initial": [{"valueString": "Week 1"}],
        },
    )
    ok = response(
        q, answered("score", {"valueInteger": 2}), answered("fixed", {"valueString": "Week 1"})
    )
    assert check_response(q, ok) == []
    bad = response(
        q, answered("plain", {"valueInteger": 1}), answered("fixed", {"valueString": "Week 9"})
    )
    issues = check_response(q, bad)
    assert expressions(issues) == [where("plain"), where("fixed")]
    assert all("read-only" in i.message for i in issues)


# -- canonical, unknown items, everything together -------------------------------------------------


@pytest.mark.parametrize(
    "named, fragment",
    [
        (f"{URL}|2.0.0", "answers version 2.0.0 of"),
        (URL, "must name the exact questionnaire version"),
        ("http://elsewhere.org/Questionnaire/other|1.0.0", "not " + URL + "|1.0.0"),
        (None, "does not say which questionnaire"),
    ],
)
def test_wrong_questionnaire_version(named, fragment):
    r = full_response()
    r["questionnaire"] = named
    issues = check_response(ALL_TYPES, r)
    assert expressions(issues) == ["QuestionnaireResponse.questionnaire"]
    assert fragment in issues[0].message


def test_unversioned_questionnaire_is_named_by_url():
    q = questionnaire({"linkId": "a", "type": "string"}, version=None)
    assert canonical_of(q) == URL
    assert check_response(q, response(q, answered("a", {"valueString": "x"}))) == []
    wrong = response(q)
    wrong["questionnaire"] = URL + "|1.0.0"
    assert "has no version" in check_response(q, wrong)[0].message


def test_unknown_and_misplaced_link_ids():
    r = response(
        REQUIRED,
        answered("mood", {"valueInteger": 3}),
        answered("nonsense", {"valueString": "x"}),
        answered("sleep.hours", {"valueDecimal": 7}),
        {"linkId": "sleep", "item": [answered("mood", {"valueInteger": 3})]},
    )
    issues = check_response(REQUIRED, r)
    assert expressions(issues) == [
        where("nonsense"),
        where("sleep.hours"),
        "QuestionnaireResponse.item[linkId='sleep'].item[linkId='mood']",
    ]
    assert "Unknown item 'nonsense'" in issues[0].message
    assert URL + "|1.0.0" in issues[0].message
    assert "inside 'sleep'" in issues[1].message
    assert "at the top level" in issues[2].message
    assert all(i.code == "structure" for i in issues)


def test_many_problems_are_reported_together():
    r = response(
        REQUIRED,
        answered("note", {"valueString": "a"}, {"valueString": "b"}),
        answered("bogus", {"valueString": "x"}),
        {"linkId": "sleep", "item": [answered("sleep.hours", {"valueString": "eight"})]},
    )
    r["questionnaire"] = URL + "|0.9.0"
    with pytest.raises(InvalidResponse) as info:
        validate_response(REQUIRED, r, final=True)
    error = info.value
    assert error.status == 422
    assert set(expressions(error.issues)) == {
        "QuestionnaireResponse.questionnaire",
        where("note"),
        where("bogus"),
        where("mood"),
        "QuestionnaireResponse.item[linkId='sleep'].item[linkId='sleep.hours']",
    }
    assert len(error.issues) == 5
    assert "5 problems" in error.message
    outcome = error.outcome
    assert outcome["resourceType"] == "OperationOutcome"
    assert len(outcome["issue"]) == 5
    assert error.resource is r


def test_garbage_does_not_crash():
    q = questionnaire({"linkId": "a", "type": "string"})
    for items in (
        "nope",
        [1, {"answer": "x"}, {"linkId": "a", "answer": "x"}, {"linkId": "a", "answer": [3]}],
    ):
        r = {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": canonical_of(q),
            "item": items,
        }
        assert check_response(q, r)


def test_not_an_object():
    (issue,) = check_response(ALL_TYPES, ["not", "a", "response"])  # type: ignore[arg-type]
    assert "JSON objects" in issue.message


def test_response_is_not_modified():
    r = full_response()
    before = copy.deepcopy(r)
    check_response(ALL_TYPES, r, final=True)
    enabled_items(ALL_TYPES, r)
    assert r == before


def test_flatten_answers_walks_groups_and_nested_answers():
    q = questionnaire(
        {"linkId": "slept", "type": "boolean", "item": [{"linkId": "hours", "type": "decimal"}]}
    )
    r = response(
        q,
        answered("slept", {"valueBoolean": True, "item": [answered("hours", {"valueDecimal": 6})]}),
    )
    assert flatten_answers(r) == {"slept": [True], "hours": [6]}
    assert flatten_answers({"resourceType": "QuestionnaireResponse"}) == {}


def test_check_questionnaire():
    q = questionnaire(
        {"linkId": "a", "type": "string"},
        {"linkId": "a", "type": "string"},
        {
            "linkId": "b",
            "type": "choice",
            "answerValueSet": "#nowhere",
            "enableWhen": [
                {"question": "zz", "operator": "~", "answerString": "x"},
                {"question": "a", "operator": "exists", "answerString": "x"},
            ],
        },
    )
    messages = " | ".join(i.message for i in check_questionnaire(q))
    for fragment in (
        "'a' is used more than once",
        "enableBehavior",
        "unknown linkId 'zz'",
        "operator '~'",
        "needs answerBoolean",
        "#nowhere",
    ):
        assert fragment in messages
    assert check_questionnaire(ALL_TYPES) == []
    assert check_questionnaire(EPISODES) == []
