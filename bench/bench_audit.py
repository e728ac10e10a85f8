"""What the audit trail costs a search: GET /fhir/Task?patient=X&status=requested with and
without AuditEvents, interleaved in one process (so machine load hits both alike), plus the
cost per event of writing the batches.

    python bench/bench_audit.py [--n 20000] [--runs 400]

Prints the median request time with the trail on and off, the difference, and the time
one batch write takes per event (that runs in the background flusher, off the request).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import load, tasks  # noqa: E402

from hw_fhir.audit import Access, TYPE_REST  # noqa: E402
from smart_app import create_app  # noqa: E402
from smart_app.state import app_state  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"instance_path": tmp, "database_url": f"sqlite:///{tmp}/bench.db",
                          "open_api": True, "secret_key": "bench"})
        store = app.extensions["hw_fhir"].store
        trail = app_state(app).audit
        n, secs = load(store, tasks(args.n, args.patients))
        print(f"loaded {n} Tasks in {secs:.1f} s")
        client = app.test_client()
        rnd = random.Random(1)
        on, off = [], []
        for i in range(args.runs * 2):
            pid = f"pat-{rnd.randrange(args.patients)}"
            trail.enabled = i % 2 == 0
            t0 = time.perf_counter()
            response = client.get(f"/fhir/Task?patient={pid}&status=requested&_count=200")
            (on if trail.enabled else off).append(time.perf_counter() - t0)
            assert response.status_code == 200
        trail.enabled = True
        trail.flush()
        trail.batch = 10**9  # measure queueing and one batch write apart
        batch = [Access(type=TYPE_REST, subtype="read", action="R", client_id="bench",
                        address="127.0.0.1", patients=(f"Patient/pat-{i}",), what=(f"Task/{i}",))
                 for i in range(2000)]
        t0 = time.perf_counter()
        for access in batch:
            trail.record(access)
        queued = time.perf_counter() - t0
        t0 = time.perf_counter()
        written = trail.flush()
        flushed = time.perf_counter() - t0
        a, b = statistics.median(on), statistics.median(off)
        print(f"search, audit on : {a * 1000:.2f} ms (median of {len(on)})")
        print(f"search, audit off: {b * 1000:.2f} ms (median of {len(off)})")
        print(f"overhead         : {(a - b) * 1000:.2f} ms per request ({(a / b - 1) * 100:.1f} %)")
        print(f"record (queue)   : {queued / len(batch) * 1e6:.1f} us per event")
        print(f"batch write      : {flushed / max(written, 1) * 1e6:.1f} us per event "
              f"({written} events, background flusher)")
        app.extensions["hw_fhir"].close()


if __name__ == "__main__":
    main()
