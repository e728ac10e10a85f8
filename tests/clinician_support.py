"""Helpers for the clinician page tests: an app with the demo practice and library, a launch
bound to a Flask test client's browser session, form posting with the CSRF token, and
small builders of homework history (assignments, completions with real scoring).

The launch is made with the real launch store (pending → claimed → active), as the
OAuth callback would leave it; the OAuth round trip itself is covered by the SMART tests
and by the browser test.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from hw_fhir import catalog
from hw_fhir.assignment import Assignment, assign
from hw_fhir.completion import submit_response
from hw_fhir.demo import load_demo_data
from hw_fhir.library import load_catalog
from hw_fhir.outcomes import record_scores
from hw_fhir.schedule import Schedule
from hw_fhir.smart.sessions import LaunchContext, LaunchTokens, PendingLaunch, WebSessionStore
from smart_app.state import app_state

ISS = "http://localhost/fhir"
EHR_SCOPE = "launch openid fhirUser user/Patient.rs user/Practitioner.rs"
PATIENT_ONLY_SCOPE = "launch openid fhirUser patient/Patient.rs"
PHQ9 = "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0"


def clinician_app(app_config: dict[str, Any], **overrides: Any) -> Any:
    """Create the app (plain-http cookies for the test client) with demo data and the library."""
    from smart_app import create_app

    app = create_app({**app_config, "secure_cookies": False, **overrides})
    services = app.extensions["hw_fhir"]
    load_demo_data(services)
    load_catalog(services.store)
    return app


@dataclass
class Session:
    """A test client signed in through a launch: its launch id and CSRF token."""

    client: Any
    launch_id: str
    csrf: str

    def get(self, path: str, **params: Any) -> Any:
        """GET a page of this launch."""
        return self.client.get(path, query_string={"launch": self.launch_id, **params})

    def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **params: Any
    ) -> Any:
        """POST a form of this launch (with the CSRF token unless ``csrf=False``)."""
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        return self.client.post(path, data=form, query_string={"launch": self.launch_id, **params})


def open_launch(
    app: Any,
    client: Any,
    *,
    practitioner: str = "dr-rivera",
    patient: str | None = "pat-ava",
    scope: str = EHR_SCOPE,
    need_patient_banner: bool | None = False,
    style_url: str | None = None,
    user_type: str = "Practitioner",
) -> Session:
    """Bind an active launch to the client's browser session (as a finished callback does)."""
    store = app.extensions["hw_fhir"].store
    sid = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    WebSessionStore(store).save(sid, {"since": 0, "_csrf": csrf}, lifetime=3600)
    client.set_cookie("hw_fhir_session", sid, domain="localhost")
    launches = app_state(app).launcher.launches
    state = secrets.token_urlsafe(16)
    launch_id = launches.create_pending(
        sid,
        PendingLaunch(
            iss=ISS,
            client_id="hw-fhir-app",
            state=state,
            code_verifier="v" * 43,
            redirect_uri="http://localhost/callback",
            scope=scope,
            launch="l1",
        ),
    )
    launches.take_pending(state, sid)
    user = practitioner if user_type == "Practitioner" else (patient or "")
    launches.activate(
        launch_id,
        LaunchContext(
            iss=ISS,
            client_id="hw-fhir-app",
            scope=scope,
            patient=patient,
            need_patient_banner=need_patient_banner,
            smart_style_url=style_url,
            fhir_user=f"{ISS}/{user_type}/{user}",
            local_patient=patient,
            local_practitioner=practitioner if user_type == "Practitioner" else None,
        ),
        LaunchTokens(access_token="test-token", token_endpoint="http://localhost/sandbox/token"),
    )
    return Session(client, launch_id, csrf)


def snapshot(store: Any, *types: str) -> dict[str, list[tuple[str, str]]]:
    """Return (id, versionId) of every resource of the given types: compare before/after."""
    from hw_fhir.store.base import iter_all

    names = types or (
        "Task",
        "CarePlan",
        "Questionnaire",
        "QuestionnaireResponse",
        "Observation",
        "Flag",
        "CommunicationRequest",
    )
    return {t: sorted((r["id"], r["meta"]["versionId"]) for r in iter_all(store, t)) for t in names}


def phq9_answers(questionnaire: dict[str, Any], weights: list[int]) -> dict[str, Any]:
    """Return a PHQ-9 response body answering items 1–9 with the options of these weights."""
    from hw_fhir.scoring.weights import option_weight

    items = []
    for n, weight in enumerate(weights, start=1):
        qitem = next(i for i in questionnaire["item"] if i["linkId"] == f"phq9-{n}")
        option = next(o for o in _options(questionnaire, qitem) if option_weight(o) == weight)
        items.append({"linkId": f"phq9-{n}", "answer": [{"valueCoding": option["valueCoding"]}]})
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": PHQ9,
        "status": "completed",
        "item": items,
    }


def _options(questionnaire: dict[str, Any], qitem: dict[str, Any]) -> list[dict[str, Any]]:
    if qitem.get("answerOption"):
        return qitem["answerOption"]
    ref = qitem.get("answerValueSet", "").lstrip("#")
    valueset = next(r for r in questionnaire.get("contained", []) if r.get("id") == ref)
    out = []
    for c in valueset.get("expansion", {}).get("contains", []) or [
        dict(c, system=inc.get("system"))
        for inc in valueset["compose"]["include"]
        for c in inc.get("concept", [])
    ]:
        coding = {k: c[k] for k in ("system", "code", "display") if k in c}
        out.append({"valueCoding": coding, "extension": c.get("extension", [])})
    return out


def complete_phq9(
    store: Any, task: dict[str, Any], weights: list[int], *, when: datetime | None = None
) -> dict[str, Any]:
    """Submit a PHQ-9 for a Task through the domain (as the patient pages do) and score it."""
    questionnaire = catalog.get_questionnaire(PHQ9)
    patient = task["for"]["reference"]
    result = submit_response(
        store, f"Task/{task['id']}", phq9_answers(questionnaire, weights), patient=patient, now=when
    )
    recorded = record_scores(store, result.response, task=result.task, now=when)
    return recorded.response


def assign_once(
    store: Any,
    activity: str = PHQ9,
    *,
    patient: str = "pat-ava",
    due_in_days: int = 3,
    now: datetime | None = None,
    practitioner: str = "dr-rivera",
) -> dict[str, Any]:
    """Assign an activity once, due in a few days; return the Task."""
    moment = now or datetime.now(timezone.utc)
    schedule = Schedule(
        frequency="once", start=(moment + timedelta(days=due_in_days)).date(), timezone="UTC"
    )
    result = assign(
        store,
        Assignment(
            patient=patient,
            practitioner=practitioner,
            activity=activity,
            schedule=schedule,
            instructions="Fill it in.",
        ),
        now=moment,
    )
    assert result.task is not None
    return result.task


def csrf_of(page: str) -> str:
    """Return the CSRF token of the first form in a page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def today() -> date:
    """Today (UTC)."""
    return datetime.now(timezone.utc).date()


def form_values(page: str, form_id: str) -> dict[str, Any]:
    """Return the fields of a form as the browser would submit them untouched."""
    block = re.search(r'<form[^>]*id="%s".*?</form>' % form_id, page, re.S)
    assert block, f"no form {form_id}"
    html = block.group(0)
    values: dict[str, Any] = {}
    for tag in re.finditer(r"<input([^>]*)>", html):
        attrs = dict(re.findall(r'(\w[\w-]*)="([^"]*)"', tag.group(1)))
        kind = attrs.get("type", "text")
        name = attrs.get("name")
        if not name:
            continue
        if kind in ("checkbox", "radio"):
            if " checked" in tag.group(1):
                values.setdefault(name, []).append(attrs.get("value", "on"))
            continue
        values[name] = attrs.get("value", "")
    for tag in re.finditer(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S):
        values[tag.group(1)] = __import__("html").unescape(tag.group(2))
    for tag in re.finditer(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', tag.group(2)) or re.search(
            r'<option value="([^"]*)"', tag.group(2)
        )
        values[tag.group(1)] = chosen.group(1) if chosen else ""
    return {
        k: (v[0] if isinstance(v, list) and len(v) == 1 and k not in ("days",) else v)
        for k, v in values.items()
    }


def editor_form_values(page: str) -> dict[str, Any]:
    """Return the fields of the activity editor's form (``#editor-form``) as the browser would
    submit them untouched (one value per checked checkbox name, HTML entities decoded)."""
    block = re.search(r'<form[^>]*id="editor-form".*?</form>', page, re.S)
    assert block, "no editor form"
    html = block.group(0)
    values: dict[str, Any] = {}
    for tag in re.finditer(r"<input([^>]*)>", html):
        attrs = dict(re.findall(r'(\w[\w.:-]*)="([^"]*)"', tag.group(1)))
        if "name" not in attrs:
            continue
        if attrs.get("type") == "checkbox":
            if " checked" in tag.group(1):
                values[attrs["name"]] = attrs.get("value", "on")
            continue
        values[attrs["name"]] = __import__("html").unescape(attrs.get("value", ""))
    for tag in re.finditer(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S):
        values[tag.group(1)] = __import__("html").unescape(tag.group(2))
    for tag in re.finditer(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', tag.group(2)) or re.search(
            r'<option value="([^"]*)"', tag.group(2)
        )
        values[tag.group(1)] = __import__("html").unescape(chosen.group(1)) if chosen else ""
    return values
