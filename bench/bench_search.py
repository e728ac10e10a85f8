"""Facade search vs the bare SQL query + JSON encoding of the same rows, over N Tasks.

Measures GET /fhir/Task?patient=X&status=requested through the WSGI app (parameter
parsing, authorization hooks, SQL, Bundle assembly, HTTP response) against the
same SQL run directly on the DB-API connection with its rows encoded as a JSON
array, and prints both medians and their ratio (quality bar: <= 3x).

    python bench/bench_search.py [--n 100000] [--runs 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import load, tasks  # noqa: E402

from smart_app import create_app  # noqa: E402

BARE_SQL = """
SELECT r.res_id, r.content FROM resource r
WHERE r.res_type = 'Task' AND r.deleted = 0
  AND r.res_id IN (SELECT res_id FROM sp_reference WHERE res_type = 'Task' AND param = 'patient'
                   AND target_id = ? AND target_type = 'Patient')
  AND EXISTS (SELECT 1 FROM sp_token t WHERE t.res_type = r.res_type AND t.res_id = r.res_id
              AND t.param = 'status' AND t.code = ?)
ORDER BY +r.last_updated, r.res_id
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"instance_path": tmp, "database_url": f"sqlite:///{tmp}/bench.db",
                          "open_api": True, "secret_key": "bench"})
        store = app.extensions["hw_fhir"].store
        n, secs = load(store, tasks(args.n, args.patients))
        print(f"loaded {n} Tasks in {secs:.1f} s")
        client = app.test_client()
        rnd = random.Random(1)
        picks = [f"pat-{rnd.randrange(args.patients)}" for _ in range(args.runs)]
        raw = store.engine.raw_connection()
        api_times, sql_times, sizes = [], [], []
        for pid in picks:  # interleave so both see the same cache state
            t0 = time.perf_counter()
            cur = raw.cursor()
            rows = cur.execute(BARE_SQL, (pid, "requested")).fetchall()
            body = b"[" + b",".join(row[1].encode() for row in rows) + b"]"
            sql_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            response = client.get(f"/fhir/Task?patient={pid}&status=requested&_count=200")
            api_times.append(time.perf_counter() - t0)
            bundle = orjson.loads(response.data)
            assert len(bundle.get("entry", [])) == len(rows) == bundle["total"], pid
            sizes.append(len(rows))
            assert len(body) > 0
        raw.close()
        api, bare = statistics.median(api_times), statistics.median(sql_times)
        print(f"matches per search: median {statistics.median(sizes):.0f}")
        print(f"API median   : {api * 1000:.2f} ms")
        print(f"bare SQL+JSON: {bare * 1000:.2f} ms")
        print(f"ratio        : {api / bare:.2f}x  (bar: <= 3x)")


if __name__ == "__main__":
    main()
