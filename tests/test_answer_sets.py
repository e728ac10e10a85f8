"""Answers from any ValueSet: contained, stored in hw-fhir, or shipped; weight() reads every
place a weight can be and fails loudly when there is none. Posted through /fhir over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from hw_fhir.scoring import score_response
from hw_fhir.scoring.terminology import shipped_valuesets

from safety_support import Fhir, response

CALC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
R5_PROP = ("http://hl7.org/fhir/5.0/StructureDefinition/"
           "extension-ValueSet.expansion.contains.property")
SYS = "http://vendor.test/CodeSystem/energy"
VS = "http://vendor.test/ValueSet/energy"


@pytest.fixture
def fhir(app, live_server) -> Fhir:
    app.extensions["hw_fhir"].store.update({"resourceType": "Patient", "id": "pat-ava"})
    return Fhir(live_server.url)


def form(qid: str, answer_set: str, contained: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A vendor form (no instrument knows it): two items from ``answer_set``, total = weight() sum."""
    items = [{"linkId": f"e{n}", "text": f"Energy {n}", "type": "choice",
              "answerValueSet": answer_set} for n in (1, 2)]
    items.append({"linkId": "total", "text": "Energy score", "type": "decimal", "readOnly": True,
                  "code": [{"system": SYS, "code": "total"}],
                  "extension": [{"url": CALC, "valueExpression": {
                      "language": "text/fhirpath",
                      "expression": "%resource.item.where(linkId in ('e1' | 'e2')).answer.value"
                                    ".weight().sum()"}}]})
    q = {"resourceType": "Questionnaire", "id": qid, "url": f"http://vendor.test/Questionnaire/{qid}",
         "version": "1", "status": "active", "item": items}
    if contained:
        q["contained"] = contained
    return q


def answers(c1: str, c2: str, system: str = SYS) -> dict[str, Any]:
    return {"e1": {"valueCoding": {"system": system, "code": c1}},
            "e2": {"valueCoding": {"system": system, "code": c2}}}


def total(fhir: Fhir, rid: str) -> Any:
    obs = fhir.observations(rid).get("total")
    return obs["valueQuantity"]["value"] if obs else None


def valueset(vid: str, contains: list[dict[str, Any]], url: str = VS) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "id": vid, "url": url, "status": "active",
            "expansion": {"timestamp": "2026-01-01T00:00:00Z", "contains": contains}}


def r4_weight(code: str, weight: float) -> dict[str, Any]:
    return {"system": SYS, "code": code, "extension": [{"url": WEIGHT, "valueDecimal": weight}]}


def r5_native(code: str, weight: float) -> dict[str, Any]:
    return {"system": SYS, "code": code, "property": [{"code": "itemWeight", "valueDecimal": weight}]}


def r5_extension(code: str, weight: float) -> dict[str, Any]:
    return {"system": SYS, "code": code, "extension": [{"url": R5_PROP, "extension": [
        {"url": "code", "valueCode": "itemWeight"}, {"url": "value", "valueDecimal": weight}]}]}


@pytest.mark.parametrize("entry", [r4_weight, r5_extension],
                         ids=["r4-extension", "r5-property-as-r4-extension"])
def test_weights_from_a_stored_valueset_expansion(fhir: Fhir, entry) -> None:
    got = fhir.put(valueset("energy", [entry("low", 1), entry("high", 2.5)]))
    assert got.status_code in (200, 201), got.text
    fhir.put(form("stored-vs", VS))
    rid = fhir.created(response("http://vendor.test/Questionnaire/stored-vs|1",
                                answers("low", "high")))["id"]
    assert total(fhir, rid) == 3.5


def test_weights_from_a_contained_valueset_r5_property(fhir: Fhir) -> None:
    contained = [valueset("vs1", [r5_extension("low", 0), r5_extension("high", 4)])]
    del contained[0]["url"]
    fhir.put(form("contained-vs", "#vs1", contained))
    rid = fhir.created(response("http://vendor.test/Questionnaire/contained-vs|1",
                                answers("high", "high")))["id"]
    assert total(fhir, rid) == 8


def test_native_r5_property_is_not_r4_but_is_read_when_given(fhir: Fhir) -> None:
    r5 = valueset("vs-r5", [r5_native("low", 1), r5_native("high", 3)])
    assert fhir.put(r5).status_code == 400, "not valid R4: refused by the store"
    del r5["url"]
    q = form("r5", "#vs-r5", [r5])
    r = dict(response("http://vendor.test/Questionnaire/r5|1", answers("low", "high")), id="r1")
    assert score_response(q, r).value == 4


def test_weights_from_a_stored_codesystem_property(fhir: Fhir) -> None:
    fhir.put({"resourceType": "CodeSystem", "id": "energy-cs", "url": SYS, "status": "active",
              "content": "complete", "property": [{"code": "itemWeight", "type": "decimal"}],
              "concept": [{"code": "low", "property": [{"code": "itemWeight", "valueDecimal": 1}]},
                          {"code": "high", "property": [{"code": "itemWeight", "valueDecimal": 5}]}]})
    fhir.put(valueset("energy-nw", [{"system": SYS, "code": "low"}, {"system": SYS, "code": "high"}]))
    fhir.put(form("cs-weights", VS))
    rid = fhir.created(response("http://vendor.test/Questionnaire/cs-weights|1",
                                answers("low", "high")))["id"]
    assert total(fhir, rid) == 6


def test_shipped_loinc_answer_list_weighs_a_vendor_form(fhir: Fhir) -> None:
    assert {"http://loinc.org/vs/LL358-3", "http://loinc.org/vs/LL359-1"} <= set(shipped_valuesets())
    fhir.put(form("freq", "http://loinc.org/vs/LL358-3"))
    rid = fhir.created(response("http://vendor.test/Questionnaire/freq|1",
                                answers("LA6570-1", "LA6571-9", "http://loinc.org")))["id"]
    assert total(fhir, rid) == 5


def test_weight_without_any_weight_fails_loudly_naming_item_and_expression(fhir: Fhir) -> None:
    fhir.put(form("missing-vs", "http://vendor.test/ValueSet/nowhere"))
    got = fhir.post(response("http://vendor.test/Questionnaire/missing-vs|1",
                             answers("low", "high")), outcome=True)
    assert got.status_code == 201, "the response is stored; the scoring problem is reported"
    text = " ".join(i["diagnostics"] for i in got.json()["issue"])
    assert "weight()" in text and "'low'" in text and "item 'e1'" in text
    assert ".weight().sum()" in text, "the expression is named"
    rid = got.headers["Location"].split("/")[-3]
    assert fhir.observations(rid) == {}, "no total of 0 from unweighed answers"


def test_score_response_uses_shipped_lists_without_a_store() -> None:
    q = form("pure", "http://loinc.org/vs/LL358-3")
    r = dict(response("http://vendor.test/Questionnaire/pure|1",
                      answers("LA6569-3", "LA6569-3", "http://loinc.org")), id="r1")
    assert score_response(q, r).value == 2
