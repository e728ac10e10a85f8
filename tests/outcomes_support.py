"""Helpers for the outcomes tests: instrument responses built from item weights, a vendor form."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATALOG = "http://hw-fhir.org/fhir/Questionnaire"
SURVEY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                      "code": "survey", "display": "Survey"}]}
SCORE_BANDS = "http://hw-fhir.org/fhir/CodeSystem/score-interpretation"
#: The LOINC answers of the PHQ/GAD items, by weight.
ANSWERS = {0: ("LA6568-5", "Not at all"), 1: ("LA6569-3", "Several days"),
           2: ("LA6570-1", "More than half the days"), 3: ("LA6571-9", "Nearly every day")}
#: LOINC codes of PHQ-9 items 1-9, in order.
PHQ9_ITEM_CODES = ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
                   "44258-2", "44252-5", "44253-3", "44260-8")
_PREFIX = {"phq-9": "phq9", "gad-7": "gad7", "phq-2": "phq2"}


def instrument_response(instrument: str, weights: list[int | None], *, patient: str = "pat-ava",
                        authored: str = "2026-03-02T15:00:00Z", status: str = "completed",
                        extra_items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A response to a catalog instrument; ``weights[n]`` answers item n+1 (None: unanswered)."""
    prefix = _PREFIX[instrument]
    items = []
    for n, weight in enumerate(weights, start=1):
        if weight is None:
            continue
        code, display = ANSWERS[weight]
        coding = {"system": LOINC, "code": code, "display": display}
        items.append({"linkId": f"{prefix}-{n}", "answer": [{"valueCoding": coding}]})
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{CATALOG}/{instrument}|1.0.0",
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "author": {"reference": f"Patient/{patient}"},
        "authored": authored,
        "item": items + list(extra_items or []),
    }


VENDOR_SYSTEM = "http://vendor.example/CodeSystem/worry-time"
VENDOR_URL = "http://vendor.example/Questionnaire/worry-time"
_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
_CALC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"


def _option(code: str, weight: int) -> dict[str, Any]:
    return {"extension": [{"url": _WEIGHT, "valueDecimal": weight}],
            "valueCoding": {"system": VENDOR_SYSTEM, "code": code, "display": code.title()}}


def vendor_questionnaire() -> dict[str, Any]:
    """A vendor's own instrument: itemWeight and a calculatedExpression, no plugin knows it."""
    options = [_option("never", 0), _option("sometimes", 2), _option("often", 4)]
    return {
        "resourceType": "Questionnaire",
        "id": "worry-time",
        "url": VENDOR_URL,
        "version": "3.0",
        "name": "WorryTimeCheck",
        "title": "Worry Time Check",
        "status": "active",
        "code": [{"system": VENDOR_SYSTEM, "code": "panel", "display": "Worry Time Check"}],
        "item": [
            {"linkId": "w1", "text": "I worried outside my worry time", "type": "choice",
             "code": [{"system": VENDOR_SYSTEM, "code": "w1"}], "answerOption": options},
            {"linkId": "w2", "text": "Worry kept me from sleeping", "type": "choice",
             "answerOption": options},
            {"linkId": "w3", "text": "I postponed a worry to worry time", "type": "choice",
             "answerOption": options},
            {"linkId": "score", "text": "Worry score", "type": "integer", "readOnly": True,
             "code": [{"system": VENDOR_SYSTEM, "code": "score", "display": "Worry score"}],
             "extension": [{"url": _CALC, "valueExpression": {
                 "language": "text/fhirpath",
                 "expression": "%resource.item.where(linkId in ('w1' | 'w2')).answer.value.weight()"
                               ".sum() - %resource.item.where(linkId = 'w3').answer.value.weight()"
                               ".sum()"}}]},
        ],
    }


def vendor_response(w1: str, w2: str, w3: str, *, patient: str = "pat-ava") -> dict[str, Any]:
    """A response to the vendor instrument."""
    def answer(link_id: str, code: str) -> dict[str, Any]:
        coding = {"system": VENDOR_SYSTEM, "code": code}
        return {"linkId": link_id, "answer": [{"valueCoding": coding}]}

    return {"resourceType": "QuestionnaireResponse", "questionnaire": f"{VENDOR_URL}|3.0",
            "status": "completed", "subject": {"reference": f"Patient/{patient}"},
            "authored": "2026-03-04T08:00:00Z",
            "item": [answer("w1", w1), answer("w2", w2), answer("w3", w3)]}


def codes(concept: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (system, code) of every coding of a CodeableConcept."""
    return [(c.get("system"), c.get("code")) for c in concept.get("coding") or []]


def by_code(observations: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Index Observations by their first code."""
    return {o["code"]["coding"][0]["code"]: o for o in observations}
