"""What a patient reads when a request fails: the patient pages' error answers speak the
patient's language, whatever failed (a form whose CSRF token is stale or missing, a body too
large, someone else's homework, a secure link that no longer works), and never show an
error's own English diagnostics.

Every word those answers can show comes from one place (the constants of
``smart_app.patient.error_words`` and ``smart_app.patient.pwa``, and the messages they show as they
are, defined where they are raised); the first test walks them all, so a new message without a
Spanish translation fails here.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest
from patient_support import csrf, give_homework, patient_app, sign_in

from hw_fhir import messages
from hw_fhir.i18n import translator, with_language
from hw_fhir.links import LINK_MESSAGES
from smart_app.patient import access, error_words, pwa
from smart_app.security import CSRF_EXPIRED


def _every_error_word() -> dict[str, str]:
    """Every word of the patient side's error answers, by where it comes from."""
    words = {f"message {m!r}": m for m in error_words.ERROR_MESSAGES}
    words |= {f"title {s}": t for s, t in error_words.ERROR_TITLES.items()}
    words |= {f"words {s}": t for s, t in error_words.STATUS_WORDS.items()}
    words |= {f"link title {r}": t for r, t in error_words.LINK_TITLES.items()}
    words |= {f"pwa {k}": t for k, t in pwa.FAILURE_WORDS.items()}
    words |= {"default title": error_words.DEFAULT_TITLE, "default words": error_words.DEFAULT_WORDS,
              "form expired": error_words.FORM_EXPIRED_TITLE, "too many": error_words.TOO_MANY_TEXT}
    return words


def test_every_word_of_the_patient_error_answers_has_a_spanish_translation() -> None:
    words = _every_error_word()
    # the messages shown as they are: those of the failures a patient meets
    assert {CSRF_EXPIRED, *LINK_MESSAGES, *messages.REFUSALS, access.NO_SUCH_HOMEWORK,
            access.NOT_YOUR_HOMEWORK} <= error_words.ERROR_MESSAGES
    assert {400, 401, 403, 404, 409, 410, 412, 413, 422, 429} <= set(error_words.STATUS_WORDS)
    spanish = translator("es")
    untranslated = sorted(where for where, text in words.items() if spanish(text) == text)
    assert not untranslated, f"not in the Spanish catalog (hw_fhir/locales/README.md): {untranslated}"


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = patient_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


def _spanish(app: Any, pid: str) -> None:
    store = app.extensions["hw_fhir"].store
    store.update(with_language(store.read("Patient", pid).resource, "es"))


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def _answers(page: str) -> dict[str, str]:
    return {"_action": "save", **{f"q:phq9-{n}": "1" for n in range(1, 10)}}


def test_a_spanish_patient_whose_form_expired_reads_why_in_spanish(app: Any) -> None:
    _spanish(app, "pat-ava")
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    assert '<html lang="es">' in page
    other = app.test_client()  # the same homework opened in another browser: its own token
    stale = csrf(sign_in(other, app, task))
    assert stale != csrf(page)
    for token in (stale, None):  # a page from another session, a form without a token
        data = {**_answers(page), **({"csrf_token": token} if token else {})}
        response = client.post(f"/my/tasks/{task['id']}", data=data)
        assert response.status_code == 403
        text = _text(response)
        assert '<html lang="es">' in text
        assert "Este formulario ha caducado" in text
        assert ("Este formulario ha caducado o no se envió desde este sitio. Vuelva atrás, "
                "vuelva a cargar la página e inténtelo de nuevo.") in text
        assert "This form" not in text and "Traceback" not in text
    autosave = client.post(f"/my/tasks/{task['id']}/draft", data=_answers(page),
                           headers={"Accept": "application/json"})
    assert autosave.status_code == 403
    assert autosave.get_json() == {"ok": False, "message": (
        "Este formulario ha caducado o no se envió desde este sitio. Vuelva atrás, vuelva a "
        "cargar la página e inténtelo de nuevo.")}
    english = app.test_client()
    task_en = give_homework(app, "gad-7", patient="pat-carmen")
    sign_in(english, app, task_en)
    refused = english.post(f"/my/tasks/{task_en['id']}", data={"_action": "save"})
    assert refused.status_code == 403 and '<html lang="en">' in _text(refused)
    assert "This form has expired or was not sent from this site." in _text(refused)


def test_a_body_too_large_and_someone_elses_homework_are_refused_in_spanish(app: Any) -> None:
    _spanish(app, "pat-ava")
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    app.config["MAX_CONTENT_LENGTH"] = 4096  # the framework's own refusal, sooner
    big = client.post(f"/my/tasks/{task['id']}",
                      data={"csrf_token": csrf(page), **_answers(page), "q:phq9-10": "x" * 8000})
    assert big.status_code == 413
    text = _text(big)
    assert '<html lang="es">' in text
    assert "Lo que envió es demasiado grande. Acórtelo e inténtelo de nuevo." in text
    assert "Entity" not in text and "capacity" not in text
    theirs = give_homework(app, "gad-7", patient="pat-carmen")
    refused = client.get(f"/my/tasks/{theirs['id']}")
    assert refused.status_code == 403
    assert "Esta tarea pertenece a otra persona." in _text(refused)
    missing = client.get("/my/tasks/no-such-task")
    assert missing.status_code == 404 and "Esa tarea no existe." in _text(missing)


def test_a_spanish_patient_whose_message_is_refused_reads_why_in_spanish(app: Any) -> None:
    """The browser's ``required`` and ``maxlength`` are its own: a message posted anyway is
    refused by the core, and the Messages page says why in Spanish, the text kept."""
    _spanish(app, "pat-ava")
    client = app.test_client()
    sign_in(client, app, give_homework(app, "mood-log"))
    page = client.get("/my/messages").get_data(as_text=True)
    assert '<html lang="es">' in page
    token = csrf(page)
    refusals = {
        "  ": "Escriba un mensaje antes de enviarlo.",
        "Hola " * 1000: ("Un mensaje puede tener como máximo 4000 caracteres; este tiene 4999. "
                         "Acórtelo o envíelo en dos partes."),
        "Hola\x07": "El mensaje contiene caracteres que no se pueden enviar.",
    }
    for sent, why in refusals.items():
        refused = client.post("/my/messages", data={"csrf_token": token, "text": sent})
        assert refused.status_code == 400
        assert '<html lang="es">' in _text(refused)
        assert f'<p class="error" role="alert" id="message-error">{why}</p>' in _text(refused)
        assert f">{sent}</textarea>" in refused.get_data(as_text=True)  # the text is kept
        assert "message" not in _text(refused).split('id="message-error">')[1].split("</p>")[0]
    theirs = messages.send_message(app.extensions["hw_fhir"].store, patient="pat-ben",
                                   sender="Practitioner/dr-rivera", recipient="Patient/pat-ben",
                                   text="Hello Ben")
    answer = client.post("/my/messages", data={"csrf_token": token, "text": "Hola",
                                               "reply_to": theirs["id"]})
    assert answer.status_code == 403
    assert "Solo puede responder a mensajes de esta conversación." in _text(answer)
    messages.set_messaging(app.extensions["hw_fhir"].store, "pat-ava", False)
    off = client.post("/my/messages", data={"csrf_token": token, "text": "Hola"})
    assert off.status_code == 403  # the page says it its own way, without a message box
    assert 'id="messaging-off"' in _text(off) and "Messaging is turned off" not in _text(off)
    assert messages.thread(app.extensions["hw_fhir"].store, "pat-ava") == []


def test_an_error_without_words_for_patients_shows_the_words_of_its_status(app: Any) -> None:
    """A store's or a framework's diagnostics never reach the page: the status's words do."""
    with app.test_request_context("/my/", headers={"Accept-Language": "es"}):
        assert error_words.error_words(412, "Task/abc: version 3 is not the current version 4") == (
            "Algo cambió",
            "Algo cambió mientras tanto. Vuelva a cargar la página e inténtelo de nuevo.")
        assert error_words.error_words(502, "The EHR answered 502 Bad Gateway") == (
            "Algo no está bien", "Algo salió mal de nuestra parte. Inténtelo de nuevo más tarde.")
        assert error_words.error_words(404, access.NO_SUCH_HOMEWORK)[1] == "Esa tarea no existe."
