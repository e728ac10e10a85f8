"""The fixed cost of one create through ``/fhir``: statements, Python calls, time per create.

Counts that do not depend on machine load (SQL statements, PostgreSQL round trips read
from libpq's protocol trace, Python function calls per create) next to the wall/CPU
time per create, for Observation, QuestionnaireResponse and a QuestionnaireResponse
answering a Task (``TaskResponse``) on SQLite or PostgreSQL, through the app's ``/fhir``
API (Flask test client, open API) or straight into the store::

    .venv/bin/python bench/bench_create_cost.py --db sqlite --type QuestionnaireResponse
    .venv/bin/python bench/bench_create_cost.py --db pg --type Observation --via store --n 300
    .venv/bin/python bench/bench_create_cost.py --db pg --type Observation --show-trips
    .venv/bin/python bench/bench_create_cost.py --db sqlite --type Transaction --entries 1000 --n 5

``Transaction``: each "create" is a transaction Bundle of ``--entries`` Observations
(POST /fhir, or ``store.transaction``); the counts are per Bundle, and the Python calls
and CPU time also per entry.

PostgreSQL: a schema of its own in ``HW_FHIR_TEST_PG`` (default the test database),
dropped at the end. The resources are those of ``bench_peers.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import observation, response  # noqa: E402

PG = os.environ.get("HW_FHIR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--type", choices=("Observation", "QuestionnaireResponse", "TaskResponse",
                                           "Transaction"),
                        default="QuestionnaireResponse",
                        help="TaskResponse: a QuestionnaireResponse answering a Task (basedOn; "
                             "the SDC workflow writes both; the Tasks are made beforehand)")
    parser.add_argument("--via", choices=("http", "store"), default="http")
    parser.add_argument("--entries", type=int, default=100,
                        help="Transaction: Observations per Bundle")
    parser.add_argument("--n", type=int, default=200, help="timed creates")
    parser.add_argument("--show-trips", action="store_true",
                        help="PostgreSQL: print the messages the client sends for one create")
    parser.add_argument("--profile", action="store_true", help="print the cProfile top functions")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp()
    schema = None
    if args.db == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
    else:
        schema = "bench_" + uuid.uuid4().hex[:8]
        admin = sa.create_engine(PG)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = f"{PG}?options=-csearch_path%3D{schema}"
    os.environ.update(HW_FHIR_DATABASE_URL=url, HW_FHIR_OPEN_API="1",
                      HW_FHIR_INSTANCE_PATH=f"{tmp}/instance", HW_FHIR_SECRET_KEY="bench")
    from smart_app import create_app

    app = create_app()
    store = app.extensions["hw_fhir"].store
    client = app.test_client()
    rnd = random.Random(1)
    patient = client.post("/fhir/Patient", json={"resourceType": "Patient",
                                                 "name": [{"family": "Bench"}]}).get_json()["id"]

    tasks: list[str] = []
    if args.type == "TaskResponse":
        from hw_fhir.library import load_catalog  # lazy: after the environment is set

        load_catalog(store)  # the Task's Questionnaire must be stored
        made = store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Task"}, "resource": _task(patient)}
            for _ in range(2 * args.n + 300)]})
        tasks = [e["response"]["location"].split("/")[1] for e in made["entry"]]
    rtype = "QuestionnaireResponse" if args.type == "TaskResponse" else args.type

    def make() -> dict[str, Any]:
        if args.type in ("Observation", "Transaction"):
            return observation(rnd, patient, rnd.randrange(100))
        if args.type == "TaskResponse":
            return {**response(rnd, patient), "basedOn": [{"reference": f"Task/{tasks.pop()}"}]}
        return response(rnd, patient)

    def one() -> None:
        if args.type == "Transaction":
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": make(),
                 "request": {"method": "POST", "url": "Observation"}}
                for _ in range(args.entries)]}
            if args.via == "store":
                store.transaction(bundle)
                return
            reply = client.post("/fhir", json=bundle, headers={"Content-Type": "application/fhir+json"})
            if reply.status_code != 200:
                raise SystemExit(f"transaction failed: {reply.status_code} {reply.data[:300]!r}")
            return
        if args.via == "http":
            reply = client.post(f"/fhir/{rtype}", json=make(),
                                headers={"Content-Type": "application/fhir+json"})
            if reply.status_code != 201:
                raise SystemExit(f"create failed: {reply.status_code} {reply.data[:300]!r}")
        else:
            store.create(make())

    per = args.entries if args.type == "Transaction" else 1
    for _ in range(30 if per == 1 else 2):  # warm caches (catalog, canonicals, statements)
        one()
    print(f"{args.db} {args.type} via {args.via}")
    runs = 10 if per == 1 else 2
    print(f"  statements per create (seen by SQLAlchemy): {_statements(store, one, runs):.1f}")
    if args.db == "sqlite":  # (sqlite3 traces each row of an executemany as a statement)
        print(f"  statements per create (all, incl. BEGIN/COMMIT): "
              f"{_sqlite_statements(store, one, runs):.1f}")
    if args.db == "pg" and args.show_trips:
        _round_trips(store, one, runs=1, show=True)
    if args.db == "pg":
        print(f"  round trips per create (libpq trace): {_round_trips(store, one, runs):.1f}")
    calls = _calls(one, runs=50 if per == 1 else 2)
    print(f"  Python function calls per create: {calls}"
          + (f" ({calls / per:.0f} per entry)" if per > 1 else ""))
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.n):
        one()
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    print(f"  {args.n / wall:.0f} creates/s, wall {wall / args.n * 1000:.2f} ms, "
          f"cpu {used / args.n * 1000:.2f} ms per create (load {os.getloadavg()[0]:.1f})")
    if per > 1:
        print(f"  {args.n * per / wall:.0f} resources/s, cpu {used / args.n / per * 1e6:.0f} µs "
              "per entry")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.n):
            one()
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    store.dispose()
    if schema:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


def _task(patient: str) -> dict[str, Any]:
    """Homework asking for the mood log (what :func:`bench_peers.response` answers)."""
    return {"resourceType": "Task", "status": "requested", "intent": "order",
            "code": {"coding": [{"system": "http://hl7.org/fhir/uv/sdc/CodeSystem/temp",
                                 "code": "complete-questionnaire"}]},
            "for": {"reference": f"Patient/{patient}"}, "authoredOn": "2026-03-01T10:00:00Z",
            "input": [{"type": {"coding": [{"system": "http://hl7.org/fhir/uv/sdc/CodeSystem/temp",
                                            "code": "questionnaire"}]},
                       "valueCanonical": "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0"}]}


def _statements(store: Any, one: Callable[[], None], runs: int = 10) -> float:
    seen = [0]

    def count(*_: Any) -> None:
        seen[0] += 1

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        for _ in range(runs):
            one()
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    return seen[0] / runs


def _sqlite_statements(store: Any, one: Callable[[], None], runs: int = 10) -> float:
    traced = [0]

    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(lambda _sql: traced.__setitem__(0, traced[0] + 1))

    event.listen(store.engine, "connect", trace)
    store.engine.dispose()
    one()  # opens (and traces) a fresh connection
    traced[0] = 0
    for _ in range(runs):
        one()
    return traced[0] / runs


def _round_trips(store: Any, one: Callable[[], None], runs: int = 10,
                 show: bool = False) -> float:
    """Round trips to PostgreSQL per create, from libpq's protocol trace.

    A round trip is the client sending (``F`` messages) and then waiting for the server's
    answer (``B`` messages): each switch from sending to receiving counts one. A pipeline
    sends many statements and waits once; a BEGIN sent on its own costs one more.

    Only the connections this thread checks out are traced, from checkout to checkin.
    The statistics keeper's ANALYZE runs in a thread of its own on a pooled connection
    while the creates go on: it is no part of a create, and its messages among the
    create's would count switches of their own. Nor may a connection stay traced after
    the trace file is closed: libpq would write its trace to whatever takes the file's
    descriptor next, such as the socket of a new connection, and PostgreSQL reads
    ``B\\t12\\t…`` there as a Bind message of 150 MB and waits for the rest (in
    ``ClientRead``) while the bench waits for its answer: the bench hung.
    """
    import psycopg  # lazy: PostgreSQL runs only

    path = Path(tempfile.mkdtemp()) / "libpq.trace"
    sink = open(path, "w")
    flags = psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
    here = threading.get_ident()
    traced: dict[int, Any] = {}  # the connections this thread checked out, by id

    def trace(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if threading.get_ident() == here:
            dbapi_connection.pgconn.trace(sink.fileno())
            dbapi_connection.pgconn.set_trace_flags(flags)
            traced[id(dbapi_connection)] = dbapi_connection

    def untrace(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None and traced.pop(id(dbapi_connection), None) is not None:
            _untrace(dbapi_connection)

    event.listen(store.engine, "checkout", trace)
    event.listen(store.engine, "checkin", untrace)
    try:
        for _ in range(runs):
            one()
    finally:
        event.remove(store.engine, "checkout", trace)
        event.remove(store.engine, "checkin", untrace)
        for dbapi_connection in traced.values():  # still checked out here (none expected)
            _untrace(dbapi_connection)
        traced.clear()
        sink.close()
    trips, last = 0, ""
    with open(path) as lines:
        for line in lines:
            side = line[:1]
            if side == "B" and last == "F":
                trips += 1
            if side in "FB":
                last = side
            if show and side in "FB":
                print("   ", line.rstrip()[:160])
    return trips / runs


def _untrace(dbapi_connection: Any) -> None:
    """Stop a connection's trace (libpq flushes it and lets go of the file); closed: nothing."""
    if not dbapi_connection.closed:
        dbapi_connection.pgconn.untrace()


def _calls(one: Callable[[], None], runs: int = 50) -> int:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(runs):
        one()
    profile.disable()
    return sum(row[1] for row in pstats.Stats(profile).stats.values()) // runs  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
