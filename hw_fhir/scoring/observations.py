"""Scores as Observations, US Core screening-and-assessment style.

One panel Observation (``code`` = the Questionnaire's code, ``hasMember`` → the
others), one Observation per score, and one per coded question the response
answers. Every Observation has an identifier and an id derived from the
response id and its code, so re-scoring an amended response updates the same
Observations instead of adding new ones. A Questionnaire without codes scores
under its own canonical url as code system (code = linkId).
"""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import InvalidInput
from .items import answer_value, iter_questionnaire_items, iter_response_items
from .results import Score, ScoreResult

__all__ = [
    "OBSERVATION_SYSTEM",
    "LOCAL_SYSTEM",
    "PRORATED_EXTENSION",
    "US_CORE_SCREENING",
    "local_system",
    "observation_id",
    "observations_for",
]

Json = dict[str, Any]

LOINC = "http://loinc.org"
#: Code system of scores a Questionnaire without url holds (``<this>/<Questionnaire id>``).
LOCAL_SYSTEM = "http://hw-fhir.org/fhir/CodeSystem/questionnaire-item"
#: On a total Observation: the total was prorated over unanswered items (valueBoolean true).
PRORATED_EXTENSION = "http://hw-fhir.org/fhir/StructureDefinition/score-prorated"
#: US Core profile every score Observation claims (screening and assessment shape).
US_CORE_SCREENING = ("http://hl7.org/fhir/us/core/StructureDefinition/"
                     "us-core-observation-screening-assessment")
#: Identifier system of the Observations hw-fhir derives from responses.
OBSERVATION_SYSTEM = "http://hw-fhir.org/fhir/sid/observation"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, OBSERVATION_SYSTEM)
_CATEGORY = {
    "coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
        "code": "survey",
        "display": "Survey",
    }]
}
_UCUM = "http://unitsofmeasure.org"
_STATUS = {"in-progress": "preliminary", "entered-in-error": "entered-in-error"}


def observation_id(response_id: str, key: str) -> str:
    """Return the stable Observation id for one code of one response."""
    return str(uuid.uuid5(_NAMESPACE, f"{response_id}/{key}"))


def observations_for(questionnaire: Json, response: Json, result: ScoreResult) -> list[Json]:
    """Return the panel Observation first, then its members, for a scored response."""
    response_id = response.get("id")
    if not response_id:
        raise InvalidInput("The QuestionnaireResponse has no id: scores cannot point back to it")
    members = [_score(questionnaire, response, result, s) for s in result.scores]
    score_codes = {s.code.code for s in result.scores if s.code} | {s.key for s in result.scores}
    members += _answers(questionnaire, response, score_codes)
    panel_code = _panel_code(questionnaire, result)
    panel = _base(response, str(panel_code["coding"][0]["code"]), panel_code)
    panel["hasMember"] = [{"reference": f"Observation/{m['id']}"} for m in members]
    notes = [f"{r.display}: {r.reason}" for r in result.risks]
    if result.total is None:
        notes += [*result.notes, *result.warnings]
    if notes:
        panel["note"] = [{"text": n} for n in notes]
    return [panel, *members]


def _base(response: Json, key: str, code: Json) -> Json:
    value = f"{response['id']}/{key}"
    obs: Json = {
        "resourceType": "Observation",
        "id": observation_id(response["id"], key),
        "identifier": [{"system": OBSERVATION_SYSTEM, "value": value}],
        "status": _STATUS.get(str(response.get("status")), "final"),
        "category": [_CATEGORY],
        "code": code,
    }
    if response.get("subject"):
        obs["subject"] = response["subject"]
        if str(response["subject"].get("reference", "")).startswith("Patient/"):
            obs["meta"] = {"profile": [US_CORE_SCREENING]}
    if response.get("authored"):
        obs["effectiveDateTime"] = response["authored"]
    if response.get("author"):
        obs["performer"] = [response["author"]]
    obs["derivedFrom"] = [{"reference": f"QuestionnaireResponse/{response['id']}"}]
    return obs


def local_system(questionnaire: Json) -> str:
    """Return the code system of a Questionnaire's uncoded scores: its url, else one made from its id."""
    url = questionnaire.get("url")
    if isinstance(url, str) and url.strip():
        return url.split("|", 1)[0]
    return f"{LOCAL_SYSTEM}/{questionnaire.get('id') or 'unidentified'}"


def _panel_code(questionnaire: Json, result: ScoreResult) -> Json:
    title = questionnaire.get("title") or questionnaire.get("name")
    codes = [dict(c, system=c.get("system") or LOINC) for c in questionnaire.get("code") or []
             if c.get("code")]
    if not codes and result.panel_code is not None:
        codes = [result.panel_code.as_fhir()]
    if not codes:
        codes = [{"system": local_system(questionnaire), "code": "panel"}]
    return {"coding": codes, **({"text": title} if title else {})}


def _score(questionnaire: Json, response: Json, result: ScoreResult, score: Score) -> Json:
    if score.code is not None:
        key = score.code.code
        code: Json = {"coding": [score.code.as_fhir()]}
    else:
        key = score.key
        code = {"coding": [{"system": local_system(questionnaire), "code": score.key}]}
    if score.label:
        code["text"] = score.label
    obs = _base(response, key, code)
    obs["valueQuantity"] = {"value": score.value, "unit": "{score}", "system": _UCUM, "code": "{score}"}
    if score is result.total or (result.total is not None and score.key == result.total.key):
        if result.prorated:
            obs["extension"] = [{"url": PRORATED_EXTENSION, "valueBoolean": True}]
        if result.interpretation is not None:
            obs["interpretation"] = [{
                "coding": [result.interpretation.as_fhir()],
                "text": result.interpretation.display or result.interpretation.code,
            }]
        texts = [*result.notes, *result.warnings]
        if texts:
            obs["note"] = [{"text": n} for n in texts]
    return obs


def _answers(questionnaire: Json, response: Json, skip: set[str]) -> list[Json]:
    q_items = {i.get("linkId"): i for i in iter_questionnaire_items(questionnaire)}
    out = []
    seen: dict[str, int] = {}
    for item in iter_response_items(response):
        qitem = q_items.get(item.get("linkId"))
        answers = item.get("answer") or []
        if not qitem or len(answers) != 1 or qitem.get("type") in ("group", "display"):
            continue
        codes = [c for c in qitem.get("code") or [] if c.get("code")]
        if not codes or codes[0]["code"] in skip or item.get("linkId") in skip:
            continue
        value = _value(answers[0])
        if value is None:
            continue
        key = str(codes[0]["code"])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key = f"{key}-{seen[key]}"
        code: Json = {"coding": codes}
        if qitem.get("text"):
            code["text"] = qitem["text"]
        obs = _base(response, key, code)
        obs.update(value)
        out.append(obs)
    return out


def _value(answer: Json) -> Json | None:
    found = answer_value(answer)
    if found is None:
        return None
    kind, value = found
    if kind == "Coding":
        concept: Json = {"coding": [{k: v for k, v in value.items() if k != "extension"}]}
        if value.get("display"):
            concept["text"] = value["display"]
        return {"valueCodeableConcept": concept}
    if kind in ("Integer", "String", "Boolean", "Time", "DateTime", "Quantity"):
        return {f"value{kind}": value}
    if kind == "Date":
        return {"valueDateTime": value}
    if kind == "Decimal":
        return {"valueQuantity": {"value": value}}
    return None
