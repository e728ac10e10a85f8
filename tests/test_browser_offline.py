"""Offline in headless Chromium: a phone fills an activity with no connection, and it is sent,
validated and scored once when the connection returns; an edit made meanwhile on another
device is shown, not overwritten; a patient who speaks Spanish reads all of it in Spanish.

"Offline" is two things at once, so that nothing reaches the server by a side door:
the DevTools protocol switches the page's network off (``Network.emulateNetworkConditions``,
which also makes ``navigator.onLine`` false and fires ``offline``/``online``), and the
server itself is stopped (emulation does not reliably cover the service worker's own
fetches); it is started again on the same port before the network is switched back on.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from browser_support import chromium, csp_violations
from patient_support import csrf, give_homework, link_for, patient_app, sign_in
from werkzeug.datastructures import MultiDict
from sqlalchemy import text
from werkzeug.serving import make_server

from hw_fhir.completion import response_for_task
from hw_fhir.i18n import with_language
from hw_fhir.store import iter_all

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 390, 844
PHQ9_TOTAL = "44261-6"


class Server:
    """The app over HTTP on one port, which can be stopped and started again (a flaky uplink)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = 0
        self.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import threading

        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def phone() -> Iterator[Any]:
    with chromium(WIDTH, HEIGHT, mobile=True) as browser:
        browser.set_script_timeout(30)
        yield browser


@pytest.fixture
def served(app_config: dict[str, Any]) -> Iterator[Server]:
    app = patient_app(app_config, secure_cookies=True)
    server = Server(app)
    yield server
    server.stop()
    app.extensions["hw_fhir"].close()


def _wait(driver: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout)


def _network(driver: Any, *, offline: bool) -> None:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})


def _ready_for_offline(driver: Any, served: Server, task_id: str) -> None:
    """Wait until the service worker controls the page and keeps the task page and the key."""
    from selenium.webdriver.common.by import By

    _wait(driver, 30).until(lambda d: d.execute_script("return !!navigator.serviceWorker.controller"))
    url = f"{served.url}/my/tasks/{task_id}"
    _wait(driver).until(lambda d: d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "caches.open('hw-pages-v1').then(c => c.match(arguments[0])).then(r => done(!!r), () => done(false));",
        url))
    _wait(driver).until(lambda d: d.execute_script("return !!sessionStorage.getItem('hw-draft-key')"))
    driver.get(url)  # the page the test goes offline from
    _wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "html[data-hw-offline=ready]"))


def _outbox(driver: Any) -> list[dict[str, Any]]:
    """The records kept on the device, with their sealed bytes as text (to look for plain answers)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const req = indexedDB.open('hw-offline', 1);"
        "req.onupgradeneeded = () => req.result.createObjectStore('outbox', {keyPath: 'task'});"
        "req.onsuccess = () => { const all = req.result.transaction('outbox').objectStore('outbox').getAll();"
        "  all.onsuccess = () => done(all.result.map(r => ({task: r.task, state: r.state,"
        "    bytes: new TextDecoder('latin1').decode(r.data)}))); };"
        "req.onerror = () => done(null);")


def _answer_phq9(driver: Any, choice: int) -> None:
    from selenium.webdriver.common.by import By

    for n in range(1, 10):
        driver.find_element(By.CSS_SELECTOR, f"label[for='f-phq9-{n}-{choice}']").click()
    driver.find_element(By.CSS_SELECTOR, "label[for='f-phq9-10-0']").click()


def _go_offline(driver: Any, served: Server, task_id: str) -> None:
    from selenium.webdriver.common.by import By

    _network(driver, offline=True)
    served.stop()
    driver.get(f"{served.url}/my/tasks/{task_id}")  # from the service worker's cache
    _wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "html[data-hw-offline=ready]"))
    assert driver.find_elements(By.ID, "hw-form")
    assert driver.execute_script("return navigator.onLine") is False


def _wait_kept(driver: Any, words: str = "Waiting to be sent") -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    try:
        _wait(driver).until(lambda d: words in d.find_element(By.ID, "outbox").text)
    except TimeoutException:
        status = driver.find_element(By.CSS_SELECTOR, "[data-hw-status]").text
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        raise AssertionError(f"not kept: status {status!r}, outbox {_outbox(driver)}, log {logs}") from None


def _no_later_autosave_notice(driver: Any) -> None:
    """The autosave that was due 1.5 s after the last answer does not replace the "kept" notice
    with "your answers will be saved when you tap Save" (they were: the patient tapped it)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    kept = driver.find_element(By.CSS_SELECTOR, "[data-hw-status]").text
    try:
        _wait(driver, 3).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-hw-status]").text != kept)
    except TimeoutException:
        return
    raise AssertionError(
        f"the notice changed to {driver.find_element(By.CSS_SELECTOR, '[data-hw-status]').text!r}")


def _kept_pages(driver: Any) -> list[str]:
    kept = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "caches.keys().then(names => Promise.all(names.map(n => caches.open(n).then(c => c.keys()))))"
        ".then(lists => done(lists.flat().map(r => new URL(r.url).pathname)));")
    return [p for p in kept if p.startswith("/my/") and not p.endswith(".webmanifest")]


def _observations(app: Any, response: dict[str, Any]) -> list[dict[str, Any]]:
    found = iter_all(app.extensions["hw_fhir"].store, "Observation",
                     [("derived-from", f"QuestionnaireResponse/{response['id']}")])
    return [o for o in found if any(c.get("code") == PHQ9_TOTAL for c in o["code"].get("coding", []))]


def test_an_activity_filled_offline_is_sent_once_validated_and_scored(phone: Any, served: Server) -> None:
    from selenium.webdriver.common.by import By

    app = served.app
    store = app.extensions["hw_fhir"].store
    task = give_homework(app, "phq-9")
    other = give_homework(app, "mood-log", days=2)  # never opened: kept from the to-do list
    phone.get(served.url + link_for(app, task))
    _wait(phone, 30).until(lambda d: d.execute_script("return !!navigator.serviceWorker.controller"))
    phone.get(served.url + "/my/")
    _ready_for_offline(phone, served, other["id"])

    _go_offline(phone, served, other["id"])
    assert phone.find_element(By.ID, "hw-form").get_attribute("data-task") == other["id"]
    phone.get(served.url + "/my/progress")  # never opened: a plain offline page, not an error
    assert phone.find_element(By.ID, "offline").text == "You are offline"
    phone.get(served.url + "/my/")
    _wait(phone).until(lambda d: d.find_elements(By.ID, f"task-{task['id']}"))  # the list, offline
    phone.find_element(By.CSS_SELECTOR, f"#task-{task['id']} a.button").click()
    _wait(phone).until(lambda d: d.find_elements(By.CSS_SELECTOR, "html[data-hw-offline=ready]"))
    _answer_phq9(phone, 2)
    phone.find_element(By.ID, "submit-button").click()
    _wait_kept(phone)
    _no_later_autosave_notice(phone)
    status = phone.find_element(By.CSS_SELECTOR, "[data-hw-status]").text
    assert "kept on this device" in status and "988" in status  # crisis line at once, even offline
    kept = _outbox(phone)
    assert [(r["task"], r["state"]) for r in kept] == [(task["id"], "waiting")]
    assert "phq9" not in kept[0]["bytes"] and "submit" not in kept[0]["bytes"]  # sealed (AES-GCM)
    assert response_for_task(store, task["id"]) is None

    served.start()
    _network(phone, offline=False)  # "online" fires: the answers are sent
    _wait(phone, 30).until(lambda d: d.find_elements(By.ID, "confirmation"))
    response = response_for_task(store, task["id"])
    assert response["status"] == "completed"
    # arrived once: one response, written straight as completed (scoring adds a version, as online)
    assert len(iter_all(store, "QuestionnaireResponse", [("subject", "Patient/pat-ava")])) == 1
    versions = store.history("QuestionnaireResponse", response["id"]).entries
    assert {v.resource["status"] for v in versions} == {"completed"}
    task_versions = [v.resource["status"] for v in store.history("Task", task["id"]).entries]
    assert task_versions.count("completed") == 1
    assert store.read("Task", task["id"]).resource["status"] == "completed"
    totals = _observations(app, response)
    assert len(totals) == 1 and totals[0]["valueQuantity"]["value"] == 18
    assert not csp_violations(phone)
    _wait(phone).until(lambda d: _outbox(d) == [])
    assert not phone.find_element(By.ID, "outbox").is_displayed()

    # signing out forgets the key and everything kept on this device
    phone.find_element(By.CSS_SELECTOR, "footer form button").click()
    _wait(phone).until(lambda d: d.find_elements(By.CSS_SELECTOR, "body[data-signed-out]"))
    def forgotten(driver: Any) -> bool:
        return not _kept_pages(driver) and not driver.execute_script(
            "return sessionStorage.getItem('hw-draft-key')")

    _wait(phone).until(forgotten)  # only the app's static files may stay


def test_an_edit_made_meanwhile_on_another_device_is_shown_not_overwritten(phone: Any,
                                                                           served: Server) -> None:
    from selenium.webdriver.common.by import By

    app = served.app
    store = app.extensions["hw_fhir"].store
    task = give_homework(app, "phq-9")
    phone.get(served.url + link_for(app, task))
    _wait(phone).until(lambda d: d.find_elements(By.ID, "hw-form"))
    _ready_for_offline(phone, served, task["id"])

    _go_offline(phone, served, task["id"])
    _answer_phq9(phone, 1)
    phone.find_element(By.ID, "submit-button").click()
    _wait_kept(phone)

    laptop = app.test_client()  # meanwhile, on another device
    page = sign_in(laptop, app, task)
    fields = MultiDict([("csrf_token", csrf(page)), ("_action", "save"), ("_version", ""),
                        *((f"q:phq9-{n}", "3") for n in range(1, 5))])
    assert laptop.post(f"/my/tasks/{task['id']}", data=fields).status_code == 302
    theirs = response_for_task(store, task["id"])

    served.start()
    _network(phone, offline=False)
    _wait(phone, 30).until(lambda d: d.find_elements(By.ID, "kept-answers"))
    assert "changed on another device" in phone.find_element(By.ID, "kept-answers").text
    assert phone.find_element(By.ID, "f-phq9-1-3").is_selected()  # their answers are shown
    now = response_for_task(store, task["id"])
    assert now["meta"]["versionId"] == theirs["meta"]["versionId"] and now["status"] == "in-progress"
    assert store.read("Task", task["id"]).resource["status"] != "completed"
    assert [r["state"] for r in _outbox(phone)] == ["conflict"]

    phone.find_element(By.ID, "use-kept").click()  # the patient chooses this device's answers
    assert phone.find_element(By.ID, "f-phq9-1-1").is_selected()
    phone.find_element(By.ID, "submit-button").click()
    _wait(phone, 30).until(lambda d: d.find_elements(By.ID, "confirmation"))
    final = response_for_task(store, task["id"])
    assert final["status"] == "completed"
    assert len(_observations(app, final)) == 1 and _observations(app, final)[0]["valueQuantity"]["value"] == 9
    assert _outbox(phone) == []

    # the session ends on the server (expiry): the next page answers 401 and nothing stays cached
    assert _kept_pages(phone)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM smart_web_session"))
    phone.get(f"{served.url}/my/")
    _wait(phone).until(lambda d: not _kept_pages(d))


def test_a_spanish_patient_who_loses_the_connection_reads_spanish(phone: Any, served: Server) -> None:
    """An English phone, a patient who speaks Spanish: offline, the notice under the form, the
    "waiting to be sent" box and the page the phone never kept are in Spanish."""
    from selenium.webdriver.common.by import By

    app = served.app
    store = app.extensions["hw_fhir"].store
    store.update(with_language(store.read("Patient", "pat-carmen").resource, "es"))
    task = give_homework(app, "phq-9", patient="pat-carmen")
    phone.get(served.url + link_for(app, task))
    _wait(phone).until(lambda d: d.find_elements(By.ID, "hw-form"))
    _ready_for_offline(phone, served, task["id"])

    _go_offline(phone, served, task["id"])
    assert phone.find_element(By.TAG_NAME, "html").get_attribute("lang") == "es"
    _answer_phq9(phone, 1)
    phone.find_element(By.ID, "submit-button").click()
    _wait_kept(phone, "Pendiente de enviar cuando vuelva a tener conexión")
    _no_later_autosave_notice(phone)
    status = phone.find_element(By.CSS_SELECTOR, "[data-hw-status]").text
    assert status.startswith("No tiene conexión. Sus respuestas se guardan en este dispositivo"), status
    assert "Si está en crisis" in status and "offline" not in status  # the crisis line, in Spanish
    outbox = phone.find_element(By.ID, "outbox").text
    assert "Cuestionario sobre la salud del paciente-9" in outbox and "Waiting" not in outbox
    phone.get(served.url + "/my/progress")  # never opened: the service worker's page, in Spanish
    assert phone.find_element(By.ID, "offline").text == "No tiene conexión"
    assert phone.find_element(By.TAG_NAME, "html").get_attribute("lang") == "es"
    assert "Encontrará su lista en Por hacer" in phone.find_element(By.TAG_NAME, "main").text

    served.start()
    _network(phone, offline=False)
    phone.get(f"{served.url}/my/tasks/{task['id']}")  # "online" sends what was kept
    _wait(phone, 30).until(lambda d: _outbox(d) == [])
    assert response_for_task(store, task["id"])["status"] == "completed"
    assert not csp_violations(phone)


#: Stands in for the page's words not having reached the service worker yet (a first visit that
#: loses the connection before the worker kept them): the page's messages arrive without them.
_NO_WORDS_FOR_THE_WORKER = """
(function () {
  var post = ServiceWorker.prototype.postMessage;
  ServiceWorker.prototype.postMessage = function (message) {
    var copy = Object.assign({}, message);
    delete copy.text;
    return post.apply(this, [copy].concat([].slice.call(arguments, 1)));
  };
})();
"""


def test_a_spanish_patients_first_offline_page_is_in_spanish(phone: Any, served: Server) -> None:
    """Before any page handed the service worker its words, the page it never kept is already
    in Spanish: her pages register the worker with her language. The app she installs is
    named in Spanish too (the manifest Chromium reads)."""
    import json

    from selenium.webdriver.common.by import By

    app = served.app
    store = app.extensions["hw_fhir"].store
    store.update(with_language(store.read("Patient", "pat-carmen").resource, "es"))
    task = give_homework(app, "phq-9", patient="pat-carmen")
    phone.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _NO_WORDS_FOR_THE_WORKER})
    phone.get(served.url + link_for(app, task))
    _wait(phone).until(lambda d: d.find_elements(By.ID, "hw-form"))
    _ready_for_offline(phone, served, task["id"])
    manifest = phone.execute_cdp_cmd("Page.getAppManifest", {})
    assert manifest["url"] == served.url + "/my/manifest.es.webmanifest", manifest
    assert json.loads(manifest["data"])["name"] == "Práctica en casa"
    assert not [e for e in manifest.get("errors", []) if e.get("critical")], manifest["errors"]
    words_kept = phone.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "caches.open('hw-text-v1').then(c => c.keys()).then(k => done(k.length), () => done(-1));")
    assert words_kept == 0  # the worker has only what it was registered with

    _go_offline(phone, served, task["id"])
    phone.get(served.url + "/my/progress")  # never opened: the service worker's own page
    assert phone.find_element(By.ID, "offline").text == "No tiene conexión"
    assert phone.find_element(By.TAG_NAME, "html").get_attribute("lang") == "es"
    assert phone.title == "Sin conexión"
    assert "Encontrará su lista en Por hacer" in phone.find_element(By.TAG_NAME, "main").text
    served.start()
    _network(phone, offline=False)
