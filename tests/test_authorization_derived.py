"""Authorization of everything derived from data, over real HTTP with sandbox-issued tokens:
Subscription notifications, conditional criteria, reserved identifier systems, and what
patient/ scopes may not write (Flags, clinician-only settings)."""

from __future__ import annotations

from typing import Any

import pytest
from smart_support import Browser, fhir, make_app, secure_cookies_over_http, token_for

from hw_fhir.completion import RESPONSE_TASK_SYSTEM
from hw_fhir.review import SHARE_SCORES_EXTENSION
from hw_fhir.sync.subscriptions import TOPIC_BASE, run_subscriptions

from conftest import serve
from sync_support import Listener

SESSION_NOTE = "http://hw-fhir.org/fhir/sid/session-note"
OCCURRENCE = "http://hw-fhir.org/fhir/sid/task-occurrence"


@pytest.fixture(autouse=True)
def browser_like_cookies():
    with secure_cookies_over_http():
        yield


@pytest.fixture
def served(app_config: dict[str, Any]):
    app = make_app(app_config, egress_allow="127.0.0.1")
    server = serve(app)
    yield app, Browser(server.url)
    server.stop()
    app.extensions["hw_fhir"].close()


def _patient(browser: Browser, scope: str, patient: str = "pat-ava") -> str:
    return token_for(browser, f"launch/patient {scope}", user=f"Patient/{patient}")["access_token"]


def _clinician(browser: Browser, scope: str) -> str:
    return token_for(browser, scope, user="Practitioner/dr-rivera")["access_token"]


def _task(patient: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "status": "requested", "intent": "order",
            "code": {"text": "complete questionnaire"}, "for": {"reference": f"Patient/{patient}"},
            **extra}


def _flag(patient: str) -> dict[str, Any]:
    return {"resourceType": "Flag", "status": "active", "code": {"text": "suicide risk"},
            "subject": {"reference": f"Patient/{patient}"}}


# ------------------------------------------------------------- Subscriptions


def _flag_subscription(endpoint: str) -> dict[str, Any]:
    return {"resourceType": "Subscription", "status": "requested", "reason": "alerts",
            "criteria": f"{TOPIC_BASE}/flag-created",
            "channel": {"type": "rest-hook", "endpoint": endpoint,
                        "payload": "application/fhir+json"}}


def test_a_subscriber_is_not_notified_of_resources_its_scopes_cannot_read(served):
    app, browser = served
    listener = Listener().start()
    try:
        blind = _clinician(browser, "user/Subscription.cruds user/Patient.rs")
        seeing = _clinician(browser, "user/Subscription.cruds user/Flag.rs")
        created = {}
        for name, token in (("blind", blind), ("seeing", seeing)):
            sub = _flag_subscription(f"{listener.url.rsplit('/', 1)[0]}/{name}")
            sub["extension"] = [{"url": "http://hw-fhir.org/fhir/StructureDefinition/subscriber-grant",
                                 "valueString": '{"scope": "system/*.rs"}'}]  # forged: replaced
            r = fhir(browser.base, token, "POST", "Subscription", json=sub)
            assert r.status_code == 201, r.text
            created[name] = r.json()["id"]
        services = app.extensions["hw_fhir"]
        run_subscriptions(services)  # handshakes
        flag = services.store.create(_flag("pat-ava")).stored
        run_subscriptions(services)
        bodies = {name: [r.body for r in listener.received if r.path.endswith(name)]
                  for name in created}
    finally:
        listener.stop()
    assert bodies["blind"] and bodies["seeing"]  # both handshakes went out
    assert f"Flag/{flag.id}" in str(bodies["seeing"])
    assert f"Flag/{flag.id}" not in str(bodies["blind"])
    assert "event-notification" not in str(bodies["blind"])


# ------------------------------------------------------ conditional criteria


@pytest.mark.parametrize("bens_task", [True, False])
def test_if_none_exist_is_evaluated_within_the_patients_compartment(served, bens_task):
    app, browser = served
    store = app.extensions["hw_fhir"].store
    if bens_task:
        store.create(_task("pat-ben", identifier=[{"system": "urn:x", "value": "ben-1"}]))
    token = _patient(browser, "patient/Task.cruds")
    r = fhir(browser.base, token, "POST", "Task", json=_task("pat-ava"),
             headers={"If-None-Exist": "patient=Patient/pat-ben&status=requested"})
    assert r.status_code == 201, r.text  # the same answer whether Ben has one or not
    r2 = fhir(browser.base, token, "POST", "Task", json=_task("pat-ava"),
              headers={"If-None-Exist": "identifier=urn:x|ben-1"})
    assert r2.status_code == 201 and "pat-ben" not in r2.text
    # within the compartment, the conditional create still finds the patient's own match
    own = fhir(browser.base, token, "POST", "Task",
               json=_task("pat-ava", identifier=[{"system": "urn:x", "value": "ava-1"}]))
    assert own.status_code == 201
    again = fhir(browser.base, token, "POST", "Task", json=_task("pat-ava"),
                 headers={"If-None-Exist": "identifier=urn:x|ava-1"})
    assert again.status_code == 200 and again.json()["id"] == own.json()["id"]


# ------------------------------------------------------ reserved identifiers


def test_reserved_identifier_systems_cannot_be_planted_through_the_api(served):
    app, browser = served
    store = app.extensions["hw_fhir"].store
    ava_task = store.create(_task("pat-ava")).stored.id
    ben = _patient(browser, "patient/Communication.cruds patient/QuestionnaireResponse.cruds",
                   patient="pat-ben")
    note = {"resourceType": "Communication", "status": "completed",
            "subject": {"reference": "Patient/pat-ben"},
            "identifier": [{"system": SESSION_NOTE, "value": "Patient/pat-ava"}],
            "payload": [{"contentString": "planted"}]}
    r = fhir(browser.base, ben, "POST", "Communication", json=note)
    assert r.status_code == 403 and SESSION_NOTE in r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    response = {"resourceType": "QuestionnaireResponse", "status": "in-progress",
                "subject": {"reference": "Patient/pat-ben"},
                "identifier": {"system": RESPONSE_TASK_SYSTEM, "value": ava_task}}
    r = fhir(browser.base, ben, "POST", "QuestionnaireResponse", json=response)
    assert r.status_code == 403 and RESPONSE_TASK_SYSTEM in r.text, r.text
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": note, "request": {"method": "POST", "url": "Communication"}}]}
    assert fhir(browser.base, ben, "POST", "", json=bundle).status_code == 403
    # even a practice-wide clinician token cannot add one
    clinician = _clinician(browser, "user/Communication.cruds")
    assert fhir(browser.base, clinician, "POST", "Communication", json=note).status_code == 403
    assert store.search("Communication", [("identifier", f"{SESSION_NOTE}|Patient/pat-ava")]).matches == []


def test_a_client_may_keep_a_reserved_identifier_hw_fhir_wrote(served):
    app, browser = served
    store = app.extensions["hw_fhir"].store
    task = store.create(_task("pat-ava", identifier=[{"system": OCCURRENCE,
                                                      "value": "plan-1/a/1"}])).stored.resource
    token = _clinician(browser, "user/Task.cruds")
    kept = fhir(browser.base, token, "PUT", f"Task/{task['id']}", json={**task, "status": "cancelled"})
    assert kept.status_code == 200, kept.text
    changed = fhir(browser.base, token, "PUT", f"Task/{task['id']}", json={
        **task, "identifier": [{"system": OCCURRENCE, "value": "plan-2/a/1"}]})
    assert changed.status_code == 403


# ------------------------------------------------- patient/ scopes and Flags


def test_patient_scopes_cannot_write_flags_or_clinician_only_settings(served):
    app, browser = served
    store = app.extensions["hw_fhir"].store
    flag = store.create(_flag("pat-ava")).stored.id
    token = _patient(browser, "patient/*.cruds")
    assert fhir(browser.base, token, "GET", f"Flag/{flag}").status_code == 200
    assert fhir(browser.base, token, "DELETE", f"Flag/{flag}").status_code == 403
    assert store.read("Flag", flag).resource["status"] == "active"
    assert fhir(browser.base, token, "POST", "Flag", json=_flag("pat-ava")).status_code == 403
    assert fhir(browser.base, token, "PUT", f"Flag/{flag}",
                json={**_flag("pat-ava"), "id": flag, "status": "inactive"}).status_code == 403
    me = fhir(browser.base, token, "GET", "Patient/pat-ava").json()
    shared = {**me, "extension": [*me.get("extension", []),
                                  {"url": SHARE_SCORES_EXTENSION, "valueBoolean": True}]}
    r = fhir(browser.base, token, "PUT", "Patient/pat-ava", json=shared)
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    plain = fhir(browser.base, token, "PUT", "Patient/pat-ava",
                 json={**me, "gender": me.get("gender", "unknown")})
    assert plain.status_code == 200, plain.text
    clinician = _clinician(browser, "user/Patient.cruds user/Flag.cruds")
    assert fhir(browser.base, clinician, "PUT", "Patient/pat-ava", json=shared).status_code == 200
    assert fhir(browser.base, clinician, "DELETE", f"Flag/{flag}").status_code in (200, 204)


# ------------------------------------------------ user/ scopes: my patients only


@pytest.fixture
def my_patients_app(app_config: dict[str, Any]):
    app = make_app(app_config, user_access="my-patients")
    store = app.extensions["hw_fhir"].store
    store.update({"resourceType": "Patient", "id": "mine-1",
                  "generalPractitioner": [{"reference": "Practitioner/dr-rivera"}]})
    store.update({"resourceType": "Patient", "id": "mine-2"})
    store.update({"resourceType": "Patient", "id": "other-1",
                  "generalPractitioner": [{"reference": "Practitioner/dr-other"}]})
    tasks = {
        "mine-2": store.create(_task("mine-2", requester={"reference": "Practitioner/dr-rivera"})).stored.id,
        "other-1": store.create(_task("other-1", requester={"reference": "Practitioner/dr-other"})).stored.id,
    }
    server = serve(app)
    yield app, Browser(server.url), tasks
    server.stop()
    app.extensions["hw_fhir"].close()


def test_my_patients_policy_limits_user_scopes_to_the_clinicians_patients(my_patients_app):
    app, browser, tasks = my_patients_app
    token = _clinician(browser, "user/Patient.rs user/Task.cruds")
    assert fhir(browser.base, token, "GET", "Patient/mine-1").status_code == 200
    assert fhir(browser.base, token, "GET", "Patient/mine-2").status_code == 200
    assert fhir(browser.base, token, "GET", "Patient/other-1").status_code == 403
    found = fhir(browser.base, token, "GET", "Patient?_id=mine-1,mine-2,other-1").json()
    assert {e["resource"]["id"] for e in found.get("entry", [])} == {"mine-1", "mine-2"}
    listed = fhir(browser.base, token, "GET", "Task?_include=Task:patient&_total=accurate").json()
    ids = {e["resource"]["id"] for e in listed.get("entry", [])}
    assert tasks["mine-2"] in ids and tasks["other-1"] not in ids and "other-1" not in ids
    assert fhir(browser.base, token, "GET", f"Task/{tasks['other-1']}").status_code == 403
    assert fhir(browser.base, token, "POST", "Task", json=_task("other-1")).status_code == 403
    assert fhir(browser.base, token, "POST", "Task", json=_task("mine-1")).status_code == 201
    assert fhir(browser.base, token, "DELETE", f"Task/{tasks['other-1']}").status_code == 403
    assert app.extensions["hw_fhir"].store.read("Task", tasks["other-1"])


def test_the_practice_policy_is_the_default(served):
    app, browser = served
    store = app.extensions["hw_fhir"].store
    store.update({"resourceType": "Patient", "id": "other-1",
                  "generalPractitioner": [{"reference": "Practitioner/dr-other"}]})
    token = _clinician(browser, "user/Patient.rs")
    assert fhir(browser.base, token, "GET", "Patient/other-1").status_code == 200


def test_an_unknown_user_access_policy_is_refused_at_start_up():
    from hw_fhir.config import load_settings
    from hw_fhir.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="HW_FHIR_USER_ACCESS"):
        load_settings({}, user_access="everyone")


def test_my_patients_reach_is_kept_by_exports_and_subscriptions(my_patients_app):
    from hw_fhir.smart.policy import Grant
    from hw_fhir.smart.subscriber import SUBSCRIBER_GRANT, subscriber_policy
    from hw_fhir.sync.export import ExportAccess

    app, browser, tasks = my_patients_app
    store = app.extensions["hw_fhir"].store
    token = _clinician(browser, "user/Subscription.cruds user/Task.rs")
    r = fhir(browser.base, token, "POST", "Subscription",
             json={"resourceType": "Subscription", "status": "off", "reason": "x",
                   "criteria": f"{TOPIC_BASE}/task-status",
                   "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.org/x"}})
    assert r.status_code == 201, r.text
    stamp = next(e["valueString"] for e in r.json()["extension"] if e["url"] == SUBSCRIBER_GRANT)
    policy = subscriber_policy(stamp)
    assert policy.allows_any_read(store.read("Task", tasks["mine-2"]).resource)
    assert not policy.allows_any_read(store.read("Task", tasks["other-1"]).resource)

    grant = Grant.from_token("user/Task.rs", "app", {"fhirUser": "Practitioner/dr-rivera"})
    from dataclasses import replace

    access = ExportAccess.from_json(ExportAccess.from_grant(
        replace(grant, patients=frozenset({"mine-2"}))).to_json())
    assert access is not None
    assert access.policy().allows_any_read(store.read("Task", tasks["mine-2"]).resource)
    assert not access.policy().allows_any_read(store.read("Task", tasks["other-1"]).resource)
