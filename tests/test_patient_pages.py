"""Patient pages over the Flask test client: entry by link, to-do list, forms, drafts, submission,
confirmation, progress and preferences — and what must be refused (nothing stored then)."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone
from typing import Any, Iterator

import pytest
from patient_support import csrf, give_homework, link_for, patient_app, sign_in, snapshot, stored
from werkzeug.datastructures import MultiDict

from hw_fhir.assignment import instant
from hw_fhir.completion import response_for_task
from hw_fhir.links import patient_links


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = patient_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def store(app: Any) -> Any:
    return app.extensions["hw_fhir"].store


def form_post(client: Any, task: dict[str, Any], page: str, action: str, **fields: Any) -> Any:
    data = MultiDict([("csrf_token", csrf(page)), ("_action", action)])
    for name, value in fields.items():
        for one in value if isinstance(value, list) else [value]:
            data.add(name, one)
    return client.post(f"/my/tasks/{task['id']}", data=data)


THOUGHT = {
    "q:entry.0/situation": "Late for work",
    "q:entry.0/automatic-thought": "I'm hopeless",
    "q:entry.0/emotion": "0",
    "q:entry.0/emotion-intensity": "60",
}


def phq9(item9: str = "0") -> dict[str, str]:
    fields = {f"q:phq9-{n}": "1" for n in range(1, 11)}
    fields["q:phq9-9"] = item9
    return fields


# -- entry by link --------------------------------------------------------------------------------


def test_a_link_opens_the_homework_form(app: Any) -> None:
    task = give_homework(app, "thought-record", instructions="One entry each evening.")
    client = app.test_client()
    response = client.get(link_for(app, task))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/my/tasks/{task['id']}")
    page = text(client.get(response.headers["Location"]))
    assert "Thought record" in page and "One entry each evening." in page
    assert 'name="q:entry.0/situation"' in page and 'id="f-entry-0--situation"' in page
    assert '<label class="label" for="f-entry-0--situation">' in page
    assert "data-hw-template" in page and 'value="add:entry"' in page


def test_pages_need_a_patient_and_never_say_whose(app: Any) -> None:
    task = give_homework(app, "phq-9")
    client = app.test_client()
    for path in ("/my/", f"/my/tasks/{task['id']}", "/my/progress", "/my/preferences"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert "Ava" not in text(response) and "PHQ" not in text(response)


def test_birth_date_is_asked_and_checked_before_anything_is_shown(app: Any) -> None:
    task = give_homework(app, "phq-9")
    path = link_for(app, task, birth_date_check=True)
    client = app.test_client()
    page = text(client.get(path))
    assert "Confirm it" in page and "Ava" not in page and "PHQ" not in page
    wrong = client.post(
        path, data={"csrf_token": csrf(page), "dob_day": "1", "dob_month": "1", "dob_year": "1990"}
    )
    assert wrong.status_code == 401 and "does not match" in text(wrong)
    assert client.get("/my/").status_code == 401
    not_a_date = client.post(
        path, data={"csrf_token": csrf(page), "dob_day": "31", "dob_month": "2", "dob_year": "1991"}
    )
    assert not_a_date.status_code == 400 and "not a real date" in text(not_a_date)
    right = client.post(
        path,
        data={"csrf_token": csrf(page), "dob_day": "12", "dob_month": "04", "dob_year": "1991"},
    )
    assert right.status_code == 302 and right.headers["Location"].endswith(task["id"])
    assert client.get("/my/").status_code == 200


def test_guessing_the_birth_date_locks_the_link(app: Any) -> None:
    task = give_homework(app, "phq-9")
    path = link_for(app, task, birth_date_check=True)
    client = app.test_client()
    token = csrf(text(client.get(path)))
    codes = [
        client.post(
            path,
            data={"csrf_token": token, "dob_day": str(day), "dob_month": "4", "dob_year": "1991"},
        ).status_code
        for day in range(1, 6)
    ]
    assert codes == [401, 401, 401, 401, 410]
    right = client.post(
        path, data={"csrf_token": token, "dob_day": "12", "dob_month": "4", "dob_year": "1991"}
    )
    assert right.status_code == 410 and client.get("/my/").status_code == 401


def test_guessing_birth_dates_across_links_is_rate_limited_per_client(app: Any) -> None:
    tasks = [give_homework(app, "phq-9", days=n + 1) for n in range(3)]
    paths = [link_for(app, t, birth_date_check=True) for t in tasks]
    client = app.test_client()
    token = csrf(text(client.get(paths[0])))
    codes = []
    for n in range(9):
        codes.append(
            client.post(
                paths[n // 4],
                data={
                    "csrf_token": token,
                    "dob_day": str(n + 1),
                    "dob_month": "1",
                    "dob_year": "1980",
                },
            ).status_code
        )
    assert codes[:7] == [401] * 4 + [401] * 3 and 429 in codes[7:]
    fresh = link_for(app, give_homework(app, "gad-7"), birth_date_check=True)
    right = client.post(
        fresh, data={"csrf_token": token, "dob_day": "12", "dob_month": "4", "dob_year": "1991"}
    )
    assert right.status_code == 429 and "Too many attempts" in text(right)
    assert client.get("/my/").status_code == 401
    other_client = app.test_client()  # another address is not blocked
    assert other_client.get(fresh, environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 200


@pytest.mark.parametrize("problem", ["expired", "tampered", "revoked"])
def test_bad_links_get_a_clear_page_and_no_session(app: Any, problem: str) -> None:
    task = give_homework(app, "phq-9")
    links = patient_links(app.extensions["hw_fhir"])
    if problem == "expired":
        token = links.make_link(
            task["id"], "Patient/pat-ava", now=datetime.now(timezone.utc).timestamp() - 100 * 3600
        ).token
    else:
        token = links.make_link(task["id"], "Patient/pat-ava").token
    if problem == "tampered":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    if problem == "revoked":
        links.revoke(token)
    client = app.test_client()
    response = client.get(f"/p/{token}")
    expected = {
        "expired": (410, "This link has expired"),
        "tampered": (403, "This link does not work"),
        "revoked": (410, "This link no longer works"),
    }[problem]
    assert (response.status_code, expected[1] in text(response)) == (expected[0], True)
    assert "Ava" not in text(response) and "PHQ" not in text(response)
    assert client.get("/my/").status_code == 401


def test_guessing_links_is_rate_limited(app: Any) -> None:
    task = give_homework(app, "phq-9")
    good = link_for(app, task)
    client = app.test_client()
    token = good.split("/")[-1]
    for n in range(20):
        replacement = (
            "abcdefghijklmnopqrstuvwxyz"[n] if token[5] != "abcdefghijklmnopqrstuvwxyz"[n] else "Z"
        )
        forged = token[:5] + replacement + token[6:]
        assert client.get(f"/p/{forged}").status_code in (403, 410)
    blocked = client.get(good)
    assert blocked.status_code == 429 and client.get("/my/").status_code == 401


def test_a_link_for_another_patient_never_mixes_sessions(app: Any) -> None:
    ava = give_homework(app, "thought-record", patient="pat-ava")
    ben = give_homework(app, "phq-9", patient="pat-ben")
    client = app.test_client()
    sign_in(client, app, ben)
    before = text(client.get("/my/"))
    assert f"task-{ben['id']}" in before
    switch = client.get(link_for(app, ava))
    assert switch.status_code == 409 and "Someone else is signed in" in text(switch)
    assert "Thought record" not in text(switch) and "Ava" not in text(switch)
    after = text(client.get("/my/"))
    assert f"task-{ben['id']}" in after and f"task-{ava['id']}" not in after
    assert client.get(f"/my/tasks/{ava['id']}").status_code == 403
    signed_out = client.post(
        "/my/signout", data={"csrf_token": csrf(text(switch)), "next": link_for(app, ava)}
    )
    assert signed_out.status_code == 302
    opened = client.get(signed_out.headers["Location"])
    assert opened.status_code == 302 and opened.headers["Location"].endswith(ava["id"])
    assert f"task-{ben['id']}" not in text(client.get("/my/"))


def test_someone_elses_task_is_refused_and_nothing_is_stored(app: Any) -> None:
    ava = give_homework(app, "thought-record", patient="pat-ava")
    ben = give_homework(app, "thought-record", patient="pat-ben")
    client = app.test_client()
    page = sign_in(client, app, ava)
    before = snapshot(app)
    for action in ("save", "submit"):
        response = form_post(client, ben, page, action, **THOUGHT)
        assert response.status_code == 403 and "someone else" in text(response)
    autosave = client.post(
        f"/my/tasks/{ben['id']}/draft",
        data=THOUGHT,
        headers={"X-CSRF-Token": csrf(page), "Accept": "application/json"},
    )
    assert autosave.status_code == 403
    assert client.get(f"/my/tasks/{ben['id']}").status_code == 403
    assert client.get(f"/my/tasks/{ben['id']}/done").status_code == 403
    assert snapshot(app) == before


def test_posts_without_the_csrf_token_are_refused(app: Any) -> None:
    task = give_homework(app, "thought-record")
    client = app.test_client()
    sign_in(client, app, task)
    before = snapshot(app)
    response = client.post(f"/my/tasks/{task['id']}", data={"_action": "submit", **THOUGHT})
    assert response.status_code == 403
    autosave = client.post(
        f"/my/tasks/{task['id']}/draft", data=THOUGHT, headers={"Accept": "application/json"}
    )
    assert autosave.status_code == 403
    assert snapshot(app) == before


# -- to-do list -----------------------------------------------------------------------------------


def test_the_todo_list_sorts_homework_and_uses_the_clinicians_words(app: Any) -> None:
    today = give_homework(
        app,
        "mood-log",
        days=0,
        when=time(23, 59),
        wording="skills practice",
        instructions="Rate your mood tonight.",
        rationale="Patterns show up over a week.",
        example="Mood 4: tired after work.",
    )
    week = give_homework(app, "phq-9", days=3, wording="skills practice")
    later = give_homework(app, "gad-7", days=12, wording="skills practice")
    overdue = give_homework(app, "grounding", days=2, wording="skills practice")
    moved = dict(
        overdue,
        restriction={"period": {"end": instant(datetime.now(timezone.utc) - timedelta(hours=3))}},
    )
    store(app).update(moved, if_match=overdue["meta"]["versionId"])
    other = give_homework(app, "body-scan", patient="pat-ben")
    client = app.test_client()
    sign_in(client, app, week)
    page = text(client.get("/my/"))
    assert "Your skills practice" in page
    sections = {
        name: page.index(f'id="sec-{name}"') for name in ("overdue", "today", "week", "later")
    }
    assert sections["overdue"] < sections["today"] < sections["week"] < sections["later"]
    assert (
        page.index(f"task-{overdue['id']}") < sections["today"] < page.index(f"task-{today['id']}")
    )
    assert (
        sections["week"]
        < page.index(f"task-{week['id']}")
        < sections["later"]
        < page.index(f"task-{later['id']}")
    )
    assert "Still open" in page and "not too late" in page
    assert "Rate your mood tonight." in page and "Patterns show up over a week." in page
    assert "Mood 4: tired after work." in page
    assert f"task-{other['id']}" not in page


def test_a_submitted_task_leaves_the_list(app: Any) -> None:
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    assert f'id="task-{task["id"]}"' in text(client.get("/my/"))
    done = form_post(client, task, page, "submit", **phq9())
    assert done.status_code == 302 and done.headers["Location"].endswith(
        f"/my/tasks/{task['id']}/done"
    )
    todo = text(client.get("/my/"))
    assert f'id="task-{task["id"]}"' not in todo and f'id="done-{task["id"]}"' in todo


# -- forms: drafts, errors, submission ------------------------------------------------------------


def test_missing_answers_come_back_next_to_their_items_and_nothing_is_stored(app: Any) -> None:
    task = give_homework(app, "thought-record")
    client = app.test_client()
    page = sign_in(client, app, task)
    before = snapshot(app)
    response = form_post(
        client,
        task,
        page,
        "submit",
        **{"q:entry.0/situation": "Bus was late", "q:entry.0/emotion-intensity": "lots"},
    )
    assert response.status_code == 422
    body = text(response)
    assert 'id="error-summary"' in body
    assert 'id="f-entry-0--emotion-intensity-error"' in body and "Enter a whole number" in body
    assert 'value="lots"' in body and "Bus was late" in body
    assert snapshot(app) == before
    response = form_post(client, task, page, "submit", **{"q:entry.0/situation": "Bus was late"})
    body = text(response)
    assert response.status_code == 422
    assert (
        'id="f-entry-0--automatic-thought-error"' in body and "Please answer this question." in body
    )
    assert 'href="#f-entry-0--automatic-thought"' in body
    assert snapshot(app) == before
    assert store(app).read("Task", task["id"]).resource["status"] == "requested"


def test_a_draft_is_saved_and_resumed_on_another_device(app: Any) -> None:
    task = give_homework(app, "thought-record")
    phone = app.test_client()
    page = sign_in(phone, app, task)
    saved = form_post(
        phone,
        task,
        page,
        "save",
        **{"q:entry.0/situation": "Argument at dinner", "q:entry.3/situation": "Quiet evening"},
    )
    assert saved.status_code == 302 and saved.headers["Location"].endswith("saved=1")
    draft = response_for_task(store(app), task["id"])
    assert draft["status"] == "in-progress"
    assert store(app).read("Task", task["id"]).resource["status"] == "in-progress"
    laptop = app.test_client()
    resumed = sign_in(laptop, app, task)
    assert "Argument at dinner" in resumed and "Quiet evening" in resumed
    assert 'name="q:entry.1/situation"' in resumed  # renumbered in order
    assert "Draft saved" in text(laptop.get("/my/"))


def test_autosave_answers_json_and_stores_a_draft(app: Any) -> None:
    task = give_homework(app, "body-scan")
    client = app.test_client()
    page = sign_in(client, app, task)
    headers = {"X-CSRF-Token": csrf(page), "Accept": "application/json"}
    ok = client.post(
        f"/my/tasks/{task['id']}/draft", data={"q:done": "true", "q:minutes": "15"}, headers=headers
    )
    assert ok.status_code == 200 and ok.get_json()["ok"] is True
    draft = response_for_task(store(app), task["id"])
    assert draft["status"] == "in-progress" and "minutes" in str(draft["item"])
    bad = client.post(
        f"/my/tasks/{task['id']}/draft",
        data={"q:done": "true", "q:minutes": "a while"},
        headers=headers,
    )
    assert bad.status_code == 200 and bad.get_json()["ok"] is False
    assert (
        response_for_task(store(app), task["id"])["meta"]["versionId"] == draft["meta"]["versionId"]
    )


def test_answers_to_switched_off_questions_are_never_stored(app: Any) -> None:
    task = give_homework(app, "body-scan")
    client = app.test_client()
    page = sign_in(client, app, task)
    done = form_post(
        client,
        task,
        page,
        "submit",
        **{"q:done": "false", "q:minutes": "20", "q:why-not": "Too tired"},
    )
    assert done.status_code == 302
    response = response_for_task(store(app), task["id"])
    assert response["status"] == "completed"
    assert "minutes" not in str(response["item"]) and "Too tired" in str(response["item"])


def test_add_another_entry_without_javascript(app: Any) -> None:
    task = give_homework(app, "thought-record")
    client = app.test_client()
    page = sign_in(client, app, task)
    before = snapshot(app)
    added = form_post(client, task, page, "add:entry", **THOUGHT)
    body = text(added)
    assert added.status_code == 200 and 'name="q:entry.1/situation"' in body
    assert "Late for work" in body and snapshot(app) == before
    removed = form_post(
        client, task, body, "remove:entry.0", **THOUGHT, **{"q:entry.1/situation": "Second"}
    )
    body = text(removed)
    assert "Late for work" not in body and "Second" in body


def test_thought_record_with_two_entries_is_submitted(app: Any) -> None:
    task = give_homework(app, "thought-record")
    client = app.test_client()
    page = sign_in(client, app, task)
    second = {
        "q:entry.1/situation": "Call with mum",
        "q:entry.1/automatic-thought": "She's disappointed",
        "q:entry.1/emotion": "",
        "q:entry.1/emotion~other": "deflated",
        "q:entry.1/emotion-intensity": "40",
        "q:entry.1/when": "2026-03-02T19:05",
    }
    done = form_post(client, task, page, "submit", **THOUGHT, **second)
    assert done.status_code == 302
    response = response_for_task(store(app), task["id"])
    entries = [i for i in response["item"] if i["linkId"] == "entry"]
    assert len(entries) == 2 and "deflated" in str(entries[1])
    assert "2026-03-02T19:05:00-05:00" in str(entries[1])  # Ava's zone, New York (EST)
    confirmation = text(client.get(done.headers["Location"]))
    assert "Thank you, that's sent" in confirmation and "Dr. Elena Rivera" in confirmation
    assert 'id="crisis"' not in confirmation


def test_a_risk_shows_crisis_resources_at_once(app: Any) -> None:
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    done = form_post(client, task, page, "submit", **phq9(item9="2"))
    confirmation = text(client.get(done.headers["Location"]))
    assert 'id="crisis"' in confirmation and "tel:988" in confirmation
    assert confirmation.index('id="crisis"') < confirmation.index('id="confirmation"')


def test_an_opened_link_of_a_finished_task_shows_only_a_thank_you(app: Any) -> None:
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    form_post(client, task, page, "submit", **phq9())
    again = client.get(link_for(app, task))
    assert again.status_code == 200 and "nothing left to do here" in text(again)
    before = snapshot(app)
    resubmit = form_post(client, task, page, "submit", **phq9(item9="3"))
    assert resubmit.status_code == 409 and snapshot(app) == before


def test_a_cancelled_task_says_there_is_nothing_to_do(app: Any) -> None:
    from hw_fhir.assignment import cancel_assignment

    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    cancel_assignment(store(app), f"Task/{task['id']}")
    shown = client.get(f"/my/tasks/{task['id']}")
    assert shown.status_code == 410 and "Nothing to do here" in text(shown)
    before = snapshot(app)
    assert form_post(client, task, page, "submit", **phq9()).status_code == 410
    assert snapshot(app) == before


# -- progress and preferences ---------------------------------------------------------------------


def test_progress_shows_streak_completed_and_the_trend_only_when_shared(app: Any) -> None:
    client = app.test_client()
    for n in range(2):
        task = give_homework(app, "phq-9", days=n + 1)
        page = sign_in(client, app, task)
        form_post(client, task, page, "submit", **phq9())
    page = text(client.get("/my/progress"))
    assert re.search(r'id="completed-count">2<', page)
    assert page.count("Patient Health Questionnaire-9") == 2
    assert "sparkline" not in page
    patient = store(app).read("Patient", "pat-ava").resource
    shared = dict(
        patient,
        extension=[
            *patient["extension"],
            {
                "url": "http://hw-fhir.org/fhir/StructureDefinition/share-scores-with-patient",
                "valueBoolean": True,
            },
        ],
    )
    store(app).update(shared)
    page = text(client.get("/my/progress"))
    assert "PHQ-9 (mood)" in page and "sparkline" in page


def test_a_note_for_the_next_session_is_kept(app: Any) -> None:
    task = give_homework(app, "phq-9")
    client = app.test_client()
    sign_in(client, app, task)
    page = text(client.get("/my/progress"))
    for note in ("Talk about sleep", "Talk about sleep and work"):
        saved = client.post("/my/progress/note", data={"csrf_token": csrf(page), "note": note})
        assert saved.status_code == 302
    [communication] = stored(app, "Communication")
    assert communication["payload"][0]["contentString"] == "Talk about sleep and work"
    assert communication["subject"]["reference"] == "Patient/pat-ava"
    assert communication["recipient"] == [{"reference": "Practitioner/dr-rivera"}]
    assert "Talk about sleep and work" in text(client.get("/my/progress"))


def test_preferences_are_written_on_the_patient(app: Any) -> None:
    task = give_homework(app, "phq-9")
    client = app.test_client()
    sign_in(client, app, task)
    page = text(client.get("/my/preferences"))
    saved = client.post(
        "/my/preferences",
        data=MultiDict(
            [
                ("csrf_token", csrf(page)),
                ("channel", "sms"),
                ("time_of_day", "18:30"),
                ("quiet_start", "21:00"),
                ("quiet_end", "07:30"),
                ("timezone", "Europe/Lisbon"),
                ("opt_out", "overdue"),
            ]
        ),
    )
    assert saved.status_code == 302
    patient = store(app).read("Patient", "pat-ava").resource
    prefs = next(
        e
        for e in patient["extension"]
        if e["url"] == "http://hw-fhir.org/fhir/StructureDefinition/reminder-preferences"
    )
    assert prefs["extension"] == [
        {"url": "channel", "valueCode": "sms"},
        {"url": "timeOfDay", "valueTime": "18:30:00"},
        {"url": "quietStart", "valueTime": "21:00:00"},
        {"url": "quietEnd", "valueTime": "07:30:00"},
        {"url": "optOut", "valueCode": "overdue"},
    ]
    zones = [
        e["valueCode"]
        for e in patient["extension"]
        if e["url"] == "http://hl7.org/fhir/StructureDefinition/timezone"
    ]
    assert zones == ["Europe/Lisbon"]
    shown = text(client.get("/my/preferences?saved=1"))
    assert (
        'value="18:30"' in shown and 'id="channel-sms" name="channel" value="sms" checked' in shown
    )
    ben = store(app).read("Patient", "pat-ben").resource
    assert not any("reminder-preferences" in e["url"] for e in ben.get("extension", []))


def test_invalid_preferences_change_nothing(app: Any) -> None:
    task = give_homework(app, "phq-9")
    client = app.test_client()
    sign_in(client, app, task)
    page = text(client.get("/my/preferences"))
    before = snapshot(app)
    bad = client.post(
        "/my/preferences",
        data={
            "csrf_token": csrf(page),
            "channel": "pigeon",
            "time_of_day": "25:99",
            "quiet_start": "22:00",
            "timezone": "Mars/Olympus",
        },
    )
    body = text(bad)
    assert bad.status_code == 422
    for message in (
        "Choose one of the ways",
        "enter a time such as",
        "both the start and the end",
        "time zone from the list",
    ):
        assert message in body
    assert snapshot(app) == before
