"""HTTP load on `hw-fhir serve --workers 2`: 50 clients read, search and write /fhir.

Prints requests/s, the error count (any non-2xx, a wrong body or a connection error)
and p50/p95/p99 latency, on SQLite and on PostgreSQL; and, sampled every second while the
clients run, the server processes' resident memory (VmRSS summed over gunicorn's master and
workers, and the largest process's peak VmHWM) and on PostgreSQL the server's connections
(``pg_stat_activity`` rows of this run's ``application_name``): flat and bounded, or not.

    python bench/bench_http_load.py [--clients 50] [--seconds 60] [--workers 2] [--skip-pg]
                                    [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import _status_kb, _tree  # noqa: E402 (one /proc reader for the benches)

PG = os.environ.get("HW_FHIR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _client(url: str, n: int, stop: float, times: list[float], errors: list[str]) -> None:
    session = requests.Session()
    pid = f"load{n}"
    session.put(f"{url}/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid,
                                                   "name": [{"family": f"Load{n}"}]}, timeout=60)
    i = 0
    while time.monotonic() < stop:
        i += 1
        started = time.perf_counter()
        try:
            if i % 4 == 0:
                r = session.put(f"{url}/fhir/Patient/{pid}", timeout=60, json={
                    "resourceType": "Patient", "id": pid, "name": [{"family": f"Load{n}"}]})
                ok = r.status_code == 200
            elif i % 4 == 1:
                r = session.get(f"{url}/fhir/Patient?family=Load{n}", timeout=60)
                ok = r.status_code == 200 and bool(r.json().get("entry"))
            else:
                r = session.get(f"{url}/fhir/Patient/{pid}", timeout=60)
                ok = r.status_code == 200 and r.json().get("id") == pid
            if not ok:
                errors.append(f"{r.request.method} {r.request.path_url} -> {r.status_code}")
        except (requests.RequestException, ValueError) as exc:
            errors.append(type(exc).__name__)
        times.append(time.perf_counter() - started)


def _sample(pid: int, app_name: str | None, stop: float, out: list[tuple[float, int]]) -> None:
    """Every second until ``stop``: (RSS MB of the server's processes, PostgreSQL connections)."""
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT") if app_name else None
    while time.monotonic() < stop:
        rss = sum(_status_kb(p, "VmRSS") for p in _tree(pid)) / 1024
        conns = -1
        if admin is not None:
            with admin.connect() as conn:
                conns = int(conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"),
                    {"a": app_name}).scalar_one())
        out.append((rss, conns))
        time.sleep(1)
    if admin is not None:
        admin.dispose()


def run(database_url: str, label: str, args: argparse.Namespace, tmp: str) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_FHIR_")}
    env.update(HW_FHIR_DATABASE_URL=database_url, HW_FHIR_OPEN_API="1", HW_FHIR_PLUGINS="none",
               HW_FHIR_SECRET_KEY="bench", HW_FHIR_INSTANCE_PATH=f"{tmp}/{label}",
               HW_FHIR_BASE_URL=url)
    log = open(Path(tmp) / f"{label}.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", "from smart_app.cli import main; main()",
                             "serve", "--workers", str(args.workers), "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{label}: hw-fhir serve did not start, see {log.name}")
            try:
                if requests.get(f"{url}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        times: list[float] = []
        errors: list[str] = []
        samples: list[tuple[float, int]] = []
        app_name = database_url.partition("application_name=")[2].partition("&")[0] or None
        stop = time.monotonic() + args.seconds
        started = time.monotonic()
        threads = [threading.Thread(target=_client, args=(url, n, stop, times, errors))
                   for n in range(args.clients)]
        threads.append(threading.Thread(target=_sample, args=(proc.pid, app_name, stop, samples)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        peak = max(_status_kb(p, "VmHWM") for p in _tree(proc.pid)) / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    cuts = statistics.quantiles(times, n=100) if len(times) > 1 else [0.0] * 99
    print(f"{label:<11}: {args.clients} clients, {elapsed:.0f} s, {len(times)} requests, "
          f"{len(times) / elapsed:,.0f} requests/s, {len(errors)} errors; "
          f"p50 {cuts[49] * 1000:.1f} ms, p95 {cuts[94] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms")
    if errors:
        print(f"             first errors: {errors[:5]}")
    if samples:
        third = max(1, len(samples) // 3)
        rss = [r for r, _ in samples]
        print(f"             RSS of all server processes: first third of the run max "
              f"{max(rss[:third]):.0f} MB, last third max {max(rss[-third:]):.0f} MB; largest "
              f"process peak (VmHWM) {peak:.0f} MB")
        conns = [c for _, c in samples if c >= 0]
        if conns:
            print(f"             PostgreSQL connections of the server: min {min(conns)}, "
                  f"max {max(conns)}, at the end {conns[-1]} (samples every second)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_sqlite:
            run(f"sqlite:///{tmp}/bench.db", "sqlite", args, tmp)
        if args.skip_pg:
            return
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        try:
            run(f"{PG}?options=-csearch_path%3D{schema}&application_name=hwload_{schema}",
                "postgresql", args, tmp)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


if __name__ == "__main__":
    main()
