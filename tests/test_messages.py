"""Secure messages between a patient and their clinician: the core on SQLite and PostgreSQL,
the patient and clinician pages over the Flask test client, authorization, bad input (store
unchanged), messaging turned off, and the notification over real SMTP (aiosmtpd) without PHI."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as email_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from clinician_support import Session, clinician_app, open_launch
from clinician_support import snapshot as store_snapshot
from hw_fhir import messages
from hw_fhir.demo import demo_resources
from hw_fhir.errors import Forbidden, InvalidInput, NotFound
from hw_fhir.store import open_store
from patient_support import csrf, give_homework, patient_app, sign_in

MESSAGE_TYPES = ("Communication", "Patient")


# -- the core, on SQLite and PostgreSQL -------------------------------------------------------


@pytest.fixture
def core_store(db_url: str) -> Iterator[Any]:
    store = open_store(db_url)
    for resource in demo_resources():
        store.update(resource)
    store.update({"resourceType": "Task", "id": "t-ava", "status": "requested", "intent": "order",
                  "for": {"reference": "Patient/pat-ava"},
                  "requester": {"reference": "Practitioner/dr-rivera"}})
    store.create({"resourceType": "Task", "status": "requested", "intent": "order",
                  "for": {"reference": "Patient/pat-ben"}})
    yield store
    store.dispose()


def test_a_thread_is_stored_as_fhir_communications(core_store: Any) -> None:
    first = messages.send_message(core_store, patient="pat-ava", sender="Patient/pat-ava",
                                  recipient="Practitioner/dr-rivera", text="  Hello, a question  ")
    task_id = _task_id(core_store, "pat-ava")
    reply = messages.send_message(core_store, patient="pat-ava", sender="Practitioner/dr-rivera",
                                  recipient="Patient/pat-ava", text="Happy to help.",
                                  task_id=task_id, in_response_to=first["id"])
    assert first["status"] == "completed"
    assert first["category"][0]["coding"][0] == {
        "system": "http://hw-fhir.org/fhir/CodeSystem/communication-category",
        "code": "secure-message", "display": "Secure message"}
    assert first["subject"] == {"reference": "Patient/pat-ava"}
    assert first["sender"] == {"reference": "Patient/pat-ava"}
    assert first["recipient"] == [{"reference": "Practitioner/dr-rivera"}]
    assert first["payload"] == [{"contentString": "Hello, a question"}]
    assert "about" not in first and "inResponseTo" not in first
    assert reply["about"] == [{"reference": f"Task/{task_id}"}]
    assert reply["inResponseTo"] == [{"reference": f"Communication/{first['id']}"}]
    thread = messages.thread(core_store, "Patient/pat-ava")
    assert [(m.from_patient, m.text, m.task_id) for m in thread] == [
        (True, "Hello, a question", None), (False, "Happy to help.", task_id)]
    assert thread[1].in_response_to == first["id"]
    assert messages.thread(core_store, "pat-ben") == []
    assert [m.id for m in messages.thread(core_store, "pat-ava", task_id=task_id)] == [reply["id"]]


def _task_id(store: Any, pid: str) -> str:
    from hw_fhir.store import iter_all

    return str(iter_all(store, "Task", [("patient", f"Patient/{pid}")])[0]["id"])


@pytest.mark.parametrize("kwargs, error", [
    ({"text": "   "}, InvalidInput),
    ({"text": None}, InvalidInput),
    ({"text": "x" * (messages.MAX_LENGTH + 1)}, InvalidInput),
    ({"text": "bell\x07"}, InvalidInput),
    ({"text": "hi", "task_id": "BEN"}, Forbidden),
    ({"text": "hi", "task_id": "no-such-task"}, NotFound),
    ({"text": "hi", "in_response_to": "BEN"}, Forbidden),
    ({"text": "hi", "sender": "Practitioner/dr-rivera", "recipient": "Practitioner/dr-okafor"},
     Forbidden),
])
def test_bad_messages_are_refused_and_nothing_is_stored(core_store: Any, kwargs: dict[str, Any],
                                                       error: type[Exception]) -> None:
    ben_task = _task_id(core_store, "pat-ben")
    ben_message = messages.send_message(core_store, patient="pat-ben", sender="Patient/pat-ben",
                                        recipient="Practitioner/dr-okafor", text="mine")
    args = {"sender": "Patient/pat-ava", "recipient": "Practitioner/dr-rivera", **kwargs}
    if args.get("task_id") == "BEN":
        args["task_id"] = ben_task
    if args.get("in_response_to") == "BEN":
        args["in_response_to"] = ben_message["id"]
    before = store_snapshot(core_store, *MESSAGE_TYPES)
    with pytest.raises(error):
        messages.send_message(core_store, patient="pat-ava", **args)
    assert store_snapshot(core_store, *MESSAGE_TYPES) == before


def test_messaging_can_be_turned_off_per_patient(core_store: Any) -> None:
    assert messages.messaging_enabled(core_store.read("Patient", "pat-ava").resource)
    stored = messages.set_messaging(core_store, "pat-ava", False)
    assert {"url": messages.MESSAGING_EXTENSION, "valueBoolean": False} in stored["extension"]
    # the patient's other extensions (time zone) are kept
    assert any(e["url"].endswith("/timezone") for e in stored["extension"])
    assert not messages.messaging_enabled(stored)
    with pytest.raises(Forbidden):
        messages.send_message(core_store, patient="pat-ava", sender="Practitioner/dr-rivera",
                              recipient="Patient/pat-ava", text="hello")
    assert messages.thread(core_store, "pat-ava") == []
    assert messages.messaging_enabled(messages.set_messaging(core_store, "pat-ava", True))


def test_a_stale_patient_is_not_overwritten(core_store: Any) -> None:
    from hw_fhir.errors import VersionConflict

    class Racing:
        """A store whose Patient changes between the read and the write."""

        def __getattr__(self, name: str) -> Any:
            return getattr(core_store, name)

        def read(self, *args: Any) -> Any:
            found = core_store.read(*args)
            core_store.update(dict(found.resource, gender="other"))
            return found

    with pytest.raises(VersionConflict):
        messages.set_messaging(Racing(), "pat-ava", False)
    assert messages.messaging_enabled(core_store.read("Patient", "pat-ava").resource)


def test_care_team_recipient(core_store: Any) -> None:
    ava = core_store.read("Patient", "pat-ava").resource
    task = core_store.read("Task", "t-ava").resource
    assert messages.care_team_recipient(core_store, ava, task) == "Practitioner/dr-rivera"
    assert messages.care_team_recipient(core_store, ava) == "Practitioner/dr-rivera"
    messages.send_message(core_store, patient="pat-ava", sender="Practitioner/dr-okafor",
                          recipient="Patient/pat-ava", text="Covering for Dr. Rivera")
    assert messages.care_team_recipient(core_store, ava) == "Practitioner/dr-okafor"


# -- over HTTP: the patient and clinician pages ----------------------------------------------


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = patient_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


def _store(app: Any) -> Any:
    return app.extensions["hw_fhir"].store


def test_patient_and_clinician_exchange_messages(app: Any) -> None:
    task = give_homework(app, "mood-log")
    patient = app.test_client()
    sign_in(patient, app, task)
    listing = patient.get("/my/").get_data(as_text=True)
    assert 'href="/my/messages"' in listing
    page = patient.get("/my/messages").get_data(as_text=True)
    assert "not monitored around the clock" in page
    assert 'id="crisis"' in page and "988" in page
    assert "No messages yet" in page
    asked = patient.get(f"/my/messages?task={task['id']}").get_data(as_text=True)
    assert f'name="task" value="{task["id"]}"' in asked
    sent = patient.post("/my/messages", data={"csrf_token": csrf(asked), "task": task["id"],
                                               "text": "Can I do the log in the morning?"})
    assert sent.status_code == 303
    page = patient.get(sent.headers["Location"]).get_data(as_text=True)
    assert "Your message is sent" in page and "Can I do the log in the morning?" in page
    assert "about Daily mood log" in page
    stored = messages.thread(_store(app), "pat-ava")
    assert stored[0].task_id == task["id"] and stored[0].from_patient

    clinician = open_launch(app, app.test_client())
    dash = clinician.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert 'id="messages"' in dash and "Can I do the log in the morning?" in dash
    assert "about Daily mood log" in dash
    prep = clinician.get("/clinician/patients/pat-ava/session-prep").get_data(as_text=True)
    assert "Can I do the log in the morning?" in prep
    replied = clinician.post("/clinician/patients/pat-ava/messages",
                             {"text": "Yes, mornings are fine.", "reply_to": stored[0].id})
    assert replied.status_code == 303 and "notice=message-sent" in replied.headers["Location"]
    thread = messages.thread(_store(app), "pat-ava")
    assert thread[-1].text == "Yes, mornings are fine." and thread[-1].in_response_to == stored[0].id
    page = patient.get("/my/messages").get_data(as_text=True)
    assert "Yes, mornings are fine." in page and "Dr. Elena Rivera" in page


def test_bad_patient_input_changes_nothing(app: Any) -> None:
    task = give_homework(app, "mood-log")
    other = give_homework(app, "mood-log", patient="pat-ben")
    patient = app.test_client()
    sign_in(patient, app, task)
    token = csrf(patient.get("/my/messages").get_data(as_text=True))
    before = store_snapshot(_store(app), *MESSAGE_TYPES)
    empty = patient.post("/my/messages", data={"csrf_token": token, "text": "  "})
    assert empty.status_code == 400
    assert "Write a message before sending it." in empty.get_data(as_text=True)
    long = patient.post("/my/messages", data={"csrf_token": token, "text": "x" * 5000})
    assert long.status_code == 400 and "at most 4000" in long.get_data(as_text=True)
    theirs = patient.post("/my/messages", data={"csrf_token": token, "text": "hi",
                                                 "task": other["id"]})
    assert theirs.status_code == 403
    assert "Traceback" not in theirs.get_data(as_text=True)
    no_csrf = patient.post("/my/messages", data={"text": "hi"})
    assert no_csrf.status_code in (400, 403)
    assert app.test_client().get("/my/messages").status_code == 401
    assert app.test_client().post("/my/messages", data={"text": "hi"}).status_code in (400, 401, 403)
    assert store_snapshot(_store(app), *MESSAGE_TYPES) == before


def test_a_patient_sees_only_their_own_thread(app: Any) -> None:
    messages.send_message(_store(app), patient="pat-ben", sender="Practitioner/dr-rivera",
                          recipient="Patient/pat-ben", text="Ben's private words")
    patient = app.test_client()
    sign_in(patient, app, give_homework(app, "mood-log"))
    assert "Ben&#39;s private words" not in patient.get("/my/messages").get_data(as_text=True)
    assert "private words" not in patient.get("/my/messages").get_data(as_text=True)


def test_a_clinician_writes_only_in_the_launch_patients_context(app: Any) -> None:
    session = open_launch(app, app.test_client())  # user-level access, Ava in context
    other = session.get("/clinician/patients/pat-ben").get_data(as_text=True)
    assert 'id="messages"' not in other
    before = store_snapshot(_store(app), *MESSAGE_TYPES)
    refused = session.post("/clinician/patients/pat-ben/messages", {"text": "hello"})
    assert refused.status_code == 403
    assert session.post("/clinician/patients/pat-ben/messaging",
                        {"messaging": "off"}).status_code == 403
    empty = session.post("/clinician/patients/pat-ava/messages", {"text": ""})
    assert empty.status_code == 400 and "Write a message" in empty.get_data(as_text=True)
    bad = session.post("/clinician/patients/pat-ava/messaging", {"messaging": "maybe"})
    assert bad.status_code == 400
    assert store_snapshot(_store(app), *MESSAGE_TYPES) == before


def test_outside_the_launch_patients_context_the_page_says_where_messages_are(app: Any) -> None:
    """The Messages card was silently absent on another patient's dashboard (opened from the
    panel): it says instead why, and where the thread is, without showing any of it."""
    messages.send_message(_store(app), patient="pat-ben", sender="Patient/pat-ben",
                          recipient="Practitioner/dr-rivera", text="Ben's private words")
    note = "Messages with Ben Schmidt are available when you open their chart in your EHR."
    session = open_launch(app, app.test_client())  # Ava in context, user-level access
    for path in ("/clinician/patients/pat-ben", "/clinician/patients/pat-ben/session-prep"):
        page = session.get(path).get_data(as_text=True)
        card = page[page.index('id="messages-elsewhere"'):]
        assert note in card[: card.index("</section>")], path
        assert "private words" not in page and 'id="message-form"' not in page
        assert 'id="messaging-off"' not in page and 'id="messaging-on"' not in page
    own = session.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert 'id="messages"' in own and 'id="messages-elsewhere"' not in own
    # a launch with no patient in context (the panel): every chart says the same
    panel_only = open_launch(app, app.test_client(), patient=None)
    page = panel_only.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert "Messages with Ava Nguyen are available when you open their chart in your EHR." in page
    assert 'id="messages"' not in page


def test_messaging_off_hides_the_box_and_refuses_writes(app: Any) -> None:
    session = open_launch(app, app.test_client())
    off = session.post("/clinician/patients/pat-ava/messaging", {"messaging": "off"})
    assert off.status_code == 303
    dash = session.get("/clinician/patients/pat-ava").get_data(as_text=True)
    assert 'id="messaging-on"' in dash and 'id="message-form"' not in dash
    patient = app.test_client()
    sign_in(patient, app, give_homework(app, "mood-log"))
    page = patient.get("/my/messages").get_data(as_text=True)
    assert 'id="messaging-off"' in page and 'name="text"' not in page
    assert 'id="crisis"' in page
    before = store_snapshot(_store(app), *MESSAGE_TYPES)
    refused = patient.post("/my/messages", data={"csrf_token": csrf(page), "text": "hi"})
    assert refused.status_code == 403
    assert store_snapshot(_store(app), *MESSAGE_TYPES) == before
    assert session.post("/clinician/patients/pat-ava/messaging",
                        {"messaging": "on"}).status_code == 303
    assert messages.messaging_enabled(_store(app).read("Patient", "pat-ava").resource)


# -- the notification over real SMTP ---------------------------------------------------------


class Inbox:
    """An aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_app(app_config: dict[str, Any]) -> Iterator[tuple[Any, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    application = patient_app(app_config, smtp_host="127.0.0.1", smtp_port=controller.port,
                              base_url="https://hw.example.org")
    try:
        yield application, inbox
    finally:
        application.extensions["hw_fhir"].close()
        controller.stop()


def _body(raw: bytes) -> tuple[str, str]:
    parsed = message_from_bytes(raw, policy=email_policy)
    part = parsed.get_body(preferencelist=("plain",))
    return str(parsed["Subject"]), part.get_content() if part else ""


def _awake(store: Any, patient_id: str = "pat-ava") -> None:
    """Put the patient in a zone where it is early afternoon now (default quiet hours are
    21:00-08:00 in the patient's zone: Ava's New York nights would put the notice off)."""
    from datetime import datetime, timezone

    url = "http://hl7.org/fhir/StructureDefinition/timezone"
    offset = (13 - datetime.now(timezone.utc).hour + 12) % 24 - 12
    zone = "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"
    patient = store.read("Patient", patient_id).resource
    kept = [e for e in patient.get("extension") or [] if e.get("url") != url]
    store.update({**patient, "extension": [*kept, {"url": url, "valueCode": zone}]})


def test_notifications_say_only_that_there_is_a_message(smtp_app: tuple[Any, Inbox]) -> None:
    app, inbox = smtp_app
    task = give_homework(app, "mood-log")
    _awake(app.extensions["hw_fhir"].store)
    patient = app.test_client()
    sign_in(patient, app, task)
    token = csrf(patient.get("/my/messages").get_data(as_text=True))
    secret = "I felt awful after the argument with Sam"
    assert patient.post("/my/messages", data={"csrf_token": token, "text": secret}).status_code == 303
    assert len(inbox.messages) == 1
    to, raw = inbox.messages[0]
    assert to == ["elena.rivera@clinic.example.org"]
    subject, body = _body(raw)
    assert subject == "You have a new message"
    assert body.strip().startswith("You have a new message from a patient.")
    for phi in (secret, "Sam", "Ava", "Nguyen", "pat-ava", "mood"):
        assert phi not in raw.decode("utf-8", "replace")

    clinician = open_launch(app, app.test_client())
    reply = "Thank you for telling me about Sam"
    assert clinician.post("/clinician/patients/pat-ava/messages",
                          {"text": reply}).status_code == 303
    assert len(inbox.messages) == 2
    to, raw = inbox.messages[1]
    assert to == ["ava@example.org"]
    subject, body = _body(raw)
    assert subject == "You have a new message"
    assert "You have a new message from your care team" in body
    assert "https://hw.example.org/my/messages" in body
    for phi in (reply, "Sam", "Ava", "Nguyen", "Rivera", "pat-ava"):
        assert phi not in raw.decode("utf-8", "replace")


# -- the /fhir API: nobody plants a message or switches messaging back on -------------------


def test_fhir_clients_cannot_plant_messages_or_turn_messaging_on(app_config: dict[str, Any]) -> None:
    from smart_support import Browser, fhir, make_app, secure_cookies_over_http, token_for

    from conftest import serve

    with secure_cookies_over_http():
        application = make_app(app_config)
        server = serve(application)
        try:
            browser = Browser(server.url)
            store = application.extensions["hw_fhir"].store
            messages.set_messaging(store, "pat-ava", False)
            patient = token_for(browser, "launch/patient patient/*.cruds",
                                user="Patient/pat-ava")["access_token"]
            forged = {"resourceType": "Communication", "status": "completed",
                      "identifier": [{"system": messages.MESSAGE_IDENTIFIER_SYSTEM, "value": "x"}],
                      "category": [{"coding": [{"system": messages.MESSAGE_CATEGORY_SYSTEM,
                                                "code": messages.MESSAGE_CODE}]}],
                      "subject": {"reference": "Patient/pat-ava"},
                      "sender": {"reference": "Practitioner/dr-rivera"},
                      "recipient": [{"reference": "Patient/pat-ava"}],
                      "sent": "2026-03-03T10:00:00Z",
                      "payload": [{"contentString": "forged"}]}
            assert fhir(browser.base, patient, "POST", "Communication", json=forged).status_code == 403
            # without the reserved identifier it is stored, but no thread shows it
            plain = {k: v for k, v in forged.items() if k != "identifier"}
            assert fhir(browser.base, patient, "POST", "Communication", json=plain).status_code == 201
            assert messages.thread(store, "pat-ava") == []
            me = fhir(browser.base, patient, "GET", "Patient/pat-ava").json()
            on = {**me, "extension": [e for e in me.get("extension", [])
                                      if e["url"] != messages.MESSAGING_EXTENSION]}
            assert fhir(browser.base, patient, "PUT", "Patient/pat-ava", json=on).status_code == 403
            assert not messages.messaging_enabled(store.read("Patient", "pat-ava").resource)
        finally:
            server.stop()
            application.extensions["hw_fhir"].close()


def test_in_the_demo_the_notification_lands_in_the_inbox(app_config: dict[str, Any]) -> None:
    from hw_fhir.channels.demo_inbox import read_inbox

    application = patient_app(app_config, demo=True)
    try:
        patient = application.test_client()
        sign_in(patient, application, give_homework(application, "mood-log"))
        token = csrf(patient.get("/my/messages").get_data(as_text=True))
        assert patient.post("/my/messages", data={"csrf_token": token,
                                                  "text": "A private worry"}).status_code == 303
        inbox = read_inbox(application.extensions["hw_fhir"].settings)
        assert len(inbox) == 1
        assert "You have a new message from a patient" in str(inbox[0])
        assert "private worry" not in str(inbox[0]) and "Ava" not in str(inbox[0])
    finally:
        application.extensions["hw_fhir"].close()


def test_no_notification_in_the_patients_quiet_hours_or_with_no_reminders(
        smtp_app: tuple[Any, Inbox]) -> None:
    from datetime import datetime, timezone

    app, inbox = smtp_app
    services = app.extensions["hw_fhir"]
    store = services.store
    patient = store.read("Patient", "pat-ava").resource
    quiet = {"url": "http://hw-fhir.org/fhir/StructureDefinition/reminder-preferences",
             "extension": [{"url": "quietStart", "valueTime": "21:00:00"},
                           {"url": "quietEnd", "valueTime": "08:00:00"}]}
    store.update({**patient, "extension": [*patient["extension"], quiet]})
    sent = messages.send_message(store, patient="pat-ava", sender="Practitioner/dr-rivera",
                                 recipient="Patient/pat-ava", text="hello")
    night = datetime(2026, 3, 3, 7, 0, tzinfo=timezone.utc)  # 02:00 in New York
    day = datetime(2026, 3, 3, 17, 0, tzinfo=timezone.utc)  # 12:00 in New York
    assert messages.notify(services, sent, now=night) is None  # put off until 08:00 there
    assert inbox.messages == []
    assert messages.notify(services, sent, now=day) == "email"
    assert len(inbox.messages) == 1
    patient = store.read("Patient", "pat-ava").resource
    none = {"url": quiet["url"], "extension": [{"url": "channel", "valueCode": "none"}]}
    store.update({**patient, "extension": [e for e in patient["extension"] if e["url"] != quiet["url"]]
                  + [none]})
    assert messages.notify(services, sent, now=day) is None  # sent already: not again
    later = messages.send_message(store, patient="pat-ava", sender="Practitioner/dr-rivera",
                                  recipient="Patient/pat-ava", text="hello again")
    assert messages.notify(services, later, now=day) is None  # the patient chose no reminders
    assert len(inbox.messages) == 1


def test_the_signed_out_messages_page_speaks_the_browsers_language(app: Any) -> None:
    """The page asking to open the link again was English for everyone."""
    client = app.test_client()
    spanish = client.get("/my/messages", headers={"Accept-Language": "es-MX,es;q=0.9"})
    assert spanish.status_code == 401
    page = spanish.get_data(as_text=True)
    assert "Abra su enlace otra vez" in page and "Please open your link again" not in page
    english = client.get("/my/messages", headers={"Accept-Language": "en-US"})
    assert "Please open your link again" in english.get_data(as_text=True)
