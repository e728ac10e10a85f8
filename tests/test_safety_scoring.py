"""Scores that cannot be fooled: adversarial responses posted through /fhir over real HTTP.

Each case gives the right total (or none, with the reason) and a Flag whenever PHQ-9
item 9 is positive, whatever weights or totals the client sent.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hw_fhir import library
from hw_fhir.catalog import get_questionnaire
from hw_fhir.models import validate
from hw_fhir.scoring.observations import PRORATED_EXTENSION

from safety_support import (
    GAD7_ITEM_CODES,
    LOINC,
    PHQ9_ITEM_CODES,
    Fhir,
    catalog_phq9,
    coding,
    response,
    total_of,
)

PHQ9 = "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0"


@pytest.fixture
def app_config(tmp_path, db_url: str) -> dict:
    """The app on SQLite and on PostgreSQL, open API."""
    return {"TESTING": True, "instance_path": str(tmp_path / "instance"), "database_url": db_url,
            "open_api": True, "secret_key": "test-secret"}


@pytest.fixture
def fhir(app, live_server) -> Fhir:
    """/fhir over HTTP, with the catalog, a patient and her clinician stored."""
    store = app.extensions["hw_fhir"].store
    library.load_catalog(store)
    store.update({"resourceType": "Practitioner", "id": "dr-rivera",
                  "telecom": [{"system": "email", "value": "rivera@clinic.test"}]})
    store.update({"resourceType": "Patient", "id": "pat-ava",
                  "generalPractitioner": [{"reference": "Practitioner/dr-rivera"}]})
    return Fhir(live_server.url)


def warnings_of(got: Any) -> list[str]:
    return [i["diagnostics"] for i in got.json()["issue"] if i["severity"] == "warning"]


def total_obs(client: Fhir, rid: str, code: str = "44261-6") -> dict[str, Any] | None:
    return client.observations(rid).get(code)


def self_harm_flags(client: Fhir) -> list[dict[str, Any]]:
    return [f for f in client.flags("pat-ava") if f["code"]["coding"][0]["code"] == "self-harm"]


@pytest.mark.parametrize("weight", [0, 4, -1, 1e9])
def test_client_weights_on_answers_are_ignored_and_reported(fhir: Fhir, weight: Any) -> None:
    scores = [1, 2, 0, 3, 1, 0, 2, 1, 3]  # 13 → moderate; item 9 "Nearly every day"
    got = fhir.post(catalog_phq9(scores, weight=weight), outcome=True)
    assert got.status_code == 201, got.text
    assert any("ignored" in w and "item 9" in w for w in warnings_of(got)), warnings_of(got)
    rid = got.headers["Location"].split("/")[-3]
    total = total_obs(fhir, rid)
    assert total["valueQuantity"]["value"] == 13
    assert total["interpretation"][0]["coding"][0]["code"] == "moderate"
    assert any("ignored" in n["text"] for n in total["note"])
    stored = fhir.read("QuestionnaireResponse", rid)
    assert total_of(stored, "phq9-total") == 13, "the response's total agrees with the Observation"
    flags = self_harm_flags(fhir)
    assert len(flags) == 1 and "scored 3 of 3" in flags[0]["code"]["text"]


def test_weight_4_on_every_answer_cannot_exceed_the_maximum(fhir: Fhir) -> None:
    got = fhir.post(catalog_phq9([3] * 9, weight=4))
    rid = got.json()["id"]
    total = total_obs(fhir, rid)
    assert total["valueQuantity"]["value"] == 27
    assert total["interpretation"][0]["coding"][0]["code"] == "severe"
    assert total_of(got.json(), "phq9-total") == 27
    assert "scored 3 of 3" in self_harm_flags(fhir)[0]["code"]["text"]


def test_client_sent_total_that_disagrees_is_replaced(fhir: Fhir) -> None:
    form = get_questionnaire(PHQ9)
    stored = copy.deepcopy(form)
    stored.update(id="phq9-no-calc", url="http://clinic.test/Questionnaire/phq9-plain",
                  version="1")
    for item in stored["item"]:  # a form that does not calculate its own total
        item.pop("extension", None)
    fhir.put(stored)
    answers = {f"phq9-{n}": {"valueCoding": coding(3)} for n in range(1, 10)}
    resp = response("http://clinic.test/Questionnaire/phq9-plain|1", answers,
                    extra=[{"linkId": "phq9-total", "answer": [{"valueInteger": 0}]}])
    got = fhir.post(resp, outcome=True)
    assert any("total 0 was replaced by 27" in w for w in warnings_of(got)), warnings_of(got)
    rid = got.headers["Location"].split("/")[-3]
    assert total_of(fhir.read("QuestionnaireResponse", rid), "phq9-total") == 27
    assert total_obs(fhir, rid)["valueQuantity"]["value"] == 27
    assert self_harm_flags(fhir)


def test_unknown_code_on_item_9_is_positive_and_leaves_no_total(fhir: Fhir) -> None:
    answers = {f"phq9-{n}": {"valueCoding": coding(0)} for n in range(1, 9)}
    answers["phq9-9"] = {"valueCoding": {"system": "http://evil.test/cs", "code": "yes-sometimes",
                                         "display": "Yes, sometimes"}}
    got = fhir.post(response(PHQ9, answers), outcome=True)
    assert got.status_code == 201
    rid = got.headers["Location"].split("/")[-3]
    assert total_obs(fhir, rid) is None, "an unscorable answer leaves no total"
    panel = fhir.observations(rid)["44249-1"]
    assert any("item 9 was answered 'Yes, sometimes'" in n["text"] for n in panel["note"])
    flag = self_harm_flags(fhir)[0]
    assert "Yes, sometimes" in flag["code"]["text"] and "treated as positive" in flag["code"]["text"]
    assert total_of(fhir.read("QuestionnaireResponse", rid), "phq9-total") is None


def test_item_9_free_text_is_never_counted_as_missing(fhir: Fhir) -> None:
    answers = {f"phq9-{n}": {"valueCoding": coding(1)} for n in range(1, 9)}
    answers["phq9-9"] = {"valueString": "sometimes I think about it"}
    fhir.post(response(PHQ9, answers))
    flag = self_harm_flags(fhir)[0]
    assert "sometimes I think about it" in flag["code"]["text"]


def _external_valueset_form(*, panel: bool, url: str) -> dict[str, Any]:
    items = [{"linkId": f"/{code}", "text": f"Question {n}", "type": "choice",
              "code": [{"system": LOINC, "code": code}],
              "answerValueSet": "http://loinc.org/vs/LL358-3"}
             for n, code in enumerate(PHQ9_ITEM_CODES, start=1)]
    form = {"resourceType": "Questionnaire", "id": url.rsplit("/", 1)[-1], "url": url,
            "status": "active", "item": items}
    if panel:
        form["code"] = [{"system": LOINC, "code": "44249-1"}]
    return form


@pytest.mark.parametrize("panel", [True, False], ids=["panel-code", "item-codes-only"])
def test_external_valueset_and_no_panel_code_still_score_and_flag(fhir: Fhir, panel: bool) -> None:
    url = f"http://clinic.test/Questionnaire/phq9-ext-{int(panel)}"
    fhir.put(_external_valueset_form(panel=panel, url=url))
    scores = [2, 2, 1, 1, 0, 0, 1, 1, 1]  # 9 → mild
    answers = {f"/{code}": {"valueCoding": coding(s)} for code, s in zip(PHQ9_ITEM_CODES, scores)}
    got = fhir.post(response(url, answers))
    rid = got.json()["id"]
    obs = fhir.observations(rid)
    assert obs["44261-6"]["valueQuantity"]["value"] == 9
    assert obs["44261-6"]["interpretation"][0]["coding"][0]["code"] == "mild"
    assert "44249-1" in obs, "the PHQ-9 panel code even when the form lacks it"
    assert "scored 1 of 3" in self_harm_flags(fhir)[0]["code"]["text"]


def test_recognised_by_total_item_code_alone(fhir: Fhir) -> None:
    items = [{"linkId": f"q{n}", "text": f"Question {n}", "type": "choice",
              "answerValueSet": "http://loinc.org/vs/LL358-3"} for n in range(1, 10)]
    items.append({"linkId": "score", "type": "integer", "readOnly": True,
                  "code": [{"system": LOINC, "code": "44261-6"}]})
    fhir.put({"resourceType": "Questionnaire", "id": "phq9-total-coded", "status": "active",
              "url": "http://clinic.test/Questionnaire/phq9-total-coded", "item": items})
    answers = {f"q{n}": {"valueCoding": coding(3)} for n in range(1, 10)}
    got = fhir.post(response("http://clinic.test/Questionnaire/phq9-total-coded", answers))
    rid = got.json()["id"]
    assert total_obs(fhir, rid)["valueQuantity"]["value"] == 27
    assert total_of(got.json(), "score") == 27
    assert self_harm_flags(fhir)


def test_gad7_without_item_codes_gets_its_band(fhir: Fhir) -> None:
    form = {"resourceType": "Questionnaire", "id": "gad7-plain", "status": "active",
            "code": [{"system": LOINC, "code": "69737-5"}],
            "item": [{"linkId": f"g{n}", "text": f"Question {n}", "type": "choice",
                      "answerValueSet": "http://loinc.org/vs/LL358-3"} for n in range(1, 8)]}
    fhir.put(form)  # no url at all
    scores = [2, 2, 2, 2, 2, 1, 1]  # 12 → moderate
    got = fhir.post(response("Questionnaire/gad7-plain",
                             {f"g{n}": {"valueCoding": coding(s)}
                              for n, s in enumerate(scores, start=1)}))
    rid = got.json()["id"]
    obs = fhir.observations(rid)
    total = obs["70274-6"]
    assert total["valueQuantity"]["value"] == 12
    assert total["interpretation"][0]["coding"][0]["code"] == "moderate"
    for o in obs.values():
        validate(o, resource_type="Observation")
        assert all(c.get("system") for c in o["code"]["coding"]), o["code"]


def test_prorated_total_agrees_everywhere(fhir: Fhir) -> None:
    answers = {f"phq9-{n}": {"valueCoding": coding(2)} for n in range(1, 8)}  # 7 of 9, all 2
    answers["phq9-9"] = {"valueCoding": coding(0)}
    got = fhir.post(response(PHQ9, answers))  # 8 answered, mean 14/8 × 9 = 15.75 → 16
    rid = got.json()["id"]
    total = total_obs(fhir, rid)
    assert total["valueQuantity"]["value"] == 16
    assert {"url": PRORATED_EXTENSION, "valueBoolean": True} in total["extension"]
    assert any(n["text"].startswith("Prorated: 8 of 9") for n in total["note"])
    stored = fhir.read("QuestionnaireResponse", rid)
    assert total_of(stored, "phq9-total") == 16
    [item] = [i for i in stored["item"] if i["linkId"] == "phq9-total"]
    assert item["answer"][0]["extension"] == [{"url": PRORATED_EXTENSION, "valueBoolean": True}]
    assert not self_harm_flags(fhir)
    again = fhir.put(stored)  # re-scoring the same answers writes no new version
    assert again.json()["meta"]["versionId"] == str(int(stored["meta"]["versionId"]) + 1)
    assert fhir.read("QuestionnaireResponse", rid)["meta"]["versionId"] == again.json()["meta"]["versionId"]


def test_every_observation_is_valid_us_core_screening_shape(fhir: Fhir) -> None:
    rid = fhir.post(catalog_phq9([1] * 9)).json()["id"]
    for obs in fhir.observations(rid).values():
        validate(obs, resource_type="Observation")
        assert obs["category"][0]["coding"][0]["code"] == "survey"
        assert obs["subject"] == {"reference": "Patient/pat-ava"}
        assert obs["effectiveDateTime"] and obs["code"]["coding"][0]["system"]
        assert obs["meta"]["profile"] == [
            "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-screening-assessment"]


def test_gad7_codes_recognise_by_majority(fhir: Fhir) -> None:
    codes = GAD7_ITEM_CODES[:4]  # 4 of 7 coded: a majority
    items = [{"linkId": f"x{n}", "type": "choice", "code": [{"system": LOINC, "code": c}]}
             for n, c in enumerate(codes)]
    items += [{"linkId": f"y{n}", "type": "choice"} for n in range(3)]
    fhir.put({"resourceType": "Questionnaire", "id": "gad7-partial", "status": "active",
              "url": "http://clinic.test/Questionnaire/gad7-partial", "item": items})
    answers = {f"x{n}": {"valueCoding": coding(3)} for n in range(4)}
    got = fhir.post(response("http://clinic.test/Questionnaire/gad7-partial", answers))
    panel = fhir.observations(got.json()["id"])["69737-5"]
    assert any("Not scored: 3 of 7 GAD-7 items unanswered" in n["text"] for n in panel["note"])


def test_pcl5_answers_scored_0_to_4_by_definition(fhir: Fhir) -> None:
    system = "http://hw-fhir.org/fhir/CodeSystem/pcl-5-response"
    answers = {f"pcl5-{n}": {"valueCoding": {"system": system, "code": "extremely", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/itemWeight", "valueDecimal": 0}]}}
        for n in range(1, 21)}
    got = fhir.post(response("http://hw-fhir.org/fhir/Questionnaire/pcl-5|1.0.0", answers))
    obs = fhir.observations(got.json()["id"])
    total = next(o for o in obs.values() if o["code"]["coding"][0]["code"] == "pcl5-total")
    assert total["valueQuantity"]["value"] == 80, "20 × 'Extremely' (4), client weight 0 ignored"
    assert total["interpretation"][0]["coding"][0]["code"] == "probable-ptsd"


def test_a_plugin_registers_another_canonical_for_the_phq9(tmp_path) -> None:
    from dataclasses import replace as with_

    from hw_fhir import outcomes
    from hw_fhir.hookspecs import hookimpl
    from hw_fhir.scoring import instruments, phq9
    from reminder_support import make_services

    url = "http://clinic.test/Questionnaire/our-phq"
    clinic_phq9 = with_(phq9.INSTRUMENT, urls=phq9.INSTRUMENT.urls | {url})

    class ClinicPlugin:
        @hookimpl
        def register_scorers(self):
            return [lambda q, r: instruments.score_sum(clinic_phq9, q, r)]

    services = make_services(tmp_path, ClinicPlugin())
    store = services.store
    store.update({"resourceType": "Patient", "id": "pat-ava"})
    # its own linkIds, no codes at all: only the registered url says it is a PHQ-9
    form = {"resourceType": "Questionnaire", "id": "our-phq", "url": url, "status": "active",
            "item": [{"linkId": f"phq9-{n}", "type": "choice",
                      "answerValueSet": "http://loinc.org/vs/LL358-3"} for n in range(1, 10)]}
    store.update(form)
    answers = {f"phq9-{n}": {"valueCoding": coding(1)} for n in range(1, 10)}
    stored = store.update(dict(response(url, answers), id="r-1")).resource
    without = outcomes.record_scores(store, stored)
    assert without.result.instrument is None and not without.flags, "unknown without the plugin"
    recorded = outcomes.record_scores(store, stored, plugins=services.plugins)
    assert recorded.result.value == 9 and recorded.flags
    services.close()


def test_an_unscorable_answer_leaves_no_total_from_client_weights(fhir: Fhir) -> None:
    answers = {f"phq9-{n}": {"valueCoding": coding(3, weight=1)} for n in range(1, 9)}
    answers["phq9-9"] = {"valueCoding": {"system": "http://evil.test/cs", "code": "x", "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/itemWeight", "valueDecimal": 0}]}}
    rid = fhir.post(response(PHQ9, answers)).json()["id"]
    assert "44261-6" not in fhir.observations(rid), "the form's 8 (client weights) is no total"
    assert total_of(fhir.read("QuestionnaireResponse", rid), "phq9-total") is None
    assert self_harm_flags(fhir)
