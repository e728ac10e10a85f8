"""The risk-alert email links to where the alert is acknowledged, and the link survives a sign-in.

Real parts: the app with the sandbox EHR served over HTTP, a real SMTP server (aiosmtpd),
a real PHQ-9 response raising the Flag and its alert, the worker's reminder pass sending
the email, and a cookie-keeping HTTP client doing the standalone SMART launch.
"""

from __future__ import annotations

import email
import re
import socket
import uuid
from email import policy
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from smart_support import Browser, absolute, browser_like_cookies, form_fields, make_app  # noqa: F401 (autouse: Secure cookies over http)
from safety_support import catalog_phq9
from sync_support import RestartableServer, free_port

from hw_fhir import outcomes
from hw_fhir.reminders import run_reminders



class Inbox:
    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.to: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.to.extend(envelope.rcpt_tos)
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.bodies.append(message.get_body(("plain",)).get_content())
        return "250 Message accepted for delivery"


@pytest.fixture
def alerting(app_config: dict[str, Any]) -> Iterator[tuple[Any, Browser, Inbox]]:
    inbox = Inbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    web = free_port()  # the public address (HW_FHIR_BASE_URL) is where the app is served
    app = make_app(app_config, smtp_port=port, base_url=f"http://127.0.0.1:{web}")
    server = RestartableServer(app, web).start()
    try:
        yield app, Browser(server.url), inbox
    finally:
        server.stop()
        app.extensions["hw_fhir"].close()
        controller.stop()


def _raise_alert(app: Any, inbox: Inbox) -> tuple[str, str]:
    """A PHQ-9 with item 9 answered: the Flag and its alert; the worker emails it."""
    services = app.extensions["hw_fhir"]
    response = dict(catalog_phq9([1, 1, 1, 1, 0, 0, 0, 0, 3]), id=f"qr-{uuid.uuid4().hex[:8]}")
    stored = services.store.update(response).resource
    recorded = outcomes.record_scores(services.store, stored, settings=services.settings)
    (flag,) = recorded.flags
    run_reminders(services, worker="w")
    (body,) = inbox.bodies
    links = re.findall(r"https?://\S+", body)
    base = services.settings.base_url.rstrip("/")
    assert links == [f"{base}/alerts/{flag['id']}"], body  # the flag's page, not the app's root
    return flag["id"], body


def test_the_alert_email_links_to_the_flag_without_phi(alerting: Any) -> None:
    app, _, inbox = alerting
    flag_id, body = _raise_alert(app, inbox)
    patient = app.extensions["hw_fhir"].store.read("Patient", "pat-ava").resource
    mrns = [i["value"] for i in patient.get("identifier") or []]
    for phi in ("Ava", "Nguyen", "pat-ava", "1991", *mrns):
        assert phi not in body
    assert not urlsplit(re.findall(r"https?://\S+", body)[0]).query


def test_the_link_works_after_a_fresh_launch_and_the_flag_can_be_acknowledged(
        alerting: Any) -> None:
    app, browser, inbox = alerting
    flag_id, body = _raise_alert(app, inbox)
    path = urlsplit(re.findall(r"https?://\S+", body)[0]).path

    # no launch in this browser: it signs in (standalone SMART launch), then comes back
    first = browser.get(path)
    assert first.status_code == 302 and urlsplit(first.headers["Location"]).path == "/launch"
    start = browser.get(first.headers["Location"])
    assert start.status_code == 302, start.text
    authorize = browser.get(start.headers["Location"])
    callback = browser.approve(authorize, user="Practitioner/dr-rivera", patient="pat-ava")
    assert callback.status_code == 302, callback.text
    back = browser.get(callback.headers["Location"])
    assert back.status_code == 302, back.text
    assert urlsplit(back.headers["Location"]).path == path  # the alert link, now with a launch
    opened = browser.get(back.headers["Location"])
    assert opened.status_code == 302, opened.text
    target = absolute(browser.base, opened.headers["Location"])
    assert urlsplit(target).path == "/clinician/patients/pat-ava"
    assert urlsplit(target).fragment == f"flag-{flag_id}"
    dashboard = browser.get(target.split("#")[0])
    assert dashboard.status_code == 200, dashboard.text
    assert f'id="flag-{flag_id}"' in dashboard.text

    # the clinician acknowledges it there
    action = re.search(rf'action="([^"]*/flags/{flag_id}/acknowledge[^"]*)"', dashboard.text)
    assert action, dashboard.text
    form = re.search(rf'<form[^>]*/flags/{flag_id}/acknowledge.*?</form>', dashboard.text, re.S)
    _, hidden = form_fields(form.group(0))
    done = browser.post(action.group(1).replace("&amp;", "&"), data={**hidden, "note": "Called"})
    assert done.status_code in (302, 303), done.text
    flag = app.extensions["hw_fhir"].store.read("Flag", flag_id).resource
    assert flag["status"] == "inactive"

    # opened again in the same browser: straight to the dashboard with the open launch
    again = browser.get(path)
    assert again.status_code == 302
    assert urlsplit(again.headers["Location"]).path == "/clinician/patients/pat-ava"


def test_a_bad_or_unknown_alert_link(alerting: Any) -> None:
    _, browser, _ = alerting
    assert browser.get("/alerts/not%20an%20id").status_code == 404
    # signed in, an unknown flag is a readable 404
    browser.ehr_launch()
    unknown = browser.get("/alerts/no-such-flag")
    assert unknown.status_code == 404 and "not here any more" in unknown.text


def test_a_launch_that_may_not_open_the_patient_is_told_so(app_config: dict[str, Any]) -> None:
    from clinician_support import PATIENT_ONLY_SCOPE, clinician_app, open_launch

    app = clinician_app(app_config, base_url="http://hw.test")
    try:
        store = app.extensions["hw_fhir"].store
        flag = store.create({"resourceType": "Flag", "status": "active", "code": {"text": "Risk"},
                             "subject": {"reference": "Patient/pat-ava"}}).stored
        ben = open_launch(app, app.test_client(), patient="pat-ben", scope=PATIENT_ONLY_SCOPE)
        refused = ben.get(f"/alerts/{flag.id}")
        assert refused.status_code == 403
        assert "another patient" in refused.get_data(as_text=True)
        assert "Ava" not in refused.get_data(as_text=True)
        ava = open_launch(app, app.test_client(), patient="pat-ava", scope=PATIENT_ONLY_SCOPE)
        opened = ava.get(f"/alerts/{flag.id}")
        assert opened.status_code == 302
        assert opened.headers["Location"].endswith(f"#flag-{flag.id}")
        assert f"launch={ava.launch_id}" in opened.headers["Location"]
    finally:
        app.extensions["hw_fhir"].close()
