"""Crisis resources follow the patient: by the country of their address (code or name), else the
practice's country, else the practice's own list; a built-in table of well-established numbers;
"call your local emergency number" (+ 112 in the EU/EEA) elsewhere — never 988 outside the US/CA.
Checked on every page that shows them (real SQLite, the app's pages)."""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest
from patient_support import give_homework, patient_app, sign_in
from test_patient_pages import form_post, phq9

from hw_fhir import outcomes
from hw_fhir.config import Settings
from hw_fhir.demo import demo_resources
from hw_fhir.errors import ConfigurationError
from hw_fhir.i18n import with_language
from hw_fhir.outcomes.crisis import country_code


def _numbers(info: outcomes.CrisisInfo) -> list[str]:
    return [c.number for c in info.contacts]


@pytest.mark.parametrize(("country", "code", "numbers"), [
    ("US", "US", ["988", "911"]),
    ("USA", "US", ["988", "911"]),
    ("Canada", "CA", ["988", "911"]),
    ("GB", "GB", ["116 123", "999"]),
    ("United Kingdom", "GB", ["116 123", "999"]),
    ("DE", "DE", ["0800 111 0 111", "0800 111 0 222", "112"]),
    ("Deutschland", "DE", ["0800 111 0 111", "0800 111 0 222", "112"]),
    ("DEU", "DE", ["0800 111 0 111", "0800 111 0 222", "112"]),
    ("España", "ES", ["024", "112"]),
    ("fr", "FR", ["3114", "112"]),
    ("Italy", "IT", ["112"]),  # EU/EEA: 112
    ("NO", "NO", ["112"]),
    ("JP", "JP", []),  # not in the table: "call your local emergency number"
    ("Atlantis", "ZZ", []),  # not a country we know: the same, never the US numbers
])
def test_each_country_gets_its_own_numbers(country: str, code: str, numbers: list[str]) -> None:
    info = outcomes.crisis_resources(Settings(), patient={"address": [{"country": country}]})
    assert info.country == code and _numbers(info) == numbers
    if code not in ("US", "CA"):
        assert "988" not in info.text and "988" not in info.line and "911" not in info.text
    if not numbers:
        assert "local emergency number" in info.text and "local emergency number" in info.line



def _names(page: str, number: str) -> bool:
    """Whether the page names this phone number: as a number of its own, not as digits inside
    a random id or token (a task id ending in ...c6c5a2b79111 holds "911")."""
    return re.search(rf"(?<![\w-]){number}(?![\w-])", page) is not None

def test_the_text_and_names_speak_the_patients_language() -> None:
    info = outcomes.crisis_resources(Settings(), language="es",
                                     patient={"address": [{"country": "Alemania"}]})
    assert info.text.startswith("Si está en crisis") and "TelefonSeelsorge" in info.text
    assert info.contacts[-1].name == "Servicios de emergencia"
    assert info.contacts[0].links == (("Llamar al 0800 111 0 111", "tel:08001110111"),)
    assert info.line == "Si está en crisis, llame al 0800 111 0 111 o, en una emergencia, al 112."


def test_unknown_country_falls_back_to_the_practice_country_then_the_us_defaults() -> None:
    nowhere = {"address": [{"city": "Somewhere"}]}
    assert _numbers(outcomes.crisis_resources(Settings(), patient=nowhere)) == ["988", "911"]
    german = Settings(extra={"practice_country": "DE"})
    assert outcomes.crisis_resources(german, patient=nowhere).country == "DE"
    # a past address and an old one do not count; home comes first
    moved = {"address": [{"use": "old", "country": "US"},
                         {"country": "US", "period": {"end": "2020-01-01"}},
                         {"use": "work", "country": "US"}, {"use": "home", "country": "GB"}]}
    assert outcomes.crisis_resources(Settings(), patient=moved).country == "GB"
    with pytest.raises(ConfigurationError):
        outcomes.crisis_resources(Settings(extra={"practice_country": "Narnia"}))


def test_the_config_overrides_and_extends_per_country_and_keeps_its_own_list() -> None:
    settings = Settings(crisis_text="Call the clinic's crisis team.", extra={
        "practice_country": "US",
        "crisis_contacts": [
            {"name": "Clinic crisis team", "number": "555 0100"},
            {"name": "Emergency (ambulance)", "number": "119", "country": "JP"},
            {"name": "Krisendienst", "number": "0800 655 3000", "country": "Deutschland"},
        ]})
    us = outcomes.crisis_resources(settings, patient={"address": [{"country": "US"}]})
    assert us.text == "Call the clinic's crisis team." and _numbers(us) == ["555 0100"]
    assert _numbers(outcomes.crisis_resources(settings)) == ["555 0100"]  # country unknown
    japan = outcomes.crisis_resources(settings, patient={"address": [{"country": "Japan"}]})
    assert _numbers(japan) == ["119"] and "clinic" not in japan.text
    germany = outcomes.crisis_resources(settings, patient={"address": [{"country": "DE"}]})
    assert _numbers(germany) == ["0800 655 3000"]  # replaces the built-in German numbers
    spain = outcomes.crisis_resources(settings, patient={"address": [{"country": "ES"}]})
    assert _numbers(spain) == ["024", "112"]  # not configured: the built-in table
    with pytest.raises(ConfigurationError):
        outcomes.crisis_resources(Settings(extra={"crisis_contacts": [
            {"name": "X", "number": "112", "country": "Europe"}]}))


def test_country_codes_and_names() -> None:
    assert [country_code(v) for v in ("de", "DEU", "Germany", "  united states ", "", None)] == [
        "DE", "DE", "DE", "US", None, None]


def test_the_demo_clients_in_berlin_and_tokyo_are_not_told_to_call_988() -> None:
    patients = {r["id"]: r for r in demo_resources() if r["resourceType"] == "Patient"}
    ben = outcomes.crisis_resources(Settings(), patient=patients["pat-ben"])
    emi = outcomes.crisis_resources(Settings(), patient=patients["pat-emi"])
    ava = outcomes.crisis_resources(Settings(), patient=patients["pat-ava"])
    assert ben.country == "DE" and "112" in _numbers(ben) and "988" not in ben.text
    assert emi.country == "JP" and "988" not in emi.text + emi.line
    assert ava.country == "US" and _numbers(ava) == ["988", "911"]


# -- the pages ---------------------------------------------------------------------------------


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = patient_app(app_config)
    yield application
    application.extensions["hw_fhir"].close()


def _move(app: Any, patient: str, country: str, language: str | None = None) -> None:
    store = app.extensions["hw_fhir"].store
    resource = store.read("Patient", patient).resource
    resource = dict(resource, address=[{"use": "home", "city": "Berlin", "country": country}])
    if language:
        resource = with_language(resource, language)
    store.update(resource)


def test_a_patient_in_germany_sees_german_numbers_on_every_page(app: Any) -> None:
    _move(app, "pat-ava", "DE")
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    assert not _names(page, "988") and "0800 111 0 111" in page  # the footer of every page
    done = form_post(client, task, page, "submit", **phq9(item9="2"))
    confirmation = client.get(done.headers["Location"]).get_data(as_text=True)
    crisis = confirmation[confirmation.index('id="crisis"'):confirmation.index("</section>")]
    assert "TelefonSeelsorge" in crisis and 'href="tel:08001110111"' in crisis
    assert 'href="tel:112"' in crisis
    assert not _names(confirmation, "988") and not _names(confirmation, "911")
    messages = client.get("/my/messages").get_data(as_text=True)
    assert 'id="crisis"' in messages and "0800 111 0 111" in messages and not _names(messages, "988")
    for path in ("/my/", "/my/progress", "/my/preferences"):
        shown = client.get(path).get_data(as_text=True)
        assert not _names(shown, "988") and "0800 111 0 111" in shown, path
        assert 'data-crisis-line="If you are in crisis, call 0800 111 0 111' in shown  # offline


def test_a_spanish_speaking_patient_in_spain_sees_024_in_spanish(app: Any) -> None:
    _move(app, "pat-ava", "ES", language="es")
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    done = form_post(client, task, page, "submit", **phq9(item9="1"))
    confirmation = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "024 Línea de atención a la conducta suicida" in confirmation
    assert "Llamar al 024" in confirmation and not _names(confirmation, "988")
    assert "Si está en crisis, llame al 024 o, en una emergencia, al 112." in confirmation


def test_a_patient_in_the_us_still_sees_988(app: Any) -> None:
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    done = form_post(client, task, page, "submit", **phq9(item9="2"))
    confirmation = client.get(done.headers["Location"]).get_data(as_text=True)
    assert 'href="tel:988"' in confirmation and 'href="sms:988"' in confirmation


def test_the_recorded_scores_carry_the_patients_resources(app: Any) -> None:
    from hw_fhir.completion import response_for_task

    _move(app, "pat-ava", "GB")
    task = give_homework(app, "phq-9")
    client = app.test_client()
    page = sign_in(client, app, task)
    form_post(client, task, page, "submit", **phq9(item9="2"))
    store = app.extensions["hw_fhir"].store
    recorded = outcomes.record_scores(store, response_for_task(store, task["id"]))
    assert recorded.crisis is not None and recorded.crisis.country == "GB"
    assert [c.number for c in recorded.crisis.contacts] == ["116 123", "999"]


def test_the_crisis_note_of_an_activity_names_the_patients_numbers(app: Any) -> None:
    _move(app, "pat-ava", "DE")
    task = give_homework(app, "coping-card")
    page = sign_in(app.test_client(), app, task)
    assert not _names(page, "988") and not _names(page, "911")
    assert "TelefonSeelsorge free on 0800 111 0 111" in page


def test_a_us_patient_keeps_the_activitys_own_988_note(app: Any) -> None:
    task = give_homework(app, "coping-card")
    page = sign_in(app.test_client(), app, task)
    assert 'href="tel:988"' in page  # the activity's own rendering, with its links


def test_a_broken_crisis_config_is_reported_by_check_and_never_hides_help(
    app_config: dict[str, Any],
) -> None:
    from hw_fhir.outcomes.crisis import crisis_config_problems

    broken = Settings(extra={"practice_country": "Narnia",
                             "crisis_contacts": [{"name": "X", "number": "fax me"}]})
    problems = crisis_config_problems(broken)
    assert len(problems) == 2 and "practice_country" in problems[0] and "number" in problems[1]
    assert crisis_config_problems(Settings(extra={"practice_country": "de"})) == []
    application = patient_app({**app_config, "extra": {"practice_country": "Narnia"}})
    assert application.extensions["hw_fhir"].settings.extra["practice_country"] == "Narnia"
    try:
        task = give_homework(application, "phq-9")
        client = application.test_client()
        page = sign_in(client, application, task)
        done = form_post(client, task, page, "submit", **phq9(item9="2"))
        confirmation = client.get(done.headers["Location"])
        assert confirmation.status_code == 200 and 'href="tel:988"' in confirmation.get_data(
            as_text=True)  # Ava lives in the US: the built-in resources, not an error page
    finally:
        application.extensions["hw_fhir"].close()


def test_no_catalog_text_outside_the_crisis_notes_names_the_us_numbers() -> None:
    """Only the crisis notes are rewritten per country: any other text (a description, a
    question, a translation) naming 988 or 911 would tell a patient in Tokyo to call them."""
    from hw_fhir import catalog

    def texts(node: Any, path: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            if node.get("linkId") in outcomes.crisis.CRISIS_NOTE_IDS:
                return  # replaced by the patient's own resources (tests above)
            for key, value in node.items():
                yield from texts(value, f"{path}.{key}")
        elif isinstance(node, list):
            for n, value in enumerate(node):
                yield from texts(value, f"{path}[{n}]")
        elif isinstance(node, str):
            yield path, node

    found = [(q["id"], path) for q in catalog.load_questionnaires()
             for path, text in texts(q, "") if re.search(r"\b(988|911)\b", text)]
    assert found == []
