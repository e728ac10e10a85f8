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


def _amended(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def test_an_amended_copy_is_checked_by_what_changed(full_checks: list[str]) -> None:
    base = _response()
    with models.validation_reused():
        models.validate(base)
        final = _amended(base, identifier={"system": "urn:x", "value": "1"},
                         authored="2026-03-02T15:00:00Z", subject={"reference": "Patient/p"})
        assert models.validated_as_amended(final, base)
        models.validate(final)  # the store's check: reused
    assert full_checks == ["QuestionnaireResponse", "QuestionnaireResponse"]


@pytest.mark.parametrize("changes", [
    {"authored": "yesterday"},
    {"subject": {"reference": 7}},
    {"identifier": [{"system": "urn:x"}]},  # 0..1: not a list
    {"status": "done"},
    {"id": "not an id!"},
])
def test_an_invalid_amendment_is_refused(full_checks: list[str], changes: dict[str, Any]) -> None:
    base = _response()
    with models.validation_reused():
        models.validate(base)
        with pytest.raises(InvalidResource):
            models.validated_as_amended(_amended(base, **changes), base)


def test_removing_a_required_member_is_refused(full_checks: list[str]) -> None:
    base = _response()
    with models.validation_reused():
        models.validate(base)
        with pytest.raises(InvalidResource):
            models.validated_as_amended({k: v for k, v in base.items() if k != "status"}, base)


def test_choices_are_checked_together() -> None:
    base = {"resourceType": "Observation", "status": "final", "code": {"text": "mood"},
            "valueQuantity": {"value": 3}}
    with models.validation_reused():
        models.validate(base)
        with pytest.raises(InvalidResource):  # value[x] twice: the unchanged one is checked too
            models.validated_as_amended(_amended(base, valueString="three"), base)
    fine = {k: v for k, v in base.items() if k != "valueQuantity"} | {"valueString": "three"}
    with models.validation_reused():
        models.validate(base)
        assert models.validated_as_amended(fine, base)


def test_nothing_is_done_unless_the_base_passed_in_this_block(full_checks: list[str]) -> None:
    base = _response()
    final = _amended(base, authored="yesterday")
    assert not models.validated_as_amended(final, base)  # outside a block
    with models.validation_reused():
        assert not models.validated_as_amended(final, base)  # base never validated here
        models.validate(base)
        base["item"][0]["answer"][0] = {"valueInteger": "two"}  # changed since it passed
        assert not models.validated_as_amended(_amended(base, status="completed"), base)
    assert full_checks == ["QuestionnaireResponse"]
