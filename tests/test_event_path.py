"""One event path: the domain events are the pluggy hooks, and every built-in reaction is a
``default_*`` plugin implementing one (issue 21)."""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hw_fhir import default_plans, events as events_module, hookspecs, library
from hw_fhir.errors import UnknownEvent, WrongEventArguments
from hw_fhir.events import EVENTS, Events, event_arguments
from hw_fhir.outcomes import listener

from outcomes_support import instrument_response
from patient_support import give_homework, patient_app
from reminder_support import announce, jobs, make_patient, make_services, make_task

PHQ9 = "http://hw-fhir.org/fhir/Questionnaire/phq-9"


@pytest.fixture
def services(tmp_path):
    services = make_services(tmp_path)
    library.load_catalog(services.store)
    yield services
    services.close()


def _completed(services: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    store = services.store
    response = store.create(instrument_response("phq-9", [1, 1, 0, 2, 0, 1, 0, 0, 0])).resource
    questionnaire = store.search("Questionnaire", [("url", PHQ9)]).resources[0]
    return response, questionnaire


def _derived(services: Any, response: dict[str, Any]) -> list[dict[str, Any]]:
    return services.store.search(
        "Observation", [("derived-from", f"QuestionnaireResponse/{response['id']}")]).resources


# -- the publisher has no event table of its own -------------------------------------------


def test_the_events_and_their_arguments_are_the_hookspecs():
    names = [spec.__name__ for spec in hookspecs.DOMAIN_EVENTS]
    assert list(EVENTS) == names
    for spec in hookspecs.DOMAIN_EVENTS:
        params = [p for p in inspect.signature(spec).parameters if p != "services"]
        assert list(event_arguments(spec.__name__)) == params
    source = inspect.getsource(events_module)
    for spec in hookspecs.DOMAIN_EVENTS:  # no argument list written out again in events.py
        params = tuple(inspect.signature(spec).parameters)
        assert repr(params[:2]) not in source and '"previous_status"' not in source


def test_unknown_events_and_wrong_arguments_are_refused_from_the_error_tree():
    events = Events()
    with pytest.raises(UnknownEvent):
        events.publish("task_deleted", store=None, task={})
    with pytest.raises(ValueError):  # the builtin stays a base
        events.subscribe("task_deleted", lambda task: None)
    with pytest.raises(WrongEventArguments):
        events.publish("task_created", store=None)
    with pytest.raises(TypeError):
        events.subscribe("task_created", lambda nope: None)


def test_publish_calls_the_hook_with_services(services):
    heard = []
    services.events.subscribe("task_created", lambda task, services: heard.append(services))
    services.events.publish("task_created", store=services.store, task={"id": "t1"})
    assert heard == [services]


# -- each built-in reaction runs through its hook ------------------------------------------


def test_scoring_on_completion_is_the_default_scoring_plugin(services):
    response, questionnaire = _completed(services)
    services.events.publish("response_completed", store=services.store, response=response,
                            task={"id": "t1", "status": "completed"}, questionnaire=questionnaire,
                            amended=False)
    assert len(_derived(services, response)) > 0

    services.plugins.unregister(name="hw_fhir.default_scoring")
    other, _ = _completed(services)
    services.events.publish("response_completed", store=services.store, response=other,
                            task={"id": "t2", "status": "completed"}, questionnaire=questionnaire,
                            amended=False)
    assert _derived(services, other) == []


def test_plan_release_on_completion_is_the_default_plans_plugin(services, monkeypatch):
    calls = []
    monkeypatch.setattr(default_plans, "release_after_completion",
                        lambda store, task, **kw: calls.append((task["id"], kw)))
    task = {"id": "t1", "status": "completed",
            "basedOn": [{"reference": "CarePlan/p1"}]}
    response, questionnaire = _completed(services)
    services.events.publish("response_completed", store=services.store, response=response,
                            task=task, questionnaire=questionnaire, amended=False)
    assert calls == [("t1", {"amended": False,
                             "horizon_days": services.settings.materialize_horizon_days,
                             "events": services.events})]
    services.plugins.unregister(name="hw_fhir.default_plans")
    services.events.publish("response_completed", store=services.store, response=response,
                            task=task, questionnaire=questionnaire, amended=False)
    assert len(calls) == 1


def test_reminders_follow_the_task_through_the_default_reminders_plugin(services):
    """task_created queues the Task's reminder planning; its end cancels it (the real queue)."""
    due = datetime.now(timezone.utc) + timedelta(days=2)
    make_patient(services.store, "pat-ev", email="ev@example.org")
    task = make_task(services.store, "pat-ev", due=due, channel="email")
    announce(services, task)
    (plan,) = jobs(services, task_id=task["id"], kind="plan")
    assert plan.status == "pending"
    ended = services.store.update(dict(task, status="cancelled")).resource
    services.events.publish("task_status_changed", store=services.store, task=ended,
                            previous_status="requested")
    assert [job.status for job in jobs(services, task_id=task["id"], kind="plan")] == ["cancelled"]
    assert jobs(services, task_id=task["id"], kind="close")

    services.plugins.unregister(name="hw_fhir.default_reminders")
    other = make_task(services.store, "pat-ev", due=due, channel="email")
    announce(services, other)
    assert jobs(services, task_id=other["id"]) == []


def test_a_listener_is_an_ad_hoc_plugin_called_before_the_built_ins(services):
    order = []
    listener = services.events.subscribe("task_created", lambda task: order.append("listener"))
    impls = [i.plugin_name for i in reversed(services.plugins.hook.task_created.get_hookimpls())]
    assert impls[0].startswith("hw_fhir.events.listener-")
    assert impls[1] == "hw_fhir.default_reminders"
    assert services.events.listeners("task_created") == [listener]
    services.events.unsubscribe("task_created", listener)
    assert services.events.listeners("task_created") == []
    assert len(services.plugins.hook.task_created.get_hookimpls()) == 1


def test_subscribing_the_scorer_on_the_running_publisher_does_not_score_twice(services):
    listener.subscribe(services.events, settings=services.settings)
    assert services.events.listeners("response_completed") == []


# -- a response completed through /fhir is scored once -----------------------------------------


def test_a_response_completed_through_fhir_is_scored_once(tmp_path: Path, monkeypatch):
    app = patient_app({"TESTING": True, "instance_path": str(tmp_path / "instance"),
                       "database_url": f"sqlite:///{tmp_path / 'app.db'}", "open_api": True,
                       "secret_key": "test-secret"})
    try:
        scored = []
        real = listener.score_quietly

        def counting(store, response, **kwargs):
            scored.append(response.get("id"))
            return real(store, response, **kwargs)

        monkeypatch.setattr(listener, "score_quietly", counting)
        task = give_homework(app, "phq-9")
        sent = dict(instrument_response("phq-9", [1, 1, 0, 2, 0, 1, 0, 0, 0]),
                    basedOn=[{"reference": f"Task/{task['id']}"}])
        created = app.test_client().post("/fhir/QuestionnaireResponse", json=sent,
                                         headers={"Accept": "application/fhir+json"})
        assert created.status_code == 201, created.get_data(as_text=True)
        rid = created.get_json()["id"]
        assert scored == [rid]
        store = app.extensions["hw_fhir"].store
        assert store.read("Task", task["id"]).resource["status"] == "completed"
        assert store.search("Observation", [("derived-from", f"QuestionnaireResponse/{rid}")]).resources
    finally:
        app.extensions["hw_fhir"].close()
