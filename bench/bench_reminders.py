"""Reminder sweep on PostgreSQL: reminders/s with 1, 2 and 4 worker processes, and peak memory.

    python bench/bench_reminders.py [--n 100000] [--workers 1,2,4] [--patients 2000]

For each worker count: a fresh schema gets ``n`` homework Tasks (written as an EHR
would, through transaction Bundles, so the workers discover them), then that many
``hw-fhir worker`` processes discover, plan and send every "assigned" reminder to a
signed webhook served by this script (de-duplicating by Idempotency-Key). Printed:
the time until every reminder was sent, reminders/s, every worker's peak RSS
(``VmHWM``), and — for memory flatness — the peak RSS of one worker over ``n/10``
Tasks, which should be about the same as over ``n``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hw_fhir.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature  # noqa: E402
from hw_fhir.reminders.tables import reminder_job  # noqa: E402
from hw_fhir.store import open_store  # noqa: E402

PG = os.environ.get("HW_FHIR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "bench-secret"
SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"


class Receiver:
    """Count signed webhook deliveries, once per Idempotency-Key."""

    def __init__(self) -> None:
        keys: set[str] = set()
        lock = threading.Lock()
        self.keys = keys

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                verify_signature(SECRET, body, self.headers.get(TIMESTAMP_HEADER),
                                 self.headers.get(SIGNATURE_HEADER))
                with lock:
                    keys.add(self.headers.get("Idempotency-Key", ""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _schema() -> tuple[str, str, sa.Engine]:
    schema = f"bench_rem_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    return schema, f"{PG}?options=-csearch_path%3D{schema}", admin


def _load(url: str, n: int, patients: int) -> float:
    store = open_store(url)
    start = time.perf_counter()
    due = datetime.now(timezone.utc) + timedelta(days=2)
    stamp, opens = due.strftime("%Y-%m-%dT%H:%M:%SZ"), (due - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for first in range(0, patients, 1000):
        store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": f"bp{i}"},
             "request": {"method": "PUT", "url": f"Patient/bp{i}"}}
            for i in range(first, min(first + 1000, patients))]})
    for first in range(0, n, 1000):
        store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {
                "resourceType": "Task", "id": f"bt{i}", "status": "requested", "intent": "order",
                "code": {"coding": [{"system": SDC_TEMP, "code": "complete-questionnaire"}]},
                "for": {"reference": f"Patient/bp{i % patients}"},
                "restriction": {"period": {"start": opens, "end": stamp}},
                "extension": [{"url": "http://hw-fhir.org/fhir/StructureDefinition/reminder-channel",
                               "valueCode": "webhook"}]},
             "request": {"method": "PUT", "url": f"Task/bt{i}"}}
            for i in range(first, min(first + 1000, n))]})
    store.dispose()
    return time.perf_counter() - start


def _peak_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(n: int, workers: int, patients: int) -> dict[str, Any]:
    """Load n Tasks, sweep them with ``workers`` processes; return the figures."""
    schema, url, admin = _schema()
    receiver = Receiver()
    tmp = Path(tempfile.mkdtemp())
    config = tmp / "hw-fhir.toml"
    config.write_text(f'[webhook]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n\n'
                      '[reminders]\nquiet_start = "00:00"\nquiet_end = "00:00"\nmax_per_day = 0\n'
                      'discovery_lag_seconds = 0\nbatch = 20\n')
    try:
        load_seconds = _load(url, n, patients)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
        env.update(HW_FHIR_CONFIG=str(config), HW_FHIR_DATABASE_URL=url, HW_FHIR_PLUGINS="none",
                   HW_FHIR_BASE_URL="https://hw.example.org", HW_FHIR_SECRET_KEY="bench",
                   HW_FHIR_INSTANCE_PATH=str(tmp / "instance"))
        code = "from smart_app.cli import main; main()"
        engine = sa.create_engine(url)
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", code, "worker", "--poll", "0.2"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(workers)]
        peaks = [0] * workers
        while True:
            with engine.connect() as conn:
                sent = conn.execute(sa.select(sa.func.count()).select_from(reminder_job).where(
                    reminder_job.c.purpose == "assigned", reminder_job.c.status == "sent")).scalar_one()
            peaks = [max(p, _peak_rss_kib(proc.pid)) for p, proc in zip(peaks, procs)]
            if sent >= n or any(proc.poll() is not None for proc in procs):
                break
            time.sleep(0.5)
        seconds = time.perf_counter() - start
        peaks = [max(p, _peak_rss_kib(proc.pid)) for p, proc in zip(peaks, procs)]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)
        engine.dispose()
        return {"n": n, "workers": workers, "sent": sent, "delivered": len(receiver.keys),
                "seconds": seconds, "load_seconds": load_seconds, "peak_rss_mib": [p / 1024 for p in peaks]}
    finally:
        receiver.server.shutdown()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--patients", type=int, default=2000)
    args = parser.parse_args()
    print(f"Reminder sweep on PostgreSQL, {args.n:,} Tasks, {os.cpu_count()} CPUs "
          "(discover + plan + send each 'assigned' reminder through a signed webhook)")
    base = None
    for count in [int(w) for w in args.workers.split(",")]:
        r = run(args.n, count, args.patients)
        rate = r["sent"] / r["seconds"]
        base = base or rate / count
        print(f"{count} worker(s): {r['sent']:,} sent ({r['delivered']:,} delivered) in {r['seconds']:.1f} s "
              f"= {rate:,.0f} reminders/s (x{rate / base:.2f} of 1); peak RSS per worker "
              + ", ".join(f"{m:.0f} MiB" for m in r["peak_rss_mib"])
              + f"; load {r['load_seconds']:.0f} s")
    small = run(max(args.n // 10, 100), 1, args.patients)
    print(f"memory flatness: 1 worker over {small['n']:,} Tasks peaks at "
          f"{small['peak_rss_mib'][0]:.0f} MiB (compare with {args.n:,} above)")


if __name__ == "__main__":
    main()
