"""A QuestionnaireResponse answering a Task through /fhir is validated in full once (issue 18).

The SDC workflow validates the response as sent before it looks anything up; the
members the server then adds (identifier, subject, encounter, authored, id) are checked
on their own and the store reuses that check. Counted on real requests over real HTTP
(an observer on ``models._validated``, the full model validation), on SQLite and
PostgreSQL; invalid responses naming a real Task are refused with an OperationOutcome
before any Task is read, and nothing is written.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from hw_fhir import models

from patient_support import give_homework, snapshot
from test_task_workflow_api import (  # noqa: F401  (fixtures)
    app, app_config, base, call, phq9, post_entry, read, transaction)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, frozenset[str]]]:
    """Every full model validation: (resource type, its top-level members)."""
    seen: list[tuple[str, frozenset[str]]] = []
    real = models._validated

    def counting(resource: dict[str, Any], rtype: str) -> dict[str, Any]:
        seen.append((rtype, frozenset(resource)))
        return real(resource, rtype)

    monkeypatch.setattr(models, "_validated", counting)
    return seen


@pytest.fixture
def lookups(app: Any) -> Iterator[list[str]]:  # noqa: F811
    """The resource types the store reads or searches (an observer on the app's store)."""
    store = app.extensions["hw_fhir"].store
    seen: list[str] = []
    real_read, real_search = store.read, store.search

    def read_(rtype: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(rtype)
        return real_read(rtype, *args, **kwargs)

    def search_(rtype: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(rtype)
        return real_search(rtype, *args, **kwargs)

    store.read, store.search = read_, search_
    yield seen
    del store.read, store.search


def _responses(checks: list[tuple[str, frozenset[str]]]) -> list[frozenset[str]]:
    """The response's validations in the Task workflow's write (up to the Task's own check;
    the after-write scoring, which may store a new version with calculated answers, follows)."""
    tasks = [n for n, (rtype, _) in enumerate(checks) if rtype == "Task"]
    assert tasks, "the Task was not written"
    return [members for rtype, members in checks[:tasks[0]] if rtype == "QuestionnaireResponse"]


@pytest.mark.parametrize("status", ["completed", "in-progress"])
def test_a_task_answer_is_validated_in_full_once(app: Any, base: str, status: str,  # noqa: F811
                                                 checks: list[tuple[str, frozenset[str]]]) -> None:
    task = give_homework(app, "phq-9")
    sent = phq9(status=status, basedOn=[{"reference": f"Task/{task['id']}"}])
    del sent["authored"]  # the server adds it, with the identifier
    checks.clear()
    created = call(base, "POST", "QuestionnaireResponse", json=sent)
    assert created.status_code == 201, created.text
    assert "authored" in created.json() and "identifier" in created.json()
    assert read(base, f"Task/{task['id']}")["status"] == status
    responses = _responses(checks)
    assert [m for m in responses if "item" in m] == [frozenset(sent)]  # the response, once
    # and the server's additions with the sent primitives (no items, no unchanged complex members)
    assert [m for m in responses if "item" not in m] == [
        frozenset({"resourceType", "status", "questionnaire", "identifier", "authored"})]


def test_the_draft_put_over_is_validated_in_full_once(app: Any, base: str,  # noqa: F811
                                                      checks: list[tuple[str, frozenset[str]]]) -> None:
    task = give_homework(app, "phq-9")
    draft = call(base, "POST", "QuestionnaireResponse",
                 json=phq9(status="in-progress", basedOn=[{"reference": f"Task/{task['id']}"}]))
    assert draft.status_code == 201, draft.text
    sent = phq9(id=draft.json()["id"], basedOn=[{"reference": f"Task/{task['id']}"}])
    checks.clear()
    put = call(base, "PUT", f"QuestionnaireResponse/{sent['id']}", json=sent)
    assert put.status_code == 200, put.text
    assert read(base, f"Task/{task['id']}")["status"] == "completed"
    assert len([m for m in _responses(checks) if "item" in m]) == 1


def test_a_task_answer_in_a_transaction_is_validated_in_full_once(
        app: Any, base: str, checks: list[tuple[str, frozenset[str]]]) -> None:  # noqa: F811
    task = give_homework(app, "phq-9")
    sent = phq9(basedOn=[{"reference": f"Task/{task['id']}"}])
    checks.clear()
    done = call(base, "POST", "", json=transaction(post_entry(sent, "urn:uuid:4b0e9f1c-1c1e-4e55-9d0a-"
                                                                    "2f6f3c9d8e71")))
    assert done.status_code == 200, done.text
    assert read(base, f"Task/{task['id']}")["status"] == "completed"
    assert [m for m in _responses(checks) if "item" in m] == [frozenset(sent)]


@pytest.mark.parametrize("change", [
    {"item": "not a list"},
    {"item": [{"linkId": "1", "answer": [{"valueInteger": "two"}]}]},
    {"authored": "yesterday"},
    {"meta": {"versionId": 3}},  # a member the server drops: refused all the same
    {"encounter": "Encounter/1"},
    {"status": "done"},
    {"subject": {"reference": 7}},
])
def test_invalid_task_answers_are_refused_before_any_lookup(
        app: Any, base: str, change: dict[str, Any], lookups: list[str]) -> None:  # noqa: F811
    task = give_homework(app, "phq-9")
    before = snapshot(app)
    lookups.clear()
    sent = dict(phq9(basedOn=[{"reference": f"Task/{task['id']}"}]), **change)
    refused = call(base, "POST", "QuestionnaireResponse", json=sent)
    assert refused.status_code == 400, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert "Task" not in lookups and "Questionnaire" not in lookups
    assert snapshot(app) == before
    assert read(base, f"Task/{task['id']}")["status"] == "requested"


@pytest.mark.parametrize("change", [{"authored": "yesterday"}, {"item": [{"linkId": 1}]}])
def test_invalid_task_answers_in_a_transaction_are_refused(
        app: Any, base: str, change: dict[str, Any], lookups: list[str]) -> None:  # noqa: F811
    task = give_homework(app, "phq-9")
    before = snapshot(app)
    lookups.clear()
    sent = dict(phq9(basedOn=[{"reference": f"Task/{task['id']}"}]), **change)
    refused = call(base, "POST", "", json=transaction(post_entry(sent)))
    assert refused.status_code == 400, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert "Task" not in lookups and "Questionnaire" not in lookups
    assert snapshot(app) == before
