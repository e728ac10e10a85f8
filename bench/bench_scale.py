"""Every query of ``bench_peers`` at scale, in process, statement by statement, with its plan.

Runs against a store already loaded (e.g. ``bench_peers.py --keep DIR`` at 1 000 000
Observations) the searches ``bench_peers`` times over HTTP, plus the ones the issue names:

* Observation?subject&code, Patient?family, Observation?code&date (first pages, with the
  default total), the same with ``_total=accurate`` and ``_summary=count``;
* ten ``_count=10`` pages of the pager patient's Observations (by the cursor);
* read by id;
* ``--tasks N``: N Tasks bulk-loaded through transaction Bundles right now, then at once
  Task?patient&status (the search that ran for minutes on stale PostgreSQL statistics).

For each it prints the wall time in process (median of ``--runs``), the statements it ran
and the slowest one, whose plan (``EXPLAIN QUERY PLAN`` / ``EXPLAIN``) is printed when it
took longer than ``--show-plan-ms``. Times are noisy on a shared machine: the load average
is printed; the plans and statement counts are the load-independent part.

    python bench/bench_scale.py --url sqlite:////tmp/keep/bench.db --pager pager-1
    python bench/bench_scale.py --url 'postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dbench_x' \\
        --pager pager-1 --tasks 20000

``--load N`` first loads, in process, N Observations and N/20 Patients (``--load-patients``)
made as ``bench_peers`` makes them (12 family names, so ``Patient?family`` matches one Patient
in 12; patients ``p1-<n>``, the pager ``pager-1`` with 110 Observations spread through them)
into an empty store, through transaction Bundles of 1 000, and measures right after (the
store's own background ANALYZE awaited, as after a bulk load). 1 000 000 Observations hold
51 000 Patients; ``--load 200000 --load-patients 51000`` gives Patient?family the same
Patients and names in a fraction of the loading time::

    python bench/bench_scale.py --url sqlite:////tmp/scale.db --load 200000 --load-patients 51000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import load, tasks  # noqa: E402

from hw_fhir.store import open_store  # noqa: E402

CODES = ["44261-6", "70274-6", "29463-7", "8867-4", "55758-7"]
FAMILIES = ["Rivera", "Nguyen", "Okafor", "Schmidt"]


class Recorder:
    """Each statement's SQL, parameters and seconds, while ``on``."""

    def __init__(self, engine: Any) -> None:
        self.on = False
        self.thread = threading.get_ident()
        self.log: list[tuple[str, Any, float, float]] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                executemany: bool) -> None:
        conn.info["hw_bench_t0"] = (time.perf_counter(), time.thread_time())

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any,
               executemany: bool) -> None:
        if self.on and threading.get_ident() == self.thread:  # not the keeper's ANALYZE
            wall, cpu = conn.info["hw_bench_t0"]
            self.log.append((statement, params, time.perf_counter() - wall,
                             time.thread_time() - cpu))


def explain(store: Any, statement: str, params: Any) -> str:
    """The plan of one recorded statement, as the database prints it."""
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        if store.dialect == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + statement, params)
            return "\n".join(f"      {row[3]}" for row in cur.fetchall())
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        return "\n".join(f"      {row[0]}" for row in cur.fetchall())
    finally:
        raw.rollback()
        raw.close()


def each_statement(store: Any, log: list[tuple[str, Any, float, float]]) -> None:
    """One line per statement of the last run: PostgreSQL's execution time, buffers and rows
    (``EXPLAIN (ANALYZE, BUFFERS)``), SQLite's CPU time and rows; then its first words."""
    for n, (sql, params, _secs, cpu) in enumerate(log):
        words = " ".join(sql.split())[:90]
        if store.dialect == "sqlite":
            print(f"    #{n + 1}: {cpu * 1000:7.2f} ms CPU  {words}")
            continue
        raw = store.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
            plan = cur.fetchone()[0][0]
        finally:
            raw.rollback()
            raw.close()
        top = plan["Plan"]
        print(f"    #{n + 1}: {plan['Execution Time']:7.2f} ms executing, "
              f"{top['Shared Hit Blocks'] + top['Shared Read Blocks']:6d} buffers "
              f"({top['Shared Read Blocks']} read), {top['Actual Rows']} rows  {words}")


def run(store: Any, rec: Recorder, label: str, fn: Callable[[], Any], runs: int,
        show_plan_ms: float, every: bool = False) -> float:
    """Run ``fn`` ``runs`` times; print wall and CPU ms; return the slowest statement's ms.

    On a loaded machine the wall time is mostly waiting for a core; this process's CPU
    time (SQLite runs in it) is the load-independent figure. PostgreSQL's work is in its
    own process: its plan's execution time (EXPLAIN ANALYZE) is printed for slow ones.
    """
    times, cpus, slowest = [], [], (0.0, "", None, 0.0)
    statements = 0
    for _ in range(runs):
        rec.log = []
        rec.on = True
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
        rec.on = False
        statements = len(rec.log)
        for sql, params, secs, cpu in rec.log:
            if secs > slowest[0]:
                slowest = (secs, sql, params, cpu)
    ms = statistics.median(times) * 1000
    print(f"  {label:<52} {ms:8.2f} ms wall, {statistics.median(cpus) * 1000:7.2f} ms CPU "
          f"(medians of {runs}); {statements} statements, slowest {slowest[0] * 1000:.2f} ms "
          f"wall / {slowest[3] * 1000:.2f} ms CPU")
    if every:
        each_statement(store, rec.log)
    if slowest[0] * 1000 > show_plan_ms:
        print("    slowest statement: " + " ".join(slowest[1].split())[:400])
        print(explain(store, slowest[1], slowest[2]))
    return slowest[0] * 1000 if store.dialect != "sqlite" else slowest[3] * 1000


def ten_pages(store: Any, pager: str) -> None:
    params = [("subject", f"Patient/{pager}"), ("_count", "10")]
    seen = 0
    for page in range(10):
        result = store.search("Observation", params)
        seen += len(result.matches)
        last = result.matches[-1]
        params = [("subject", f"Patient/{pager}"), ("_count", "10"),
                  ("_cursor", f"{last.last_updated},{last.id}")]
    assert seen == 100, seen


def load_observations(store: Any, count: int, patients: int) -> tuple[int, float]:
    """Load ``patients`` Patients and ``count`` Observations as ``bench_peers.grow`` does."""
    from bench_peers import PAGER_OBS, observation, patient

    rnd = random.Random(11)
    ids = [f"p1-{i}" for i in range(patients)]

    def resources() -> Any:
        for pid in ids + ["pager-1"]:
            yield patient(rnd, pid)
        spacing = max(1, count // PAGER_OBS)
        for i in range(count):
            pager = i % spacing == 0 and i // spacing < PAGER_OBS
            obs = observation(rnd, "pager-1" if pager else rnd.choice(ids), i)
            obs["id"] = f"o-{i}"
            yield obs

    return load(store, resources())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--pager", default="pager-1")
    parser.add_argument("--patients", default="p1-", help="prefix of the loaded patients' ids")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=0, help="bulk-load this many Tasks first")
    parser.add_argument("--task-patients", type=int, default=1000)
    parser.add_argument("--show-plan-ms", type=float, default=20.0)
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="first load N Observations (and their Patients) into an empty store")
    parser.add_argument("--load-patients", type=int, default=0, metavar="P",
                        help="Patients loaded with --load (default N/20, as bench_peers)")
    parser.add_argument("--each", action="store_true",
                        help="print every statement's execution time, buffers and rows")
    parser.add_argument("--no-join", action="store_true",
                        help="do not wait for the store's background ANALYZE after --tasks")
    args = parser.parse_args()
    store = open_store(args.url)
    rec = Recorder(store.engine)
    if args.load:
        n, secs = load_observations(store, args.load, args.load_patients or args.load // 20)
        print(f"  loaded {n:,} resources in {secs:.1f} s ({n / secs:,.0f}/s) through "
              "store.transaction (1 000 a Bundle)")
        store.statistics.join()
    rnd = random.Random(5)
    print(f"store {store.dialect}: {store.count('Observation'):,} Observations, "
          f"{store.count('Patient'):,} Patients, {store.count('Task'):,} Tasks; "
          f"load average {os.getloadavg()[0]:.2f}")
    worst: dict[str, float] = {}
    if args.tasks:
        n, secs = load(store, tasks(args.tasks, args.task_patients,
                                    seed=int(time.time())))
        print(f"  bulk-loaded {n:,} Tasks in {secs:.1f} s ({n / secs:,.0f}/s) through "
              "store.transaction (PUT entries, 1 000 a Bundle)")
        if not args.no_join:
            store.statistics.join()
    if args.tasks or store.count("Task"):
        pid = f"pat-{rnd.randrange(args.task_patients)}"
        worst["Task?patient&status"] = run(
            store, rec, f"Task?patient={pid}&status=requested",
            lambda: store.search("Task", [("patient", pid), ("status", "requested")]),
            args.runs, args.show_plan_ms)
        worst["Task?patient&status,in-progress&_count=200"] = run(
            store, rec, "Task?patient&status=requested,in-progress&_count=200",
            lambda: store.search("Task", [("patient", pid), ("status", "requested,in-progress"),
                                          ("_count", "200")]),
            args.runs, args.show_plan_ms)
    subject = f"{args.patients}{rnd.randrange(1000)}"
    code = rnd.choice(CODES)
    queries: list[tuple[str, list[tuple[str, str]]]] = [
        ("Observation?subject&code", [("subject", f"Patient/{subject}"),
                                      ("code", f"http://loinc.org|{code}")]),
        ("Patient?family&_count=20", [("family", rnd.choice(FAMILIES)), ("_count", "20")]),
        ("Observation?code&date=ge&_count=20", [("code", f"http://loinc.org|{code}"),
                                                ("date", "ge2026-06-15"), ("_count", "20")]),
        ("Observation?subject=pager&_count=10", [("subject", f"Patient/{args.pager}"),
                                                 ("_count", "10")]),
    ]
    for label, params in queries:
        worst[label] = run(store, rec, label, lambda p=params: store.search(label.split("?")[0], p),
                           args.runs, args.show_plan_ms, args.each)
    for label, params in queries[1:3]:
        for extra in (("_total", "accurate"), ("_summary", "count")):
            name = f"{label}&{extra[0]}={extra[1]}"
            worst[name] = run(store, rec, name,
                              lambda p=params + [extra]: store.search(label.split("?")[0], p),
                              args.runs, args.show_plan_ms)
    worst["10 pages"] = run(store, rec, "10 pages (cursor) of the pager's Observations",
                            lambda: ten_pages(store, args.pager), args.runs, args.show_plan_ms)
    some = store.search("Observation", [("subject", f"Patient/{subject}"), ("_count", "1")])
    if some.matches:
        oid = some.matches[0].id
        worst["read"] = run(store, rec, "read Observation by id",
                            lambda: store.read("Observation", oid), args.runs, args.show_plan_ms)
    over = {k: round(v, 1) for k, v in worst.items() if v > 50}
    print(f"  statements over 50 ms ({'CPU' if store.dialect == 'sqlite' else 'wall'}): "
          f"{over or 'none'}; load average {os.getloadavg()[0]:.2f}")
    store.dispose()


if __name__ == "__main__":
    main()
