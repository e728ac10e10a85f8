"""The generic SDC scorer, Observations derived from scores, and measurement-based care."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

import hw_fhir
from hw_fhir.errors import InvalidInput
from hw_fhir.models import validate
from hw_fhir.scoring import (
    OBSERVATION_SYSTEM,
    Point,
    Score,
    ScoreResult,
    Thresholds,
    calculate,
    check_expressions,
    observation_id,
    observations_for,
    progress,
    score_response,
)

CATALOG = Path(hw_fhir.__file__).parent / "catalog" / "questionnaires"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "responses"
WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
CALC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
VENDOR = "http://vendor.example/CodeSystem/sleep-worry"


def load_q(qid: str) -> dict[str, Any]:
    return json.loads((CATALOG / f"{qid}.json").read_text(encoding="utf-8"))


def load_r(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def fhirpath(expression: str, name: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"language": "text/fhirpath", "expression": expression}
    if name:
        value["name"] = name
    return value


def calc(expression: str) -> dict[str, Any]:
    return {"url": CALC, "valueExpression": fhirpath(expression)}


def var(name: str, expression: str) -> dict[str, Any]:
    return {"url": VARIABLE, "valueExpression": fhirpath(expression, name)}


def option(code: str, weight: float | None = None, *, on_coding: bool = False) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": VENDOR, "code": code, "display": code.title()}
    if weight is not None and on_coding:
        coding["extension"] = [{"url": ORDINAL, "valueDecimal": weight}]
    opt: dict[str, Any] = {"valueCoding": coding}
    if weight is not None and not on_coding:
        opt["extension"] = [{"url": WEIGHT, "valueDecimal": weight}]
    return opt


def vendor_questionnaire() -> dict[str, Any]:
    """A made-up vendor instrument: weights and expressions only, no scorer plugin knows it.

    * ``mean`` comes first but depends on ``total``, computed last (needs a second pass);
    * group ``part-a`` sums its own answers with ``answers()`` in an item variable;
    * ``a1`` weighs on answerOption (itemWeight), ``a2`` on the Coding (older ordinalValue),
      ``b1`` has a decimal weight.
    """
    return {
        "resourceType": "Questionnaire",
        "id": "sleep-worry",
        "url": "http://vendor.example/Questionnaire/sleep-worry",
        "version": "2.1",
        "name": "SleepWorryIndex",
        "title": "Sleep Worry Index",
        "status": "active",
        "extension": [var("w", "%resource.repeat(item).where(linkId in ('a1' | 'a2' | 'b1')).answer.weight()")],
        "item": [
            {"linkId": "mean", "text": "Mean item score", "type": "decimal", "readOnly": True,
             "extension": [calc("%resource.repeat(item).where(linkId = 'total').answer.value / 3")]},
            {"linkId": "part-a", "text": "Part A", "type": "group",
             "extension": [var("partA", "%context.answers().weight().sum()")],
             "item": [
                 {"linkId": "a1", "text": "Worry at bedtime", "type": "choice",
                  "answerOption": [option("never", 0), option("sometimes", 2), option("always", 5)]},
                 {"linkId": "a2", "text": "Checking the clock", "type": "choice",
                  "answerOption": [option("no", 0, on_coding=True), option("some", 1, on_coding=True),
                                   option("lots", 3, on_coding=True)]},
                 {"linkId": "part-a-score", "text": "Part A score", "type": "integer", "readOnly": True,
                  "code": [{"system": VENDOR, "code": "part-a"}], "extension": [calc("%partA")]},
             ]},
            {"linkId": "b1", "text": "Tired on waking", "type": "choice",
             "answerOption": [option("no", 0), option("a-bit", 1.5), option("very", 3)]},
            {"linkId": "total", "text": "Sleep Worry total", "type": "decimal", "readOnly": True,
             "code": [{"system": VENDOR, "code": "total"}], "extension": [calc("%w.sum()")]},
        ],
    }


def vendor_response(a1: str = "always", a2: str = "lots", b1: str = "a-bit") -> dict[str, Any]:
    def answer(link_id: str, code: str) -> dict[str, Any]:
        return {"linkId": link_id, "answer": [{"valueCoding": {"system": VENDOR, "code": code}}]}

    return {
        "resourceType": "QuestionnaireResponse",
        "id": "sw-1",
        "questionnaire": "http://vendor.example/Questionnaire/sleep-worry|2.1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "authored": "2026-10-05T07:00:00+02:00",
        "item": [
            {"linkId": "part-a", "item": [answer("a1", a1), answer("a2", a2)]},
            answer("b1", b1),
        ],
    }


def answer_of(node: Any, link_id: str) -> list[dict[str, Any]]:
    for item in node.get("item", []):
        if item["linkId"] == link_id:
            return item.get("answer", [])
        for sub in [item, *item.get("answer", [])]:
            found = answer_of(sub, link_id) if sub is not item or "item" in item else []
            if found:
                return found
    return []


# --- the generic SDC path ------------------------------------------------------------------


def test_vendor_instrument_scores_from_weights_and_expressions_alone() -> None:
    q, r = vendor_questionnaire(), vendor_response()
    before = copy.deepcopy(r)
    result = score_response(q, r)
    assert r == before, "the input response is never changed"
    # a1 always = 5 (itemWeight), a2 lots = 3 (ordinalValue on the Coding), b1 a-bit = 1.5
    assert result.instrument is None and result.interpretation is None
    assert result.value == 9.5
    assert result.total.key == "total" and result.total.code.code == "total"
    assert result.score("part-a-score").value == 8
    assert result.score("part-a").value == 8, "found by code as well as by linkId"
    assert result.score("mean").value == pytest.approx(9.5 / 3)
    assert result.questionnaire == "http://vendor.example/Questionnaire/sleep-worry|2.1"
    calculated = result.response
    assert [i["linkId"] for i in calculated["item"]] == ["mean", "part-a", "b1", "total"]
    assert [i["linkId"] for i in calculated["item"][1]["item"]] == ["a1", "a2", "part-a-score"]
    assert answer_of(calculated, "part-a-score") == [{"valueInteger": 8}]
    assert answer_of(calculated, "total") == [{"valueDecimal": 9.5}]
    validate(dict(calculated), resource_type="QuestionnaireResponse")


def test_vendor_instrument_recalculates_after_an_amendment() -> None:
    q = vendor_questionnaire()
    first = calculate(q, vendor_response())
    amended = copy.deepcopy(first)
    amended["status"] = "amended"
    amended["item"][1]["item"][0]["answer"][0]["valueCoding"]["code"] = "never"
    again = calculate(q, amended)
    assert answer_of(again, "part-a-score") == [{"valueInteger": 3}]
    assert answer_of(again, "total") == [{"valueDecimal": 4.5}]
    assert answer_of(again, "mean") == [{"valueDecimal": 1.5}]


def test_unanswered_items_leave_no_empty_calculated_items() -> None:
    q = vendor_questionnaire()
    r = vendor_response()
    r["item"] = []
    calculated = calculate(q, r)
    # sum() of nothing is 0, so every score is 0, and group part-a is created to hold its score
    assert [i["linkId"] for i in calculated["item"]] == ["mean", "part-a", "total"]
    assert answer_of(calculated, "part-a-score") == [{"valueInteger": 0}]
    assert answer_of(calculated, "total") == [{"valueDecimal": 0}]
    # a calculated item whose expression now gives nothing loses its stale answer and goes
    phq9 = load_q("phq-9")
    stale = load_r("phq-9-two-missing")
    stale["item"].append({"linkId": "phq9-total", "answer": [{"valueInteger": 12}]})
    assert "phq9-total" not in [i["linkId"] for i in calculate(phq9, stale)["item"]]


def test_reverse_scored_items_weigh_each_answer_by_its_own_item() -> None:
    forward = [option("never", 0), option("often", 2)]
    reverse = [option("never", 2), option("often", 0)]
    q = {
        "resourceType": "Questionnaire", "url": "http://vendor.example/Questionnaire/rev", "status": "active",
        "extension": [var("values", "%resource.item.where(linkId in ('f' | 'r')).answer.value")],
        "item": [
            {"linkId": "f", "type": "choice", "answerOption": forward},
            {"linkId": "r", "type": "choice", "answerOption": reverse},
            {"linkId": "direct", "type": "integer",
             "extension": [calc("%resource.item.where(linkId in ('f' | 'r')).answer.value.weight().sum()")]},
            {"linkId": "via-variable", "type": "integer", "extension": [calc("%values.weight().sum()")]},
            {"linkId": "answers", "type": "integer", "extension": [calc("%resource.answers().weight().sum()")]},
        ],
    }
    r = {"resourceType": "QuestionnaireResponse", "status": "completed", "item": [
        {"linkId": "f", "answer": [{"valueCoding": {"system": VENDOR, "code": "often"}}]},
        {"linkId": "r", "answer": [{"valueCoding": {"system": VENDOR, "code": "never"}}]},
    ]}
    calculated = calculate(q, r)
    for link_id in ("direct", "via-variable", "answers"):
        assert answer_of(calculated, link_id) == [{"valueInteger": 4}], link_id
    q["item"][2]["extension"] = [calc("'often'.weight()")]
    with pytest.raises(InvalidInput, match="different weights in different items"):
        calculate(q, r)


def test_questionnaire_qitem_and_context_variables() -> None:
    q = vendor_questionnaire()
    q["item"][1]["item"].append({
        "linkId": "part-a-max", "text": "Highest possible", "type": "integer",
        "extension": [calc("%questionnaire.repeat(item).where(linkId in ('a1' | 'a2')).answerOption.weight().sum()")],
    })
    q["item"][1]["item"].append({
        "linkId": "part-a-label", "text": "Label", "type": "string",
        "extension": [calc("%qitem.text & ' of ' & %context.linkId & ': ' & %partA.toString()")],
    })
    calculated = calculate(q, vendor_response())
    assert answer_of(calculated, "part-a-max") == [{"valueInteger": 11}]  # 0+2+5 + 0+1+3
    assert answer_of(calculated, "part-a-label") == [{"valueString": "Label of part-a-label: 8"}]


def test_weight_from_a_contained_value_set() -> None:
    q = {
        "resourceType": "Questionnaire", "url": "http://vendor.example/Questionnaire/vs", "status": "active",
        "contained": [{
            "resourceType": "ValueSet", "id": "freq", "status": "active",
            "compose": {"include": [{"system": VENDOR, "concept": [
                {"code": "rarely", "extension": [{"url": ORDINAL, "valueDecimal": 1}]},
                {"code": "often", "extension": [{"url": ORDINAL, "valueDecimal": 4}]},
            ]}]},
        }],
        "item": [
            {"linkId": "q", "type": "choice", "answerValueSet": "#freq"},
            {"linkId": "score", "type": "integer", "extension": [calc("%resource.item.answer.value.weight()")]},
        ],
    }
    r = {"resourceType": "QuestionnaireResponse", "status": "completed",
         "item": [{"linkId": "q", "answer": [{"valueCoding": {"system": VENDOR, "code": "often"}}]}]}
    assert answer_of(calculate(q, r), "score") == [{"valueInteger": 4}]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("%w.sum(", "syntax error"),
        ("%w.total()", "unknown function total()"),
        ("%nowhere + 1", "nowhere"),
        ("'three' + 1", "Cannot"),
    ],
)
def test_a_failing_expression_names_the_item_and_the_expression(expression: str, reason: str) -> None:
    q = vendor_questionnaire()
    q["item"][-1]["extension"] = [calc(expression)]
    with pytest.raises(InvalidInput) as caught:
        calculate(q, vendor_response())
    message = str(caught.value)
    assert "'total'" in message and expression in message and reason in message
    (issue,) = caught.value.issues
    assert issue.expression == "Questionnaire.item.where(linkId='total')"
    assert caught.value.status == 400


def test_a_failing_variable_names_the_variable() -> None:
    q = vendor_questionnaire()
    q["extension"] = [var("w", "%resource.item.answer.value.nope()")]
    with pytest.raises(InvalidInput, match=r"variable %w on the Questionnaire root.*nope\(\)"):
        calculate(q, vendor_response())


def test_check_expressions_reports_syntax_without_evaluating() -> None:
    q = vendor_questionnaire()
    assert check_expressions(q) == []
    q["item"][0]["extension"] = [calc("(1 + ")]
    q["item"][1]["extension"] = [{"url": VARIABLE, "valueExpression": {"language": "text/fhirpath",
                                                                       "expression": "1"}}]
    q["item"][3]["extension"] = [{"url": CALC, "valueExpression": {"language": "text/cql",
                                                                   "expression": "Sum(x)"}}]
    issues = check_expressions(q)
    assert [i.expression for i in issues] == [
        "Questionnaire.item.where(linkId='mean')",
        "Questionnaire.item.where(linkId='part-a')",
        "Questionnaire.item.where(linkId='total')",
    ]
    assert "syntax error" in issues[0].message
    assert "has no name" in issues[1].message
    assert issues[2].code == "not-supported"


def test_a_value_the_item_cannot_hold_is_an_error() -> None:
    q = vendor_questionnaire()
    q["item"][1]["item"][2]["extension"] = [calc("'eight'")]
    with pytest.raises(InvalidInput, match=r"item 'part-a-score'.*'eight'.*integer item cannot hold"):
        calculate(q, vendor_response())
    q = vendor_questionnaire()
    q["item"][1]["item"][2]["extension"] = [calc("%partA / 3")]
    with pytest.raises(InvalidInput, match=r"item 'part-a-score'.*is an integer"):
        calculate(q, vendor_response())
    q = vendor_questionnaire()
    q["item"][1]["item"][2]["extension"] = [calc("1 | 2")]
    with pytest.raises(InvalidInput, match="returned 2 values but the item does not repeat"):
        calculate(q, vendor_response())


def test_expressions_that_never_settle_are_an_error() -> None:
    q = {
        "resourceType": "Questionnaire", "url": "http://vendor.example/Questionnaire/loop", "status": "active",
        "item": [
            {"linkId": "x", "type": "integer", "extension": [calc(
                "iif(%resource.item.where(linkId = 'y').answer.exists(), "
                "%resource.item.where(linkId = 'y').answer.value + 1, 0)")]},
            {"linkId": "y", "type": "integer",
             "extension": [calc("%resource.item.where(linkId = 'x').answer.value + 1")]},
        ],
    }
    r = {"resourceType": "QuestionnaireResponse", "status": "completed"}
    with pytest.raises(InvalidInput, match="do not settle"):
        calculate(q, r)


def test_generic_path_alone_and_custom_scorers() -> None:
    q, r = load_q("phq-9"), load_r("phq-9-moderate-item9")
    generic = score_response(q, r, scorers=[])
    assert generic.instrument is None and generic.interpretation is None and generic.risks == ()
    assert generic.value == 14 and generic.total.key == "phq9-total"

    def vendor(questionnaire: dict[str, Any], response: dict[str, Any]) -> ScoreResult | None:
        if questionnaire.get("id") != "phq-9":
            return None
        extra = Score(key="vendor-index", value=42, label="Vendor index")
        return ScoreResult(questionnaire="x", instrument="vendor", total=extra, scores=(extra,))

    result = score_response(q, r, scorers=[vendor])
    assert result.instrument == "vendor" and result.value == 42
    assert [s.key for s in result.scores] == ["vendor-index", "phq9-total"], "SDC scores are kept"
    assert result.response["item"][-2]["linkId"] == "phq9-total"


def test_score_result_is_frozen() -> None:
    result = score_response(load_q("gad-7"), load_r("gad-7-mild"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.total = None  # type: ignore[misc]


# --- Observations --------------------------------------------------------------------------

SURVEY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                      "code": "survey", "display": "Survey"}]}


def test_phq9_observations_field_by_field() -> None:
    q, r = load_q("phq-9"), load_r("phq-9-moderate-item9")
    result = score_response(q, r)
    observations = observations_for(q, r, result)
    for obs in observations:
        validate(obs, resource_type="Observation")
    panel, total, *items = observations
    assert len(items) == 10, "nine PHQ-9 questions and the difficulty question"

    assert panel["resourceType"] == "Observation"
    assert panel["id"] == observation_id("phq-9-moderate-item9", "44249-1")
    assert panel["identifier"] == [{"system": OBSERVATION_SYSTEM, "value": "phq-9-moderate-item9/44249-1"}]
    assert panel["status"] == "final"
    assert panel["category"] == [SURVEY]
    assert panel["code"]["coding"] == q["code"]
    assert panel["subject"] == {"reference": "Patient/example-patient"}
    assert panel["effectiveDateTime"] == "2026-10-01T09:30:00Z"
    assert panel["performer"] == [{"reference": "Patient/example-patient"}]
    assert panel["derivedFrom"] == [{"reference": "QuestionnaireResponse/phq-9-moderate-item9"}]
    assert panel["hasMember"] == [{"reference": f"Observation/{o['id']}"} for o in [total, *items]]
    assert "valueQuantity" not in panel
    assert any(n["text"].startswith("Thoughts of self-harm: PHQ-9 item 9") for n in panel["note"])

    assert total["code"]["coding"] == [{
        "system": "http://loinc.org",
        "code": "44261-6",
        "display": "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
    }]
    assert total["valueQuantity"] == {"value": 14, "unit": "{score}",
                                      "system": "http://unitsofmeasure.org", "code": "{score}"}
    assert total["interpretation"] == [{
        "coding": [{"system": "http://hw-fhir.org/fhir/CodeSystem/score-interpretation",
                    "code": "moderate", "display": "Moderate"}],
        "text": "Moderate",
    }]
    for key in ("status", "category", "subject", "effectiveDateTime", "derivedFrom"):
        assert total[key] == panel[key]
    assert total["identifier"] == [{"system": OBSERVATION_SYSTEM, "value": "phq-9-moderate-item9/44261-6"}]

    first = items[0]
    assert first["code"]["coding"][0]["code"] == "44250-9"
    assert first["valueCodeableConcept"] == {
        "coding": [{"system": "http://loinc.org", "code": "LA6569-3", "display": "Several days"}],
        "text": "Several days",
    }
    assert [o["code"]["coding"][0]["code"] for o in items][-2:] == ["44260-8", "69722-7"]
    assert len({o["id"] for o in observations}) == len(observations)


def test_rescoring_an_amended_response_updates_the_same_observations() -> None:
    q, r = load_q("phq-9"), load_r("phq-9-moderate-item9")
    first = observations_for(q, r, score_response(q, r))
    amended = copy.deepcopy(r)
    amended["status"] = "amended"
    item9 = next(i for i in amended["item"] if i["linkId"] == "phq9-9")
    item9["answer"] = [{"valueCoding": {"system": "http://loinc.org", "code": "LA6568-5", "display": "Not at all"}}]
    second = observations_for(q, amended, score_response(q, amended))
    assert [o["id"] for o in second] == [o["id"] for o in first]
    assert [o["identifier"] for o in second] == [o["identifier"] for o in first]
    assert second[1]["valueQuantity"]["value"] == 13
    assert "note" not in second[0], "no risk once item 9 is 'Not at all'"


def test_observation_status_follows_the_response() -> None:
    q = load_q("gad-7")
    r = load_r("gad-7-mild")
    r["status"] = "in-progress"
    observations = observations_for(q, r, score_response(q, r))
    assert {o["status"] for o in observations} == {"preliminary"}


def test_prorated_and_unscored_results_carry_notes() -> None:
    q = load_q("phq-9")
    r = load_r("phq-9-two-missing")
    panel, total, *_ = observations_for(q, r, score_response(q, r))
    assert total["valueQuantity"]["value"] == 15
    assert any(n["text"].startswith("Prorated: 7 of 9") for n in total["note"])
    r["item"] = r["item"][:3]
    observations = observations_for(q, r, score_response(q, r))
    assert all("valueQuantity" not in o for o in observations)
    assert any(n["text"].startswith("Not scored: 6 of 9") for n in observations[0]["note"])


def test_uncoded_scores_use_the_questionnaire_url_as_code_system() -> None:
    q, r = load_q("pcl-5"), load_r("pcl-5-probable")
    observations = observations_for(q, r, score_response(q, r))
    for obs in observations:
        validate(obs, resource_type="Observation")
    panel, total, *clusters = observations
    assert panel["code"] == {"coding": [{"system": q["url"], "code": "panel"}], "text": q["title"]}
    assert total["code"]["coding"] == [{"system": q["url"], "code": "pcl5-total"}]
    assert total["valueQuantity"]["value"] == 41
    assert total["interpretation"][0]["coding"][0]["code"] == "probable-ptsd"
    assert [c["code"]["coding"][0]["code"] for c in clusters] == [
        "pcl5-cluster-b", "pcl5-cluster-c", "pcl5-cluster-d", "pcl5-cluster-e"]
    assert len(panel["hasMember"]) == 5, "PCL-5 questions have no codes, so no item Observations"


def test_vendor_observations() -> None:
    q, r = vendor_questionnaire(), vendor_response()
    observations = observations_for(q, r, score_response(q, r))
    for obs in observations:
        validate(obs, resource_type="Observation")
    by_code = {o["code"]["coding"][0]["code"]: o for o in observations}
    assert set(by_code) == {"panel", "part-a", "total", "mean"}
    assert by_code["total"]["valueQuantity"]["value"] == 9.5
    assert by_code["mean"]["code"]["coding"][0]["system"] == q["url"]


def test_observations_need_the_response_id() -> None:
    q, r = load_q("gad-7"), load_r("gad-7-mild")
    result = score_response(q, r)
    del r["id"]
    with pytest.raises(InvalidInput, match="no id"):
        observations_for(q, r, result)


# --- measurement-based care ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "latest", "labels"),
    [
        (20, 10, ("response", "reliable-improvement")),        # exactly 50 %, change -10
        (20, 11, ("reliable-improvement",)),                    # 45 %: no response
        (12, 6, ("response", "reliable-improvement")),          # change exactly -6
        (12, 7, ("no-reliable-change",)),                       # change -5
        (8, 4, ("response", "remission", "no-reliable-change")),  # < 5 is remission
        (8, 5, ("no-reliable-change",)),                        # 5 is not remission
        (8, 14, ("deterioration",)),                            # +6
        (8, 13, ("no-reliable-change",)),                       # +5
        (0, 0, ("remission", "no-reliable-change")),            # no response from a zero baseline
    ],
)
def test_phq9_progress_labels_at_their_edges(baseline: int, latest: int, labels: tuple[str, ...]) -> None:
    result = progress("phq-9", [(date(2026, 9, 1), baseline), (date(2026, 9, 15), 9), (date(2026, 10, 1), latest)])
    assert result is not None
    assert result.labels == labels
    assert result.change == latest - baseline
    assert result.count == 3


@pytest.mark.parametrize(
    ("baseline", "latest", "labels"),
    [
        (10, 6, ("reliable-improvement",)),           # -4, 40 %
        (10, 7, ("no-reliable-change",)),             # -3
        (10, 5, ("response", "reliable-improvement")),
        (8, 4, ("response", "remission", "reliable-improvement")),
        (5, 9, ("deterioration",)),                   # +4
        (5, 8, ("no-reliable-change",)),              # +3
    ],
)
def test_gad7_progress_labels_at_their_edges(baseline: int, latest: int, labels: tuple[str, ...]) -> None:
    result = progress("gad-7", [(date(2026, 9, 1), baseline), (date(2026, 10, 1), latest)])
    assert result is not None and result.labels == labels


def test_progress_orders_points_and_reads_iso_strings() -> None:
    series = [("2026-10-01T09:00:00Z", 6), ("2026-09-01", 18), (datetime(2026, 9, 15, 9), 12)]
    result = progress("phq-9", series)
    assert result is not None
    assert (result.baseline.value, result.latest.value) == (18, 6)
    assert result.percent_change == pytest.approx(-200 / 3)
    assert result.response and result.reliable_improvement and not result.remission
    assert not result.deterioration


def test_progress_edge_cases() -> None:
    assert progress("phq-9", []) is None
    single = progress("phq-9", [Point(date(2026, 9, 1), 3)])
    assert single is not None and single.labels == () and single.change == 0
    with pytest.raises(InvalidInput, match="No measurement-based-care thresholds"):
        progress("vendor-index", [(date(2026, 9, 1), 3)])
    custom = progress("vendor-index", [("2026-09-01", 30), ("2026-10-01", 20)], Thresholds(reliable_change=8))
    assert custom is not None and custom.labels == ("reliable-improvement",)
    with pytest.raises(InvalidInput, match="not an ISO date"):
        progress("phq-9", [("last tuesday", 3)])


def test_progress_from_scored_responses() -> None:
    q = load_q("phq-9")
    first = score_response(q, load_r("phq-9-moderate-item9"))
    later = load_r("phq-9-moderate-item9")
    later["authored"] = "2026-11-01T09:30:00Z"
    for item in later["item"][:-1]:
        item["answer"] = [{"valueCoding": {"system": "http://loinc.org", "code": "LA6568-5"}}]
    second = score_response(q, later)
    result = progress("phq-9", [("2026-10-01T09:30:00Z", first.value), (later["authored"], second.value)])
    assert result is not None
    assert (result.baseline.value, result.latest.value) == (14, 0)
    assert result.labels == ("response", "remission", "reliable-improvement")
