"""Published PHQ-9 and GAD-7 Questionnaires from other projects (fixtures/outside/), stored and
answered through /fhir over HTTP with hand-computed answer sets: each scores as its instrument says,
and every positive item 9 raises a Flag."""

from __future__ import annotations

from typing import Any

import pytest

from hw_fhir.models import validate

from safety_support import LOINC, Fhir, load_outside, total_of

CSPHQ9 = "http://hl7.org/fhir/uv/sdc/CodeSystem/CSPHQ9"
LA = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]
SDC_CODES = ["Not-at-all", "Several-days", "More than half the days", "Nearly every day"]
LHC_LINKS = ["/44250-9", "/44255-8", "/44259-0", "/44254-1", "/44251-7", "/44258-2", "/44252-5",
             "/44253-3", "/44260-8"]

# hand-computed: (answers per item, total, band, item 9 positive)
PHQ9_SETS = {
    "all-0": ([0] * 9, 0, "minimal", False),
    "all-max": ([3] * 9, 27, "severe", True),
    "mixed": ([1, 2, 0, 3, 1, 0, 2, 1, 0], 10, "moderate", False),
    "item-9-only": ([0] * 8 + [2], 2, "minimal", True),
}
GAD7_SETS = {
    "all-0": ([0] * 7, 0, "minimal"),
    "all-max": ([3] * 7, 21, "severe"),
    "mixed": ([1, 2, 0, 3, 1, 0, 2], 9, "mild"),
}


def _lhc(score: int) -> dict[str, Any]:
    return {"code": LA[score]}  # LHC-Forms options carry no system


def _loinc(score: int) -> dict[str, Any]:
    return {"system": LOINC, "code": LA[score]}


def _sdc(score: int) -> dict[str, Any]:
    return {"system": CSPHQ9, "code": SDC_CODES[score]}


def _flat(links: list[str], scores: list[int], coding) -> list[dict[str, Any]]:
    return [{"linkId": link, "answer": [{"valueCoding": coding(s)}]} for link, s in zip(links, scores)]


def _grouped(scores: list[int]) -> list[dict[str, Any]]:
    return [{"linkId": "H1/T1", "item": _flat([f"H1/T1/Q{n}" for n in range(1, 10)], scores, _sdc)}]


#: form file → (how to answer it, total linkId, canonical to answer)
PHQ9_FORMS = {
    "lhcforms-phq9.repaired.json": (lambda s: _flat(LHC_LINKS, s, _lhc), "/44261-6"),
    "sdc-phq9.json": (_grouped, "H1/TS"),
    "sdc-current-phq9.repaired.json": (_grouped, "H1/TS"),
    "cms-access-phq9.json": (lambda s: _flat([f"phq9-{n}" for n in range(1, 10)], s, _loinc),
                             "total-score"),
}


@pytest.fixture
def fhir(app, live_server) -> Fhir:
    app.extensions["hw_fhir"].store.update({"resourceType": "Practitioner", "id": "dr-rivera"})
    app.extensions["hw_fhir"].store.update({
        "resourceType": "Patient", "id": "pat-ava",
        "generalPractitioner": [{"reference": "Practitioner/dr-rivera"}]})
    return Fhir(live_server.url)


def store_form(fhir: Fhir, name: str) -> str:
    """Store an outside Questionnaire through /fhir; return the canonical a response names."""
    form = load_outside(name)
    form.setdefault("id", name.split(".")[0])
    got = fhir.put(form)
    assert got.status_code in (200, 201), f"{name} is not accepted as R4: {got.text}"
    return f"{form['url']}|{form['version']}" if form.get("version") else form.get("url") \
        or f"Questionnaire/{form['id']}"


def answer(fhir: Fhir, canonical: str, items: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    got = fhir.post({"resourceType": "QuestionnaireResponse", "questionnaire": canonical,
                     "status": "completed", "subject": {"reference": "Patient/pat-ava"},
                     "authored": "2026-03-02T15:00:00Z", "item": items})
    assert got.status_code == 201, got.text
    rid = got.json()["id"]
    return rid, fhir.read("QuestionnaireResponse", rid)


@pytest.mark.parametrize("answers", list(PHQ9_SETS), ids=list(PHQ9_SETS))
@pytest.mark.parametrize("form", list(PHQ9_FORMS), ids=list(PHQ9_FORMS))
def test_outside_phq9_scores_by_its_own_rules(fhir: Fhir, form: str, answers: str) -> None:
    scores, total, band, item9 = PHQ9_SETS[answers]
    build, total_link = PHQ9_FORMS[form]
    rid, stored = answer(fhir, store_form(fhir, form), build(scores))
    obs = fhir.observations(rid)
    assert obs["44261-6"]["valueQuantity"]["value"] == total
    assert obs["44261-6"]["interpretation"][0]["coding"][0]["code"] == band
    assert total_of(stored, total_link) == total, "the response's own total agrees"
    for o in obs.values():
        validate(o, resource_type="Observation")
    flags = [f for f in fhir.flags("pat-ava") if f["code"]["coding"][0]["code"] == "self-harm"]
    assert bool(flags) == item9
    if item9:
        alert = fhir.search("CommunicationRequest?about=Flag/" + flags[0]["id"])[0]
        assert alert["recipient"] == [{"reference": "Practitioner/dr-rivera"}]


@pytest.mark.parametrize("answers", list(GAD7_SETS), ids=list(GAD7_SETS))
def test_outside_gad7_without_item_codes_gets_total_and_band(fhir: Fhir, answers: str) -> None:
    scores, total, band = GAD7_SETS[answers]
    items = _flat([f"gad7-{n}" for n in range(1, 8)], scores, _loinc)
    rid, stored = answer(fhir, store_form(fhir, "cms-access-gad7.json"), items)
    obs = fhir.observations(rid)
    assert obs["70274-6"]["valueQuantity"]["value"] == total
    assert obs["70274-6"]["interpretation"][0]["coding"][0]["code"] == band
    assert total_of(stored, "total-score") == total
    assert "69737-5" in obs


def test_the_sdc_examples_own_response_is_scored_and_its_wrong_total_replaced(fhir: Fhir) -> None:
    store_form(fhir, "sdc-phq9.json")
    published = load_outside("sdc-phq9-response.json")
    assert total_of(published, "H1/TS") == 13, "as published"
    # its subject is hl7.org's example patient: pointed at a local patient so the alert has a chain
    published.pop("id")
    published["subject"] = published["author"] = {"reference": "Patient/pat-ava"}
    got = fhir.post(published, outcome=True)
    assert got.status_code == 201, got.text
    warnings = [i["diagnostics"] for i in got.json()["issue"] if i["severity"] == "warning"]
    assert any("total 13 was replaced by 10" in w for w in warnings), warnings
    rid = got.headers["Location"].split("/")[-3]
    obs = fhir.observations(rid)
    # 0+0+0+1+2+1+3+2+1 = 10 → moderate; item 9 "Several days" → Flag
    assert obs["44261-6"]["valueQuantity"]["value"] == 10
    assert obs["44261-6"]["interpretation"][0]["coding"][0]["code"] == "moderate"
    assert total_of(fhir.read("QuestionnaireResponse", rid), "H1/TS") == 10
    [flag] = fhir.flags("pat-ava")
    assert "scored 1 of 3" in flag["code"]["text"]


def test_the_lhc_forms_original_is_refused_naming_what_is_not_r4(fhir: Fhir) -> None:
    form = dict(load_outside("lhcforms-phq9.original.json"), id="lhc-original")
    got = fhir.put(form)
    assert got.status_code == 400
    problems = [i["expression"][0] for i in got.json()["issue"]]
    assert "Questionnaire.item[9].extension[3].valueExpression.name" in problems
    assert fhir.search("Questionnaire?_id=lhc-original") == [], "nothing half-written"
