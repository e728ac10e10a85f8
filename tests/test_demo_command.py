"""The README's first command, as a newcomer runs it: ``hw-fhir demo`` in an empty folder.

A subprocess on a free port, real HTTP: the whole catalog is in the library, the
worker runs in the process (a reminder with a working ``/p/`` link reaches
``/sandbox/inbox.json`` within 60 s, a Bulk ``$export`` completes), the patient's
secure link opens their list, and the demo history is there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from hw_fhir import catalog
from smart_support import BackendClient, secure_cookies_over_http
from sync_support import free_port

HW_FHIR = str(Path(sys.executable).with_name("hw-fhir"))


def _toml_client(client: BackendClient) -> str:
    """Return a ``[[smart.sandbox_clients]]`` table for a backend client (inline JWKS)."""
    keys = ", ".join("{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in key.items()) + " }"
                     for key in client.config["jwks"]["keys"])
    return ("[[smart.sandbox_clients]]\n"
            f"client_id = {json.dumps(client.client_id)}\n"
            'token_endpoint_auth_method = "private_key_jwt"\n'
            f"scope = {json.dumps(client.scope)}\n"
            f"jwks = {{ keys = [ {keys} ] }}\n")


def _wait_for(url: str, process: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"hw-fhir demo exited with {process.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("fresh-clone")
    client = BackendClient.create("demo-sync", scope="system/*.rs")
    (folder / "sync.toml").write_text(_toml_client(client))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
    env["HW_FHIR_CONFIG"] = str(folder / "sync.toml")
    log = (folder / "demo.log").open("w")
    process = subprocess.Popen([HW_FHIR, "demo", "--port", str(port)], cwd=folder, env=env,
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/healthz", process, 120)
        yield {"base": base, "folder": folder, "client": client, "process": process}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _token(demo: dict[str, Any]) -> str:
    response = demo["client"].token_request(demo["base"])
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_demo_prints_where_to_click(demo: dict[str, Any]) -> None:
    out = (demo["folder"] / "demo.log").read_text()
    assert f"{demo['base']}/sandbox/inbox" in out
    assert f"{demo['base']}/sandbox/" in out
    assert "Traceback" not in out


def test_demo_sessions_in_the_sandbox_ehr_are_todays(demo: dict[str, Any]) -> None:
    """The EHR's open sessions (Encounters) began today, not on a fixed day of March."""
    from datetime import datetime, timedelta, timezone

    page = requests.get(f"{demo['base']}/sandbox/", timeout=10).text
    days = set(re.findall(r"Psychotherapy session with [^(]*\((\d{4}-\d{2}-\d{2})\)", page))
    today = datetime.now(timezone.utc).date()
    assert days and days <= {today.isoformat(), (today - timedelta(days=1)).isoformat()}, days


def test_demo_library_has_the_full_catalog(demo: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {_token(demo)}"}
    found = requests.get(f"{demo['base']}/fhir/Questionnaire", params={"_summary": "count"},
                         headers=headers, timeout=10).json()
    assert found["total"] == len(catalog.load_questionnaires())


def test_demo_has_history(demo: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {_token(demo)}"}
    scores = requests.get(f"{demo['base']}/fhir/Observation",
                          params={"subject": "Patient/pat-ava", "code": "http://loinc.org|44261-6",
                                  "_sort": "date", "_count": "50"},
                          headers=headers, timeout=10).json()
    values = [e["resource"]["valueQuantity"]["value"] for e in scores.get("entry", [])]
    assert len(values) >= 8 and values[0] > values[-1] + 5  # Ava improves
    flags = requests.get(f"{demo['base']}/fhir/Flag", params={"subject": "Patient/pat-ben"},
                         headers=headers, timeout=10).json()
    statuses = sorted(e["resource"]["status"] for e in flags.get("entry", []))
    assert statuses == ["active", "inactive"]  # one acknowledged, one still active


def test_demo_reminder_reaches_the_inbox_and_its_link_opens_the_list(demo: dict[str, Any]) -> None:
    deadline = time.monotonic() + 60
    links: list[str] = []
    while time.monotonic() < deadline and not links:
        messages = requests.get(f"{demo['base']}/sandbox/inbox.json", timeout=10).json()
        links = [m["link"] for m in messages if "/p/" in (m.get("link") or "")]
        if not links:
            time.sleep(1)
    assert links, "no reminder with a secure link reached the demo inbox within 60 s"
    message = next(m for m in messages if m["link"] == links[0])
    assert set(message) == {"to", "channel", "subject", "body", "link", "sent"}
    assert message["link"] in message["body"]
    html = requests.get(f"{demo['base']}/sandbox/inbox", timeout=10).text
    assert message["to"] in html and links[0] in html
    with secure_cookies_over_http():
        browser = requests.Session()
        opened = browser.get(links[0], timeout=10)
        assert opened.status_code == 200, opened.text
        todo = browser.get(f"{demo['base']}/my/", timeout=10)
    assert todo.status_code == 200
    assert "Daily mood log" in todo.text


def test_demo_export_completes(demo: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {_token(demo)}", "Accept": "application/fhir+json",
               "Prefer": "respond-async"}
    kick = requests.get(f"{demo['base']}/fhir/$export", params={"_type": "Patient"},
                        headers=headers, timeout=10)
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["Content-Location"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = requests.get(status_url, headers={"Authorization": headers["Authorization"]},
                              timeout=10)
        if status.status_code == 200:
            manifest = status.json()
            assert [o["type"] for o in manifest["output"]] == ["Patient"]
            return
        assert status.status_code == 202, status.text
        time.sleep(1)
    raise AssertionError("$export did not complete within 60 s: no worker?")


def _links_after_welcome(base: str) -> set[str]:
    """Wait for the welcome homework's reminder; return the secure links in the inbox."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        links = {m["link"] for m in requests.get(f"{base}/sandbox/inbox.json", timeout=10).json()
                 if "/p/" in (m["link"] or "")}
        if links:
            return links
        time.sleep(1)
    raise AssertionError("the welcome homework's reminder did not arrive")


def _awake_demo_client() -> tuple[str, str, str]:
    """Return (patient id, clinician id, reminder channel) of a demo client awake now (09-20 local)."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from hw_fhir.demo import demo_resources

    now = datetime.now(timezone.utc)
    for patient in (r for r in demo_resources() if r["resourceType"] == "Patient"):
        zone = next(e["valueCode"] for e in patient["extension"] if e["url"].endswith("/timezone"))
        if 9 <= now.astimezone(ZoneInfo(zone)).hour < 20:
            systems = {t["system"] for t in patient["telecom"]}
            gp = patient["generalPractitioner"][0]["reference"].split("/")[1]
            return patient["id"], gp, "email" if "email" in systems else "sms"
    raise AssertionError("no demo client is awake now")


def test_demo_by_clicking_only_launch_assign_inbox_complete_score(demo: dict[str, Any]) -> None:
    import html as htmllib
    import re
    from datetime import date, timedelta

    from smart_support import Browser, form_fields

    pid, gp, channel = _awake_demo_client()
    base = demo["base"]
    before = _links_after_welcome(base)
    with secure_cookies_over_http():
        clinician = Browser(base)
        launch = clinician.ehr_launch(gp, pid).launch_id  # the sandbox EHR's Launch button
        form_page = clinician.get(f"/clinician/patients/{pid}/assign/phq-9?launch={launch}").text
        _, hidden = form_fields(form_page)
        start = date.fromisoformat(re.search(r'name="start"[^>]*value="([^"]+)"', form_page).group(1))
        posted = clinician.post(f"/clinician/patients/{pid}/assign/phq-9?launch={launch}", data={
            **hidden, "frequency": "once", "start": (start + timedelta(days=1)).isoformat(),
            "time": "19:00", "instructions": "Before our next session, please.",
            "wording": "check-in", "channel": channel})
        assert posted.status_code == 303, posted.text[:2000]
        confirmation = clinician.get(posted.headers["Location"]).text
        assert re.search(r'id="demo-link">http://127\.0\.0\.1:\d+/p/', confirmation)

        deadline = time.monotonic() + 60
        new: list[str] = []
        while time.monotonic() < deadline and not new:
            inbox = requests.get(f"{base}/sandbox/inbox.json", timeout=10).json()
            new = [m["link"] for m in inbox if "/p/" in (m["link"] or "") and m["link"] not in before]
            time.sleep(1)
        assert len(new) == 1, "the new homework's reminder did not reach the inbox within 60 s"
        link = new[0]

        phone = requests.Session()  # the patient's phone
        task_page = phone.get(link, timeout=10)
        assert task_page.status_code == 200 and "PHQ-9" in task_page.text
        action = htmllib.unescape(re.search(r'<form method="post" action="([^"]+)" id="hw-form"',
                                            task_page.text).group(1))
        token = htmllib.unescape(re.search(r'name="csrf_token" value="([^"]+)"', task_page.text).group(1))
        done = phone.post(f"{base}{action}", data={
            "csrf_token": token, "_action": "submit",
            **{f"q:phq9-{n}": "1" for n in range(1, 10)}, "q:phq9-10": "0"}, timeout=10)
        assert done.status_code == 200 and "/done" in done.url, done.text[:1000]

        dashboard = clinician.get(f"/clinician/patients/{pid}?launch={launch}").text
    headers = {"Authorization": f"Bearer {_token(demo)}"}
    scores = requests.get(f"{base}/fhir/Observation", headers=headers, timeout=10, params={
        "subject": f"Patient/{pid}", "code": "http://loinc.org|44261-6", "_sort": "-_lastUpdated",
        "_count": "1"}).json()
    latest = scores["entry"][0]["resource"]
    assert latest["valueQuantity"]["value"] == 9  # nine items answered "several days"
    response_id = latest["derivedFrom"][0]["reference"].split("/")[1]
    assert f"/responses/{response_id}" in dashboard  # the score is on the clinician's dashboard
