"""Helpers for the clinical-safety tests: a FHIR client over real HTTP, PHQ-9/GAD-7 responses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

LOINC = "http://loinc.org"
WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
OUTSIDE = Path(__file__).resolve().parent.parent / "fixtures" / "outside"
#: LL358-3 answers by score.
FREQ = {0: ("LA6568-5", "Not at all"), 1: ("LA6569-3", "Several days"),
        2: ("LA6570-1", "More than half the days"), 3: ("LA6571-9", "Nearly every day")}
PHQ9_ITEM_CODES = ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
                   "44258-2", "44252-5", "44253-3", "44260-8")
GAD7_ITEM_CODES = ("69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7")


class Fhir:
    """A tiny FHIR REST client of the app's ``/fhir`` served over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/") + "/fhir"
        self.http = requests.Session()

    def post(self, resource: dict[str, Any], *, outcome: bool = False) -> requests.Response:
        headers = dict(FHIR)
        if outcome:
            headers["Prefer"] = "return=OperationOutcome"
        return self.http.post(f"{self.base}/{resource['resourceType']}", data=json.dumps(resource),
                              headers=headers, timeout=30)

    def put(self, resource: dict[str, Any]) -> requests.Response:
        return self.http.put(f"{self.base}/{resource['resourceType']}/{resource['id']}",
                             data=json.dumps(resource), headers=FHIR, timeout=30)

    def created(self, resource: dict[str, Any]) -> dict[str, Any]:
        got = self.post(resource)
        assert got.status_code in (200, 201), got.text
        return got.json()

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        got = self.http.get(f"{self.base}/{rtype}/{rid}", headers=FHIR, timeout=30)
        assert got.status_code == 200, got.text
        return got.json()

    def search(self, query: str) -> list[dict[str, Any]]:
        got = self.http.get(f"{self.base}/{query}", headers=FHIR, timeout=30)
        assert got.status_code == 200, got.text
        return [e["resource"] for e in got.json().get("entry") or []
                if e.get("search", {}).get("mode", "match") == "match"]

    def observations(self, response_id: str) -> dict[str, dict[str, Any]]:
        """The response's current Observations by their first code."""
        found = self.search(f"Observation?derived-from=QuestionnaireResponse/{response_id}"
                            "&_count=100")
        return {o["code"]["coding"][0]["code"]: o for o in found
                if o.get("status") != "entered-in-error"}

    def flags(self, patient: str) -> list[dict[str, Any]]:
        return self.search(f"Flag?subject=Patient/{patient}&status=active")


def coding(score: int, *, weight: Any = None, system: str | None = LOINC) -> dict[str, Any]:
    code, display = FREQ[score]
    out: dict[str, Any] = {"code": code, "display": display}
    if system:
        out["system"] = system
    if weight is not None:
        out["extension"] = [{"url": WEIGHT, "valueDecimal": weight}]
    return out


def response(questionnaire: str, answers: dict[str, dict[str, Any] | None], *,
             patient: str = "pat-ava", extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A completed response; ``answers`` maps linkId → the answer element (None: unanswered)."""
    items = [{"linkId": link, "answer": [answer]} for link, answer in answers.items()
             if answer is not None]
    return {"resourceType": "QuestionnaireResponse", "questionnaire": questionnaire,
            "status": "completed", "subject": {"reference": f"Patient/{patient}"},
            "authored": "2026-03-02T15:00:00Z", "item": items + list(extra or [])}


def catalog_phq9(scores: list[int], *, weight: Any = None) -> dict[str, Any]:
    """A response to the catalog PHQ-9, each answer optionally carrying a client weight."""
    return response("http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0",
                    {f"phq9-{n}": {"valueCoding": coding(s, weight=weight)}
                     for n, s in enumerate(scores, start=1)})


def total_of(resp: dict[str, Any], link_id: str) -> Any:
    """The answer value of item ``link_id`` in a response (None when absent)."""
    stack = list(resp.get("item") or [])
    while stack:
        item = stack.pop()
        if item.get("linkId") == link_id:
            for answer in item.get("answer") or []:
                for key, value in answer.items():
                    if key.startswith("value"):
                        return value.get("value") if isinstance(value, dict) else value
            return None
        stack.extend(item.get("item") or [])
        for answer in item.get("answer") or []:
            stack.extend(answer.get("item") or [])
    return None


def load_outside(name: str) -> dict[str, Any]:
    return json.loads((OUTSIDE / name).read_text(encoding="utf-8"))
