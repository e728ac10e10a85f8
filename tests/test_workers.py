"""Workers that scale: 4 worker processes on PostgreSQL share 10 000 due reminders (on CI).

Every reminder reaches the (de-duplicating) webhook receiver exactly once, even though
one worker is killed (SIGKILL) in the middle of the run: what it had claimed is taken
over by the others once its lease runs out, with the same idempotency keys.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from hw_fhir.reminders.tables import reminder_job
from hw_fhir.reminders import ATTEMPT_SYSTEM

from reminder_support import WebhookReceiver, make_services

pytestmark = pytest.mark.postgres

#: Due reminders: 10 000 on CI (``CI`` set); 2 000 on a development machine unless
#: ``HW_FHIR_WORKER_TEST_TASKS`` says otherwise (the full run takes minutes).
TASKS = int(os.environ.get("HW_FHIR_WORKER_TEST_TASKS", "10000" if os.environ.get("CI") else "2000"))
PATIENTS = 250
WORKERS = 4
SECRET = "worker-test-secret"
SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"


def _load(services, due: datetime) -> None:
    """Write the patients and the homework Tasks (as an EHR would through /fhir)."""
    store = services.store
    store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": f"wp{n}"},
         "request": {"method": "PUT", "url": f"Patient/wp{n}"}} for n in range(PATIENTS)]})
    stamp = due.strftime("%Y-%m-%dT%H:%M:%SZ")
    opens = (due - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for start in range(0, TASKS, 1000):
        store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {
                "resourceType": "Task", "id": f"wt{n}", "status": "requested", "intent": "order",
                "code": {"coding": [{"system": SDC_TEMP, "code": "complete-questionnaire"}]},
                "for": {"reference": f"Patient/wp{n % PATIENTS}"},
                "restriction": {"period": {"start": opens, "end": stamp}},
                "extension": [{"url": "http://hw-fhir.org/fhir/StructureDefinition/reminder-channel",
                               "valueCode": "webhook"}]},
             "request": {"method": "PUT", "url": f"Task/wt{n}"}}
            for n in range(start, min(start + 1000, TASKS))]})


def _counts(engine) -> dict[str, int]:
    j = reminder_job.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(j.status, sa.func.count()).where(j.purpose == "assigned")
                            .group_by(j.status)).fetchall()
    return {status: count for status, count in rows}


def test_four_workers_send_every_reminder_exactly_once_even_when_one_is_killed(pg_url, tmp_path):
    receiver = WebhookReceiver(SECRET)
    config = tmp_path / "hw-fhir.toml"
    config.write_text(
        f'[webhook]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n\n'
        '[reminders]\nquiet_start = "00:00"\nquiet_end = "00:00"\nmax_per_day = 0\n'
        'lease_seconds = 30\nbatch = 10\ndiscovery_lag_seconds = 0\n')
    services = make_services(tmp_path, db_url=pg_url)
    _load(services, datetime.now(timezone.utc) + timedelta(days=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
    env.update(HW_FHIR_CONFIG=str(config), HW_FHIR_DATABASE_URL=pg_url, HW_FHIR_PLUGINS="none",
               HW_FHIR_BASE_URL="https://hw.example.org", HW_FHIR_SECRET_KEY="worker-test",
               HW_FHIR_INSTANCE_PATH=str(tmp_path / "instance"))
    logs = [open(tmp_path / f"worker{n}.log", "w") for n in range(WORKERS)]
    code = "from smart_app.cli import main; main()"
    workers = [subprocess.Popen([sys.executable, "-c", code, "worker", "--poll", "0.5"], env=env,
                                stdout=log, stderr=subprocess.STDOUT) for log in logs]
    killed = workers[0]
    try:
        deadline = time.monotonic() + max(600, TASKS * 0.2)
        while len(receiver.deliveries) < TASKS // 4 and time.monotonic() < deadline:
            assert all(w.poll() is None for w in workers), Path(logs[0].name).read_text()[-3000:]
            time.sleep(0.2)
        in_flight = _counts(services.store.engine).get("sending", 0)
        killed.send_signal(signal.SIGKILL)  # mid-run: it may hold claimed jobs, mid-send
        killed.wait(timeout=30)
        while time.monotonic() < deadline:
            counts = _counts(services.store.engine)
            if counts.get("sent", 0) == TASKS:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"not all reminders were sent in time: {_counts(services.store.engine)}")
    finally:
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        for log in logs:
            log.close()
        receiver.stop()

    assert killed.returncode == -signal.SIGKILL
    assert all(w.returncode == 0 for w in workers[1:]), [Path(x.name).read_text()[-2000:] for x in logs]
    expected = {f"reminder/wt{n}/assigned#1" for n in range(TASKS)}
    assert set(receiver.deliveries) == expected  # every reminder delivered, once, with its key
    repeats = len(receiver.requests) - len(set(receiver.requests))
    assert repeats <= 10, "only the killed worker's batch in flight may have been repeated"
    assert receiver.refused == 0
    with services.store.engine.connect() as conn:
        workers_used = conn.execute(sa.select(sa.func.count(sa.distinct(reminder_job.c.worker)))
                                    .where(reminder_job.c.purpose == "assigned")).scalar_one()
        communications = conn.execute(sa.text(
            "SELECT count(*) FROM resource WHERE res_type = 'Communication' AND NOT deleted"
        )).scalar_one()
        keys = conn.execute(sa.text(
            "SELECT count(DISTINCT code) FROM sp_token WHERE res_type = 'Communication' "
            "AND param = 'identifier' AND system = :s"), {"s": ATTEMPT_SYSTEM}).scalar_one()
    assert workers_used >= WORKERS - 1  # the work was shared
    assert communications == TASKS and keys == TASKS  # one Communication per send, none twice
    assert in_flight >= 0
    services.close()
