"""The scale-out recipe of docs/deploy.md, run for real: two web nodes (``hw-fhir serve`` on
two ports, each with its own instance folder) and two workers (``hw-fhir worker``) against
one PostgreSQL schema, all started at once (the start-up lock lets one migrate and load the
library). A full cycle goes through both nodes: the EHR writes the Patient through node A
and the homework Task through node B; a worker emails the reminder (aiosmtpd); the patient
opens the secure link on node B and submits on node A; the score is read from node B.
Exactly one email is sent.
"""

from __future__ import annotations

import email
import html
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller

from hw_fhir.assignment import HomeworkDetails, build_task
from reminder_support import preferences_extension
from sync_support import free_port

HW_FHIR = str(Path(sys.executable).with_name("hw-fhir"))
PHQ9 = "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0"

pytestmark = pytest.mark.postgres


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def _wait(url: str, processes: list[subprocess.Popen[bytes]], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for p in processes:
            assert p.poll() is None, f"{p.args} exited with {p.returncode}"
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Any:
    mailbox = _Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    ports = [free_port(), free_port()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
    env.update(HW_FHIR_DATABASE_URL=pg_url, HW_FHIR_SECRET_KEY="s" * 48,
               HW_FHIR_BASE_URL=f"http://127.0.0.1:{ports[0]}", HW_FHIR_OPEN_API="1",
               HW_FHIR_SECURE_COOKIES="0", HW_FHIR_SMTP_PORT=str(smtp.port),
               HW_FHIR_PLUGINS="none")
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for n, port in enumerate(ports):  # until i16a lands: one server worker per node
            log = (tmp_path / f"web{n}.log").open("wb")
            logs.append(log)
            processes.append(subprocess.Popen(
                [HW_FHIR, "serve", "--port", str(port), "--workers", "1", "--threads", "4"],
                env={**env, "HW_FHIR_INSTANCE_PATH": str(tmp_path / f"web{n}")},
                stdout=log, stderr=subprocess.STDOUT))
        for n in range(2):
            log = (tmp_path / f"worker{n}.log").open("wb")
            logs.append(log)
            processes.append(subprocess.Popen(
                [HW_FHIR, "worker", "--poll", "0.5"],
                env={**env, "HW_FHIR_INSTANCE_PATH": str(tmp_path / f"worker{n}")},
                stdout=log, stderr=subprocess.STDOUT))
        for port in ports:
            _wait(f"http://127.0.0.1:{port}/healthz", processes)
        yield {"a": f"http://127.0.0.1:{ports[0]}", "b": f"http://127.0.0.1:{ports[1]}",
               "mailbox": mailbox, "logs": tmp_path}
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
        smtp.stop()


def _fhir(base: str) -> str:
    return f"{base}/fhir"


def test_two_web_nodes_two_workers_one_postgresql(cluster: dict[str, Any]) -> None:
    a, b, mailbox = cluster["a"], cluster["b"], cluster["mailbox"]
    headers = {"Content-Type": "application/fhir+json"}
    for base in (a, b):  # both nodes see the whole library, loaded once
        count = requests.get(f"{_fhir(base)}/Questionnaire", params={"_summary": "count"},
                             timeout=10).json()
        assert count["total"] > 20
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1990-05-17",
               "name": [{"given": ["Pia"], "family": "Example"}],
               "telecom": [{"system": "email", "value": "pia@example.org"}],
               "extension": [preferences_extension(quiet=("00:00:00", "00:00:00"))]}
    assert requests.put(f"{_fhir(a)}/Patient/p1", json=patient, headers=headers,
                        timeout=10).status_code in (200, 201)
    now = datetime.now(timezone.utc)
    task = build_task(canonical=PHQ9, patient="Patient/p1", practitioner="Practitioner/dr-x",
                      details=HomeworkDetails(instructions="Before Friday", reminder_channel="email"),
                      due=now + timedelta(days=2), opens=now, now=now)
    created = requests.post(f"{_fhir(b)}/Task", json=task, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not mailbox.messages:
        time.sleep(0.5)
    assert mailbox.messages, "no reminder email within 60 s: " + "".join(
        (cluster["logs"] / f"worker{n}.log").read_text()[-2000:] for n in range(2))
    body = email.message_from_bytes(mailbox.messages[0][1], policy=policy.default)
    text = body.get_body(("plain",)).get_content()
    link = re.search(r"http://127\.0\.0\.1:\d+/p/\S+", text)
    assert link, text
    on_b = b + link.group(0).split(a, 1)[1]  # the link, opened on the other node

    browser = requests.Session()
    opened = browser.get(on_b, timeout=10)
    assert opened.status_code == 200 and "PHQ-9" in opened.text, opened.text[:500]
    token = html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', opened.text).group(1))
    form = {"csrf_token": token, "_action": "submit",
            **{f"q:phq9-{n}": "2" for n in range(1, 10)}, "q:phq9-10": "1"}
    submitted = browser.post(f"{a}/my/tasks/{task_id}", data=form, timeout=10)  # on node A
    assert submitted.status_code == 200 and submitted.url.endswith(f"/my/tasks/{task_id}/done")

    scores = requests.get(f"{_fhir(b)}/Observation",
                          params={"subject": "Patient/p1", "code": "http://loinc.org|44261-6"},
                          timeout=10).json()
    assert [e["resource"]["valueQuantity"]["value"] for e in scores["entry"]] == [18]
    done = requests.get(f"{_fhir(a)}/Task/{task_id}", timeout=10).json()
    assert done["status"] == "completed"
    time.sleep(2)  # both workers keep polling: still exactly one reminder
    assert [to for to, _ in mailbox.messages] == [["pia@example.org"]]
