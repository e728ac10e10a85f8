"""Encounter and fhirContext from the launch: recorded in the launch context, put on the Tasks
assigned in that launch (``Task.encounter``) and on their responses (``QR.encounter``); the
sandbox EHR supplies an encounter when one is chosen; a launch without one keeps working.

Launches run over real HTTP against the sandbox EHR.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from clinician_support import form_values, phq9_answers
from conftest import serve
from hw_fhir import library
from hw_fhir.completion import submit_response
from hw_fhir.demo import demo_encounters
from hw_fhir.smart.sessions import Launch, LaunchContext
from hw_fhir.task_workflow import write_response
from smart_app.state import app_state
from smart_support import Browser, browser_like_cookies, make_app  # noqa: F401  (autouse fixture)


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[tuple[Any, Browser]]:
    """The sandbox app with the library, served over HTTP, and a browser of it."""
    app = make_app(app_config)
    library.load_catalog(app.extensions["hw_fhir"].store)
    server = serve(app)
    yield app, Browser(server.url)
    server.stop()
    app.extensions["hw_fhir"].close()


def _assign_phq9(browser: Browser, app: Any, launch_id: str) -> str:
    """Assign PHQ-9 on the clinician pages (its default schedule, a plan); return a Task's id."""
    path = f"/clinician/patients/pat-ava/assign/phq-9?launch={launch_id}"
    page = browser.get(path)
    assert page.status_code == 200, page.text
    done = browser.post(path, data=form_values(page.text, "assign-form"))
    assert done.status_code in (302, 303), done.text
    kind, rid = done.headers["Location"].split("/assigned/")[1].split("?")[0].split("/")
    if kind == "Task":
        return rid
    store = app.extensions["hw_fhir"].store
    plan = store.read("CarePlan", rid).resource
    assert "encounter" not in plan or plan["encounter"]["reference"].startswith("Encounter/")
    tasks = store.search("Task", [("based-on", f"CarePlan/{rid}"), ("_sort", "period")]).matches
    assert tasks
    return tasks[0].id


def test_encounter_of_the_launch_goes_on_task_and_response(served: tuple[Any, Browser]) -> None:
    app, browser = served
    store = app.extensions["hw_fhir"].store
    launch = browser.launch_app(browser.open_ehr_chart("dr-rivera", "pat-ava", encounter="enc-pat-ava"))
    recorded = app_state(app).launcher.launches.reload(
        Launch(launch.launch_id, None, None)).context  # type: ignore[arg-type]
    assert recorded.encounter == "enc-pat-ava"
    assert recorded.fhir_context == [{"reference": "Encounter/enc-pat-ava"}]
    task = store.read("Task", _assign_phq9(browser, app, launch.launch_id)).resource
    assert task["encounter"] == {"reference": "Encounter/enc-pat-ava"}

    questionnaire = library.resolve_questionnaire(store, "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0")
    done = submit_response(store, task["id"], phq9_answers(questionnaire, [0] * 9),
                           patient="Patient/pat-ava")
    assert done.response["encounter"] == {"reference": "Encounter/enc-pat-ava"}


def test_response_through_the_api_takes_the_tasks_encounter(served: tuple[Any, Browser]) -> None:
    app, browser = served
    store = app.extensions["hw_fhir"].store
    launch = browser.launch_app(browser.open_ehr_chart("dr-rivera", "pat-ava", encounter="enc-pat-ava"))
    task_id = _assign_phq9(browser, app, launch.launch_id)
    questionnaire = library.resolve_questionnaire(store, "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0")
    sent = {"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0",
            "subject": {"reference": "Patient/pat-ava"},
            "basedOn": [{"reference": f"Task/{task_id}"}],
            **phq9_answers(questionnaire, [1] * 9)}
    written = write_response(store, sent)
    assert written is not None
    assert written.resource["encounter"] == {"reference": "Encounter/enc-pat-ava"}
    assert store.read("Task", task_id).resource["status"] == "completed"


def test_a_pathway_assigned_in_the_launch_carries_its_encounter(served: tuple[Any, Browser]) -> None:
    app, browser = served
    store = app.extensions["hw_fhir"].store
    launch = browser.launch_app(browser.open_ehr_chart("dr-rivera", "pat-ava", encounter="enc-pat-ava"))
    path = f"/clinician/patients/pat-ava/pathways/insomnia-4-weeks?launch={launch.launch_id}"
    page = browser.get(path)
    assert page.status_code == 200, page.text
    done = browser.post(path, data=form_values(page.text, "pathway-form"))
    assert done.status_code == 303, done.text
    plan_id = done.headers["Location"].split("/CarePlan/")[1].split("?")[0]
    assert store.read("CarePlan", plan_id).resource["encounter"] == {"reference": "Encounter/enc-pat-ava"}
    tasks = store.search("Task", [("based-on", f"CarePlan/{plan_id}")]).resources
    assert tasks and all(t["encounter"] == {"reference": "Encounter/enc-pat-ava"} for t in tasks)


def test_a_launch_without_encounter_keeps_working(served: tuple[Any, Browser]) -> None:
    app, browser = served
    store = app.extensions["hw_fhir"].store
    launch = browser.launch_app(browser.open_ehr_chart("dr-rivera", "pat-ava"))
    task = store.read("Task", _assign_phq9(browser, app, launch.launch_id)).resource
    assert "encounter" not in task


def test_sandbox_refuses_an_encounter_of_another_patient(served: tuple[Any, Browser]) -> None:
    _, browser = served
    from smart_support import form_fields

    action, hidden = form_fields(browser.get("/sandbox/").text, "ehr-launch-form")
    refused = browser.post(action, data={**hidden, "practitioner": "Practitioner/dr-rivera",
                                         "patient": "pat-ava", "encounter": "enc-pat-ben"})
    assert refused.status_code == 400
    assert "encounter" in refused.text.lower()


def test_sandbox_lists_the_demo_encounters(served: tuple[Any, Browser]) -> None:
    _, browser = served
    page = browser.get("/sandbox/").text
    for encounter in demo_encounters():
        assert f'value="{encounter["id"]}"' in page


def test_fhir_context_alone_names_the_encounter() -> None:
    base = {"iss": "https://ehr.example/fhir", "client_id": "c", "scope": "launch"}
    assert LaunchContext(**base).launch_encounter is None
    assert LaunchContext(**base, encounter="e1",
                         fhir_context=[{"reference": "Encounter/e2"}]).launch_encounter == "e1"
    assert LaunchContext(**base, fhir_context=[{"reference": "DocumentReference/d"},
                                               {"reference": "Encounter/e2"}]).launch_encounter == "e2"
    assert LaunchContext(**base, fhir_context=[{"canonical": "http://x/Questionnaire/q"}]
                         ).launch_encounter is None


def test_an_external_ehrs_encounter_is_referenced_where_it_lives() -> None:
    from hw_fhir.assignment import encounter_reference
    from hw_fhir.errors import InvalidInput
    from hw_fhir.sync.outbox import EhrTarget, write_back_copy

    ehr = LaunchContext(iss="https://ehr.example/fhir/", client_id="c", scope="launch", encounter="e7")
    assert ehr.encounter_reference("http://127.0.0.1:5100/fhir") == "https://ehr.example/fhir/Encounter/e7"
    assert ehr.encounter_reference("https://ehr.example/fhir") == "Encounter/e7"  # the sandbox case
    assert encounter_reference("https://ehr.example/fhir/Encounter/e7") == \
        "https://ehr.example/fhir/Encounter/e7"
    assert encounter_reference("e7") == "Encounter/e7"
    with pytest.raises(InvalidInput):
        encounter_reference("https://ehr.example/fhir/Patient/p1")
    # written back to that EHR, the reference is its own Encounter/<id> again
    target = EhrTarget.from_config({"name": "x", "base_url": "https://ehr.example/fhir"})
    response = {"resourceType": "QuestionnaireResponse", "id": "r1", "status": "completed",
                "encounter": {"reference": "https://ehr.example/fhir/Encounter/e7"},
                "basedOn": [{"reference": "https://elsewhere.example/fhir/CarePlan/c1"}]}
    copy = write_back_copy(response, target, lambda t, i: None)
    assert copy["encounter"] == {"reference": "Encounter/e7"}
    assert copy["basedOn"] == [{"reference": "https://elsewhere.example/fhir/CarePlan/c1"}]
