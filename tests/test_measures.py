"""The shipped standard measures (PHQ-9, PHQ-2, GAD-7, PCL-5) and their interpretation.

Every expected score below is computed by hand from the published scoring
rules; responses are built from the catalog Questionnaires themselves.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

import hw_fhir
from hw_fhir.models import validate
from hw_fhir.scoring import (
    INTERPRETATION_SYSTEM,
    Scorer,
    ScoreResult,
    calculate,
    check_expressions,
    gad7,
    pcl5,
    phq2,
    phq9,
    score_response,
)

CATALOG = Path(hw_fhir.__file__).parent / "catalog" / "questionnaires"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "responses"
LOINC = "http://loinc.org"
WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
CALC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
MEASURES = ("phq-9", "phq-2", "gad-7", "pcl-5")


def load_q(qid: str) -> dict[str, Any]:
    return json.loads((CATALOG / f"{qid}.json").read_text(encoding="utf-8"))


def load_r(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def scored_items(q: dict[str, Any]) -> list[dict[str, Any]]:
    """The questions whose answers carry weights, in order."""
    return [
        i for i in q["item"]
        if i["type"] == "choice" and any("extension" in o for o in i.get("answerOption", []))
    ]


def respond(q: dict[str, Any], weights: list[int | None], rid: str = "r1",
            status: str = "completed") -> dict[str, Any]:
    """A response answering scored item n with the option of weight weights[n] (None: unanswered)."""
    items = []
    for qitem, w in zip(scored_items(q), weights, strict=True):
        if w is None:
            continue
        option = next(o for o in qitem["answerOption"] if o["extension"][0]["valueDecimal"] == w)
        items.append({"linkId": qitem["linkId"], "answer": [{"valueCoding": dict(option["valueCoding"])}]})
    return {
        "resourceType": "QuestionnaireResponse",
        "id": rid,
        "questionnaire": f"{q['url']}|{q['version']}",
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "authored": "2026-10-01T09:00:00Z",
        "item": items,
    }


def spread(total: int, n: int, top: int, *, keep_last_zero: bool = False) -> list[int]:
    """Item weights summing to ``total`` (filled from item 1; optionally leaving the last item 0)."""
    slots = n - 1 if keep_last_zero else n
    out = []
    for _ in range(slots):
        w = min(top, total)
        out.append(w)
        total -= w
    assert total == 0, "total out of range"
    return out + ([0] if keep_last_zero else [])


def answer_of(response: dict[str, Any], link_id: str) -> list[dict[str, Any]]:
    for item in response.get("item", []):
        if item["linkId"] == link_id:
            return item.get("answer", [])
    return []


# --- the Questionnaire files -------------------------------------------------------------


@pytest.mark.parametrize("qid", MEASURES)
def test_measure_questionnaire_follows_the_catalog_conventions(qid: str) -> None:
    q = load_q(qid)
    assert validate(q, resource_type="Questionnaire")
    assert q["id"] == qid
    assert q["url"] == f"http://hw-fhir.org/fhir/Questionnaire/{qid}"
    assert q["version"] == "1.0.0"
    assert q["status"] == "active"
    assert q["subjectType"] == ["Patient"]
    assert q["name"] and q["title"] and q["publisher"] and q["copyright"]
    assert check_expressions(q) == []
    contexts = {(u["code"]["code"], u["valueCodeableConcept"]["coding"][0]["system"],
                 u["valueCodeableConcept"]["coding"][0]["code"]) for u in q["useContext"]}
    area = {"phq-9": "depression", "phq-2": "depression", "gad-7": "anxiety", "pcl-5": "ptsd"}[qid]
    assert contexts == {
        ("focus", "http://hw-fhir.org/fhir/CodeSystem/problem-area", area),
        ("modality", "http://hw-fhir.org/fhir/CodeSystem/modality", "mbc"),
        ("media", "http://hw-fhir.org/fhir/CodeSystem/media", "form"),
        ("kind", "http://hw-fhir.org/fhir/CodeSystem/activity-kind", "measure"),
    }


@pytest.mark.parametrize(
    ("qid", "panel", "item_codes", "total_code", "top"),
    [
        ("phq-9", "44249-1", ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
                              "44258-2", "44252-5", "44253-3", "44260-8"], "44261-6", 3),
        ("phq-2", "55757-9", ["44250-9", "44255-8"], "55758-7", 3),
        ("gad-7", "69737-5", ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9",
                              "69689-8", "69736-7"], "70274-6", 3),
        ("pcl-5", None, [None] * 20, None, 4),
    ],
)
def test_measure_codes_weights_and_total(qid: str, panel: str | None, item_codes: list[str | None],
                                         total_code: str | None, top: int) -> None:
    q = load_q(qid)
    prefix = qid.replace("-", "")
    assert [c["code"] for c in q.get("code", [])] == ([panel] if panel else [])
    items = scored_items(q)
    assert [i["linkId"] for i in items] == [f"{prefix}-{n}" for n in range(1, len(item_codes) + 1)]
    assert [i["code"][0]["code"] if "code" in i else None for i in items] == item_codes
    for item in items:
        assert item["required"] is True
        weights = [o["extension"][0] for o in item["answerOption"]]
        assert [w["url"] for w in weights] == [WEIGHT] * (top + 1)
        assert [w["valueDecimal"] for w in weights] == list(range(top + 1))
    if top == 3:
        assert [o["valueCoding"]["code"] for o in items[0]["answerOption"]] == [
            "LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]
        assert all(o["valueCoding"]["system"] == LOINC for o in items[0]["answerOption"])
    total = next(i for i in q["item"] if i["linkId"] == f"{prefix}-total")
    assert total["type"] == "integer" and total["readOnly"] is True
    assert [c["code"] for c in total.get("code", [])] == ([total_code] if total_code else [])
    calc = next(e for e in total["extension"] if e["url"] == CALC)["valueExpression"]
    assert calc["language"] == "text/fhirpath" and "weight()" in calc["expression"]


def test_phq9_has_the_unscored_difficulty_item() -> None:
    q = load_q("phq-9")
    item = next(i for i in q["item"] if i["linkId"] == "phq9-10")
    assert item["code"][0]["code"] == "69722-7"
    assert item["text"].startswith("If you checked off any problems, how difficult")
    assert [o["valueCoding"]["display"] for o in item["answerOption"]] == [
        "Not difficult at all", "Somewhat difficult", "Very difficult", "Extremely difficult"]
    assert all("extension" not in o for o in item["answerOption"])
    everything = respond(load_q("phq-9"), [3] * 9)
    extreme = item["answerOption"][3]["valueCoding"]
    everything["item"].append({"linkId": "phq9-10", "answer": [{"valueCoding": extreme}]})
    assert score_response(q, everything).value == 27


def test_calculated_total_is_written_into_the_response_only_when_complete() -> None:
    q = load_q("phq-9")
    full = respond(q, [1, 2, 3, 0, 1, 2, 3, 1, 1])
    before = copy.deepcopy(full)
    calculated = calculate(q, full)
    assert full == before, "the input response must not change"
    assert answer_of(calculated, "phq9-total") == [{"valueInteger": 14}]
    assert [i["linkId"] for i in calculated["item"]][-1] == "phq9-total"
    partial = calculate(q, respond(q, [1, 2, 3, 0, 1, 2, 3, 1, None]))
    assert answer_of(partial, "phq9-total") == []
    assert "phq9-total" not in [i["linkId"] for i in partial["item"]]


def test_a_wrong_total_in_the_response_is_recalculated() -> None:
    q = load_q("gad-7")
    r = respond(q, [3, 3, 3, 3, 3, 3, 3])
    r["item"].append({"linkId": "gad7-total", "answer": [{"valueInteger": 2}]})
    result = score_response(q, r)
    assert answer_of(dict(result.response), "gad7-total") == [{"valueInteger": 21}]
    assert result.value == 21


# --- PHQ-9 ---------------------------------------------------------------------------------


def test_phq9_all_zero_and_all_max() -> None:
    q = load_q("phq-9")
    zero = score_response(q, respond(q, [0] * 9))
    assert (zero.value, zero.interpretation.code, zero.risks) == (0, "minimal", ())
    top = score_response(q, respond(q, [3] * 9))
    assert (top.value, top.interpretation.code) == (27, "severe")
    assert [r.code for r in top.risks] == ["self-harm"]
    assert top.instrument == "phq-9"
    assert top.total.code.system == LOINC and top.total.code.code == "44261-6"
    assert top.interpretation.system == INTERPRETATION_SYSTEM


@pytest.mark.parametrize(
    ("total", "band"),
    [(4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"), (14, "moderate"),
     (15, "moderately-severe"), (19, "moderately-severe"), (20, "severe"), (24, "severe")],
)
def test_phq9_band_edges(total: int, band: str) -> None:
    q = load_q("phq-9")
    result = score_response(q, respond(q, spread(total, 9, 3, keep_last_zero=True)))
    assert result.value == total
    assert result.interpretation.code == band
    assert result.risks == ()


def test_phq9_item9_alone_raises_the_self_harm_flag() -> None:
    q = load_q("phq-9")
    result = score_response(q, respond(q, [0, 0, 0, 0, 0, 0, 0, 0, 1]))
    assert result.value == 1 and result.interpretation.code == "minimal"
    (risk,) = result.risks
    assert risk.code == "self-harm"
    assert risk.link_id == "phq9-9"
    assert "item 9" in risk.reason and "1 of 3" in risk.reason


def test_phq9_matches_a_clone_by_loinc_code_not_link_id() -> None:
    clone = load_q("phq-9")
    clone["url"] = "http://clinic.example/Questionnaire/my-phq9"
    for item in clone["item"]:
        item["linkId"] = "x-" + item["linkId"]
    for ext in next(i for i in clone["item"] if i["linkId"] == "x-phq9-total")["extension"]:
        expr = ext["valueExpression"]
        expr["expression"] = expr["expression"].replace("'phq9-", "'x-phq9-")
    r = respond(clone, [3, 3, 3, 3, 3, 3, 3, 3, 0])
    result = score_response(clone, r)
    assert result.instrument == "phq-9"
    assert result.value == 24
    assert result.total.key == "x-phq9-total"


def test_phq9_two_missing_items_are_prorated() -> None:
    q = load_q("phq-9")
    result = score_response(q, load_r("phq-9-two-missing"))
    # answered 1+2+3+0+2+3+1 = 12 over 7 items; 12 / 7 * 9 = 15.43 -> 15
    assert result.value == 15
    assert result.interpretation.code == "moderately-severe"
    assert any(n.startswith("Prorated: 7 of 9") for n in result.notes)
    assert any("Item 9" in n for n in result.notes), "an unanswered item 9 is pointed out"
    # the response's own total agrees with the score, and says it is prorated (issue 14)
    assert answer_of(dict(result.response), "phq9-total") == [{"valueInteger": 15, "extension": [
        {"url": "http://hw-fhir.org/fhir/StructureDefinition/score-prorated", "valueBoolean": True}]}]


def test_phq9_prorating_rounds_half_up() -> None:
    q = load_q("phq-9")
    # 8 items answered summing to 4: 4 / 8 * 9 = 4.5 -> 5 (mild), not 4 (minimal)
    result = score_response(q, respond(q, [1, 1, 1, 1, 0, 0, 0, None, 0]))
    assert result.value == 5
    assert result.interpretation.code == "mild"


def test_phq9_three_missing_items_are_not_scored() -> None:
    q = load_q("phq-9")
    result = score_response(q, respond(q, [3, 3, 3, None, None, None, 3, 3, 2]))
    assert result.total is None and result.value is None
    assert result.interpretation is None
    assert any(n.startswith("Not scored: 3 of 9") for n in result.notes)
    assert [r.code for r in result.risks] == ["self-harm"], "item 9 is still checked"


# --- GAD-7 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "band"),
    [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"),
     (14, "moderate"), (15, "severe"), (21, "severe")],
)
def test_gad7_band_edges(total: int, band: str) -> None:
    q = load_q("gad-7")
    result = score_response(q, respond(q, spread(total, 7, 3)))
    assert (result.value, result.interpretation.code, result.instrument) == (total, band, "gad-7")
    assert result.total.code.code == "70274-6"
    assert result.risks == ()


def test_gad7_fixture_is_mild() -> None:
    result = score_response(load_q("gad-7"), load_r("gad-7-mild"))
    assert (result.value, result.interpretation.code) == (6, "mild")


def test_gad7_one_missing_item_is_prorated_two_are_not() -> None:
    q = load_q("gad-7")
    one = score_response(q, respond(q, [2, 2, 2, 2, 2, 1, None]))
    # 11 / 6 * 7 = 12.83 -> 13
    assert (one.value, one.interpretation.code) == (13, "moderate")
    two = score_response(q, respond(q, [2, 2, 2, 2, 2, None, None]))
    assert two.value is None and two.interpretation is None


# --- PHQ-2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "total", "band"),
    [([0, 0], 0, "negative-screen"), ([1, 1], 2, "negative-screen"), ([2, 1], 3, "positive-screen"),
     ([3, 3], 6, "positive-screen")],
)
def test_phq2_screen(weights: list[int], total: int, band: str) -> None:
    q = load_q("phq-2")
    result = score_response(q, respond(q, weights))
    assert (result.value, result.interpretation.code, result.instrument) == (total, band, "phq-2")
    assert result.total.code.code == "55758-7"


def test_phq2_fixture_and_missing_item() -> None:
    q = load_q("phq-2")
    assert score_response(q, load_r("phq-2-positive")).interpretation.code == "positive-screen"
    missing = score_response(q, respond(q, [3, None]))
    assert missing.value is None and missing.interpretation is None


# --- PCL-5 ---------------------------------------------------------------------------------


def test_pcl5_fixture_clusters_and_pattern() -> None:
    result = score_response(load_q("pcl-5"), load_r("pcl-5-probable"))
    assert result.instrument == "pcl-5"
    assert (result.value, result.interpretation.code) == (41, "probable-ptsd")
    clusters = {k: result.score(f"pcl5-cluster-{k}").value for k in "bcde"}
    assert clusters == {"b": 12, "c": 5, "d": 13, "e": 11}
    assert any("DSM-5 symptom pattern" in n for n in result.notes)


@pytest.mark.parametrize(("total", "band"), [(0, "below-threshold"), (32, "below-threshold"),
                                             (33, "probable-ptsd"), (80, "probable-ptsd")])
def test_pcl5_threshold(total: int, band: str) -> None:
    q = load_q("pcl-5")
    result = score_response(q, respond(q, spread(total, 20, 4)))
    assert (result.value, result.interpretation.code) == (total, band)
    assert answer_of(dict(result.response), "pcl5-total") == [{"valueInteger": total}]


def test_pcl5_pattern_not_met_without_cluster_c() -> None:
    q = load_q("pcl-5")
    weights = [4] * 20
    weights[5] = weights[6] = 1  # no avoidance symptom rated 2 or more
    result = score_response(q, respond(q, weights))
    assert result.value == 74
    assert not any("DSM-5 symptom pattern" in n for n in result.notes)


# --- the scorer contract -------------------------------------------------------------------


@pytest.mark.parametrize("module", [phq9, gad7, phq2, pcl5])
def test_instrument_scorers_decline_other_questionnaires(module: Any) -> None:
    scorer: Scorer = module.score_for
    assert isinstance(scorer, Scorer)
    own = load_q(module.INSTRUMENT.key)
    for qid in MEASURES:
        q = load_q(qid)
        r = respond(q, [0] * len(scored_items(q)))
        result = scorer(q, r)
        if qid == module.INSTRUMENT.key:
            assert isinstance(result, ScoreResult) and result.value == 0
        else:
            assert result is None
    assert own["url"] in module.INSTRUMENT.urls
