"""A PostgreSQL reminder worker killed (SIGKILL) again and again mid-batch sends each email once,
except at most the one message in flight at each kill.

Real parts: PostgreSQL, `hw-fhir worker` processes, a real SMTP server (aiosmtpd) that
counts Message-IDs (the email channel's idempotency key). Each killed worker is replaced
by a new one; its claimed jobs are taken over once their lease runs out.
"""

from __future__ import annotations

import email
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from hw_fhir.reminders.tables import reminder_job

from reminder_support import REMINDER_CHANNEL, SDC_TEMP, make_services

pytestmark = pytest.mark.postgres

TASKS = 240
KILLS = 4


class CountingInbox:
    """An SMTP server's handler: keeps every Message-ID; answers like a real, slow-ish server."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        await asyncio.sleep(0.02)  # a real mail server takes a moment per message
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.ids.append(str(message["Message-ID"]))
        return "250 Message accepted for delivery"

    def count(self) -> int:
        with self.lock:
            return len(self.ids)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _load(services, due: datetime) -> None:
    stamp = due.strftime("%Y-%m-%dT%H:%M:%SZ")
    opens = (due - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    services.store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": f"kp{n}",
                      "telecom": [{"system": "email", "value": f"kp{n}@example.org"}]},
         "request": {"method": "PUT", "url": f"Patient/kp{n}"}} for n in range(TASKS)] + [
        {"resource": {
            "resourceType": "Task", "id": f"kt{n}", "status": "requested", "intent": "order",
            "code": {"coding": [{"system": SDC_TEMP, "code": "complete-questionnaire"}]},
            "for": {"reference": f"Patient/kp{n}"},
            "restriction": {"period": {"start": opens, "end": stamp}},
            "extension": [{"url": REMINDER_CHANNEL, "valueCode": "email"}]},
         "request": {"method": "PUT", "url": f"Task/kt{n}"}} for n in range(TASKS)]})


def _sent(engine) -> int:
    j = reminder_job.c
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(
            j.purpose == "assigned", j.status == "sent")).scalar_one()


def test_killing_a_postgresql_worker_mid_batch_repeats_at_most_the_message_in_flight(pg_url, tmp_path):
    inbox = CountingInbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    config = tmp_path / "hw-fhir.toml"
    config.write_text('[reminders]\nquiet_start = "00:00"\nquiet_end = "00:00"\nmax_per_day = 0\n'
                      'lease_seconds = 4\nbatch = 20\ndiscovery_lag_seconds = 0\n')
    services = make_services(tmp_path, db_url=pg_url)
    _load(services, datetime.now(timezone.utc) + timedelta(days=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
    env.update(HW_FHIR_CONFIG=str(config), HW_FHIR_DATABASE_URL=pg_url, HW_FHIR_PLUGINS="none",
               HW_FHIR_BASE_URL="https://hw.example.org", HW_FHIR_SECRET_KEY="kill-test",
               HW_FHIR_INSTANCE_PATH=str(tmp_path / "instance"),
               HW_FHIR_SMTP_HOST="127.0.0.1", HW_FHIR_SMTP_PORT=str(smtp.port))
    code = "from smart_app.cli import main; main()"
    log = open(tmp_path / "workers.log", "w")

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code, "worker", "--poll", "0.2"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)

    worker = start()
    kills = 0
    try:
        deadline = time.monotonic() + 300
        for _ in range(KILLS):
            target = inbox.count() + 25  # well into a batch of 20, wherever it started
            while inbox.count() < target and time.monotonic() < deadline:
                assert worker.poll() is None, Path(log.name).read_text()[-3000:]
                time.sleep(0.01)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            kills += 1
            worker = start()
        while _sent(services.store.engine) < TASKS and time.monotonic() < deadline:
            assert worker.poll() is None, Path(log.name).read_text()[-3000:]
            time.sleep(0.3)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        smtp.stop()
        services.close()

    assert kills == KILLS
    counts = Counter(inbox.ids)
    assert len(counts) == TASKS, f"{len(counts)} of {TASKS} reminders arrived"
    repeats = sum(n - 1 for n in counts.values())
    assert repeats <= KILLS, f"{repeats} duplicate emails after {KILLS} kills (at most one each)"
