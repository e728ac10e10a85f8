"""models.validation_reused: a resource passes validation once per block, unless it changed."""

from __future__ import annotations

from typing import Any

import pytest

from hw_fhir import models
from hw_fhir.errors import InvalidResource


def _response() -> dict[str, Any]:
    return {"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": "http://example.org/Questionnaire/q",
            "item": [{"linkId": "1", "answer": [{"valueInteger": 2}]}]}


@pytest.fixture
def full_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = models._validated

    def counting(resource: dict[str, Any], rtype: str) -> dict[str, Any]:
        seen.append(rtype)
        return real(resource, rtype)

    monkeypatch.setattr(models, "_validated", counting)
    return seen


def test_outside_the_block_every_call_validates(full_checks: list[str]) -> None:
    response = _response()
    models.validate(response)
    models.validate(response)
    assert len(full_checks) == 2


def test_the_same_unchanged_object_is_validated_once(full_checks: list[str]) -> None:
    response = _response()
    with models.validation_reused():
        first = models.validate(response, resource_type="QuestionnaireResponse")
        second = models.validate(response)
    assert len(full_checks) == 1
    assert first == second == response and second is not response


def test_a_changed_object_is_validated_again_and_refused(full_checks: list[str]) -> None:
    response = _response()
    with models.validation_reused():
        models.validate(response)
        response["item"][0]["answer"][0] = {"valueInteger": "two"}
        with pytest.raises(InvalidResource):
            models.validate(response)
    assert len(full_checks) == 2


def test_an_equal_other_object_is_validated_again(full_checks: list[str]) -> None:
    with models.validation_reused():
        models.validate(_response())
        models.validate(_response())
    assert len(full_checks) == 2


def test_the_expected_type_is_still_checked(full_checks: list[str]) -> None:
    response = _response()
    with models.validation_reused():
        models.validate(response)
        with pytest.raises(InvalidResource):
            models.validate(response, resource_type="Observation")


def test_an_invalid_resource_is_never_remembered(full_checks: list[str]) -> None:
    response = dict(_response(), status="finished-ish")
    with models.validation_reused():
        for _ in range(2):
            with pytest.raises(InvalidResource):
                models.validate(response)
    assert len(full_checks) == 2
