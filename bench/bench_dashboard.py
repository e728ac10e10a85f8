"""Server time of the clinician and patient pages for a patient with 1 000 homework Tasks.

Builds a realistic history on SQLite: one patient with ``--tasks`` Tasks over two years
(recurring plans and one-offs; done on time, late, missed, upcoming), a PHQ-9 score
every two weeks with its response, reminders, a risk flag; other patients with homework
too, so indexes matter; and ``--panel`` more patients of the same clinician with 25
Tasks each in the last four weeks (1 000 Tasks on the panel page). Then times each page
through the WSGI app (a signed-in launch, as inside the EHR; the patient's /my/ pages
signed in through a reminder's secure link).

Per page it prints:

* **warm**: median, 95th percentile, best and CPU time of ``--runs`` views, the pages in
  turn so that all see the same drift of the machine's speed, and the SQL statements of
  one view;
* **cold**: the page's first view in a fresh worker (``--cold-runs`` workers per page, the
  pages interleaved; one more, untimed, counts its Python function calls): a process
  forked from the one that made the app, loaded the data and ran
  :func:`smart_app.warmup.prepare_for_fork` (as ``hw-fhir serve`` does: every
  template loaded, the pages' reads run once for a patient who does not exist, the stored
  Questionnaires' expressions parsed, the heap frozen), before it served any page, as
  gunicorn forks ``hw-fhir serve``'s workers; none of the measured patient's data was read
  before; median, best, CPU time, statements and how many of them SQLAlchemy compiled.
  Templates compiled by an earlier worker are kept in ``<instance>/jinja-cache``, as on
  a server after its first start;
* "dashboard/panel, Task cache emptied": those pages in the warm process right after
  :func:`~hw_fhir.adherence.clear_task_facts` (as after a change of every Task).

The last lines give a machine reference (a fixed loop's time) and the load average:
timings on a shared machine drift, the statement counts do not.

Quality bar: every page under 100 ms with 1 000 Tasks on file, warm and cold.

    python bench/bench_dashboard.py [--tasks 1000] [--others 20000] [--runs 30] [--panel 40]
                                    [--cold-runs 3] [--postgres] [--analyze]

``--postgres`` runs it on a fresh schema of the local PostgreSQL instead of SQLite.
``--analyze`` runs SQLite's ANALYZE first (planner statistics; the store does not rely on
them: it probes which filter matches the fewest rows to drive a search).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from _data import load  # noqa: E402
from _data import tasks as other_tasks  # noqa: E402

from clinician_support import clinician_app, open_launch  # noqa: E402

from hw_fhir.adherence import clear_task_facts  # noqa: E402
from hw_fhir.store.maintenance import refresh_statistics  # noqa: E402
from smart_app.warmup import prepare_for_fork  # noqa: E402

PG = os.environ.get("HW_FHIR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PHQ9 = "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0"
ACTIVITIES = [
    PHQ9,
    "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0",
    "http://hw-fhir.org/fhir/Questionnaire/thought-record|1.0.0",
    "http://hw-fhir.org/fhir/Questionnaire/sleep-diary|1.0.0",
    "http://hw-fhir.org/fhir/Questionnaire/paced-breathing|1.0.0",
]
TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
BUSINESS = "http://hw-fhir.org/fhir/CodeSystem/task-business-status"


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plan(pid: str, index: int, canonical: str, now: datetime) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "id": f"bench-plan-{index}",
        "status": "active",
        "intent": "plan",
        "title": f"Homework {index}",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hw-fhir.org/fhir/CodeSystem/care-plan-category",
                        "code": "homework",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{pid}"},
        "author": {"reference": "Practitioner/dr-rivera"},
        "created": _iso(now - timedelta(days=720)),
        "period": {"start": (now - timedelta(days=720)).date().isoformat()},
        "activity": [
            {
                "detail": {
                    "kind": "Task",
                    "instantiatesCanonical": [canonical],
                    "status": "scheduled",
                    "description": "Practice as agreed.",
                    "scheduledTiming": {
                        "repeat": {
                            "boundsPeriod": {
                                "start": (now - timedelta(days=720)).date().isoformat()
                            },
                            "frequency": 1,
                            "period": 3,
                            "periodUnit": "d",
                            "timeOfDay": ["19:00:00"],
                        }
                    },
                    "performer": [{"reference": f"Patient/{pid}"}],
                }
            }
        ],
    }


def history(pid: str, n: int, now: datetime, seed: int = 11) -> Iterator[dict[str, Any]]:
    """Yield CarePlans, Tasks, PHQ-9 responses with score Observations, reminders and a Flag."""
    rnd = random.Random(seed)
    plans = [_plan(pid, i, c, now) for i, c in enumerate(ACTIVITIES)]
    yield from plans
    for i in range(n):
        due = now - timedelta(days=720) + timedelta(hours=i * 720 * 24 / n) + timedelta(days=14)
        plan = plans[i % len(plans)] if i % 4 else None
        canonical = (
            plan["activity"][0]["detail"]["instantiatesCanonical"][0]
            if plan
            else rnd.choice(ACTIVITIES)
        )
        task: dict[str, Any] = {
            "resourceType": "Task",
            "id": str(uuid.UUID(int=rnd.getrandbits(128))),
            "meta": {"profile": ["http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-task"]},
            "intent": "order",
            "code": {"coding": [{"system": TEMP, "code": "complete-questionnaire"}]},
            "for": {"reference": f"Patient/{pid}"},
            "owner": {"reference": f"Patient/{pid}"},
            "requester": {"reference": "Practitioner/dr-rivera"},
            "authoredOn": _iso(due - timedelta(days=7)),
            "restriction": {"period": {"start": _iso(due - timedelta(days=3)), "end": _iso(due)}},
            "input": [
                {
                    "type": {"coding": [{"system": TEMP, "code": "questionnaire"}]},
                    "valueCanonical": canonical,
                }
            ],
            "description": "Practice as agreed.",
        }
        if plan:
            task["basedOn"] = [{"reference": f"CarePlan/{plan['id']}"}]
            task["identifier"] = [
                {
                    "system": "http://hw-fhir.org/fhir/sid/task-occurrence",
                    "value": f"{plan['id']}/0/{due.date().isoformat()}/{i}",
                }
            ]
        roll = rnd.random()
        if due > now:
            task["status"] = "requested"
        elif roll < 0.7:
            late = roll > 0.6
            end = due + timedelta(hours=5) if late else due - timedelta(hours=3)
            task.update(
                status="completed",
                executionPeriod={"start": _iso(end - timedelta(minutes=9)), "end": _iso(end)},
                businessStatus={
                    "coding": [{"system": BUSINESS, "code": "late" if late else "on-time"}]
                },
            )
        elif roll < 0.9:
            task.update(
                status="failed", businessStatus={"coding": [{"system": BUSINESS, "code": "missed"}]}
            )
        else:
            task["status"] = "cancelled"
        if task["status"] != "cancelled" and due <= now:
            yield {
                "resourceType": "Communication",
                "id": str(uuid.UUID(int=rnd.getrandbits(128))),
                "status": "completed",
                "subject": {"reference": f"Patient/{pid}"},
                "about": [{"reference": f"Task/{task['id']}"}],
                "sent": _iso(due - timedelta(hours=6)),
                "medium": [{"coding": [{"code": "email"}]}],
            }
        if task["status"] == "completed" and canonical == PHQ9:
            qr_id = str(uuid.UUID(int=rnd.getrandbits(128)))
            score = max(0, min(27, 18 - i * 12 // n + rnd.randrange(-2, 3)))
            authored = task["executionPeriod"]["end"]
            task["output"] = [
                {
                    "type": {"coding": [{"system": TEMP, "code": "questionnaire-response"}]},
                    "valueReference": {"reference": f"QuestionnaireResponse/{qr_id}"},
                }
            ]
            yield {
                "resourceType": "QuestionnaireResponse",
                "id": qr_id,
                "questionnaire": PHQ9,
                "status": "completed",
                "subject": {"reference": f"Patient/{pid}"},
                "authored": authored,
                "item": [{"linkId": "phq9-total", "answer": [{"valueInteger": score}]}],
            }
            yield {
                "resourceType": "Observation",
                "id": str(uuid.UUID(int=rnd.getrandbits(128))),
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "survey",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": authored,
                "valueQuantity": {
                    "value": score,
                    "unit": "{score}",
                    "system": "http://unitsofmeasure.org",
                    "code": "{score}",
                },
                "derivedFrom": [{"reference": f"QuestionnaireResponse/{qr_id}"}],
            }
        yield task
    yield {
        "resourceType": "Flag",
        "id": "bench-flag",
        "status": "active",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hw-fhir.org/fhir/CodeSystem/flag-category",
                        "code": "self-harm-risk",
                        "display": "Self-harm risk",
                    }
                ]
            }
        ],
        "code": {"text": "PHQ-9 item 9 scored 1 of 3."},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": _iso(now - timedelta(days=2))},
    }


def panel_patients(
    n: int, tasks_each: int, now: datetime, seed: int = 5
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` more patients of Dr Rivera's panel, each with ``tasks_each`` Tasks in the
    last four weeks and the next (the panel's window) and a PHQ-9 score every week."""
    rnd = random.Random(seed)
    for p in range(n):
        pid = f"panel-{p:03d}"
        yield {
            "resourceType": "Patient",
            "id": pid,
            "name": [{"given": [f"Pat{p:03d}"], "family": "Panel"}],
            "generalPractitioner": [{"reference": "Practitioner/dr-rivera"}],
        }
        for i in range(tasks_each):
            due = now - timedelta(days=27) + timedelta(hours=i * 34 * 24 / tasks_each)
            roll = rnd.random()
            task: dict[str, Any] = {
                "resourceType": "Task",
                "id": f"{pid}-t{i}",
                "intent": "order",
                "status": "requested",
                "code": {"coding": [{"system": TEMP, "code": "complete-questionnaire"}]},
                "for": {"reference": f"Patient/{pid}"},
                "owner": {"reference": f"Patient/{pid}"},
                "requester": {"reference": "Practitioner/dr-rivera"},
                "authoredOn": _iso(due - timedelta(days=7)),
                "restriction": {"period": {"end": _iso(due)}},
                "input": [
                    {
                        "type": {"coding": [{"system": TEMP, "code": "questionnaire"}]},
                        "valueCanonical": rnd.choice(ACTIVITIES),
                    }
                ],
            }
            if due <= now and roll < 0.7:
                end = due - timedelta(hours=2)
                task.update(
                    status="completed",
                    executionPeriod={"start": _iso(end - timedelta(minutes=9)), "end": _iso(end)},
                    businessStatus={"coding": [{"system": BUSINESS, "code": "on-time"}]},
                )
            elif due <= now - timedelta(days=2) and roll < 0.9:
                task["status"] = "failed"
            yield task
        for week in range(4):
            yield {
                "resourceType": "Observation",
                "id": f"{pid}-phq9-{week}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": _iso(now - timedelta(days=7 * (4 - week))),
                "valueQuantity": {"value": rnd.randrange(3, 24)},
            }


def _reference_ms() -> float:
    """Time a fixed pure-Python loop: this machine's speed right now (it drifts)."""
    start = time.perf_counter()
    sum(range(2 * 10**6))
    return (time.perf_counter() - start) * 1000


class _Statements:
    """Count the SQL statements the store's engine runs, and those SQLAlchemy compiled for
    it (not found in its statement cache), with SQLAlchemy event listeners."""

    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self.count = 0
        self.compiled = 0
        sa.event.listen(engine, "before_cursor_execute", self._seen)
        sa.event.listen(engine, "after_cursor_execute", self._done)

    def _seen(self, *_args: Any) -> None:
        self.count += 1

    def _done(self, _conn: Any, _cursor: Any, _sql: Any, _params: Any, context: Any,
              _many: Any) -> None:
        from sqlalchemy.engine.default import CACHE_MISS

        if getattr(context, "cache_hit", None) is CACHE_MISS:
            self.compiled += 1


def _python_calls(session: Any, path: str, params: dict[str, Any]) -> int:
    """The Python function calls of one request (``sys.setprofile``; not timed)."""
    calls = 0

    def count(_frame: Any, event: str, _arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        session.get(path, **params)
    finally:
        sys.setprofile(None)
    return calls


def _sample(
    session: Any, path: str, params: dict[str, Any], statements: _Statements
) -> tuple[float, float, int]:
    """Return the wall and CPU time (ms) and the SQL statements of one request for a page."""
    before = statements.count
    start, start_cpu = time.perf_counter(), time.process_time()
    response = session.get(path, **params)
    wall = (time.perf_counter() - start) * 1000
    cpu = (time.process_time() - start_cpu) * 1000
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    return wall, cpu, statements.count - before


def _summary(samples: list[float]) -> tuple[float, float, float]:
    """Median, 95th percentile and best of some timings."""
    ordered = sorted(samples)
    return (
        statistics.median(ordered),
        ordered[max(0, int(len(ordered) * 0.95) - 1)],
        ordered[0],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--others", type=int, default=20_000, help="Tasks of other patients")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--cold-runs",
        type=int,
        default=3,
        help="fresh workers per page for its cold figure (0: no cold figures)",
    )
    parser.add_argument(
        "--panel", type=int, default=40, help="more patients in the clinician's panel"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="use a fresh schema on the local PostgreSQL instead of SQLite",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="run SQLite ANALYZE after loading (planner statistics)",
    )
    args = parser.parse_args()
    if args.postgres:
        with _pg_schema() as url:
            _run(args, url)
    else:
        _run(args, None)


@contextmanager
def _pg_schema() -> Iterator[str]:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _config(database_url: str, instance: str) -> dict[str, Any]:
    return {
        "instance_path": instance,
        "database_url": database_url,
        "open_api": True,
        "secret_key": "bench",
        "secure_cookies": False,
    }


Page = tuple[str, str, str, dict[str, Any]]  # name, who (clinician | patient), path, params


def _pages(store: Any, now: datetime) -> list[Page]:
    """The pages measured: every clinician page of pat-ava, the panel, the patient's /my/."""
    responses = store.search(
        "QuestionnaireResponse",
        [("patient", "Patient/pat-ava"), ("_sort", "-authored"), ("_count", "2")],
    ).resources
    task = _open_task(store)
    ava = "/clinician/patients/pat-ava"
    c = "clinician"
    return [
        ("dashboard", c, ava, {}),
        ("landing /app", c, "/app", {}),
        ("assign: library", c, f"{ava}/assign", {}),
        ("assign: library search", c, f"{ava}/assign", {"q": "sleep", "problem": "insomnia"}),
        ("assign: tailor", c, f"{ava}/assign/phq-9", {}),
        ("assign: confirmation", c, f"{ava}/assigned/CarePlan/bench-plan-0", {}),
        ("change a plan", c, f"{ava}/assignments/CarePlan/bench-plan-1", {}),
        ("change a task", c, f"{ava}/assignments/Task/{task['id']}", {}),
        ("response review", c, f"{ava}/responses/{responses[0]['id']}", {}),
        ("compare", c, f"{ava}/compare", {"a": responses[1]["id"], "b": responses[0]["id"]}),
        ("session prep", c, f"{ava}/session-prep", {}),
        (
            "session prep, 8 weeks",
            c,
            f"{ava}/session-prep",
            {"since": (now - timedelta(days=56)).date().isoformat()},
        ),
        ("pathway", c, f"{ava}/pathways/insomnia-4-weeks", {}),
        ("preview", c, "/clinician/library/phq-9/preview", {"patient": "pat-ava"}),
        ("my activities", c, "/clinician/library", {}),
        ("panel", c, "/clinician/panel", {}),
        ("patient: to-do /my/", "patient", "/my/", {}),
        ("patient: homework form", "patient", f"/my/tasks/{task['id']}", {}),
        ("patient: progress", "patient", "/my/progress", {}),
        ("patient: messages", "patient", "/my/messages", {}),
    ]


def _open_task(store: Any) -> dict[str, Any]:
    return store.search(
        "Task",
        [("patient", "Patient/pat-ava"), ("status", "requested"), ("_sort", "_id"), ("_count", "1")],
    ).resources[0]


class _PatientSession:
    """A test client signed in as pat-ava through a secure link (as a reminder opens)."""

    def __init__(self, app: Any, task: dict[str, Any]) -> None:
        from hw_fhir.links import patient_links

        self.client = app.test_client()
        issued = patient_links(app.extensions["hw_fhir"]).make_link(
            task["id"], "Patient/pat-ava", birth_date_check=False
        )
        opened = self.client.get(f"/p/{issued.token}")
        assert opened.status_code == 302, opened.status_code

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, query_string=params)


def _sessions(app: Any, store: Any) -> dict[str, Any]:
    return {
        "clinician": open_launch(app, app.test_client()),
        "patient": _PatientSession(app, _open_task(store)),
    }


def _cold(args: argparse.Namespace, app: Any, pages: list[Page]) -> dict[str, Any]:
    """Each page's first view in a fresh worker, ``--cold-runs`` workers per page, the pages
    interleaved: a process forked from this one after start-up and before any page was
    served, as gunicorn forks its workers from the process that made the app (the child
    rebuilds its database pool first, as a worker does). Nothing of the measured patient
    was read before in it (no Task parsed); what :func:`~smart_app.warmup.prepare_for_fork`
    builds is there, as in a served worker."""
    import json

    out: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "cpu": [], "statements": [], "compiled": [], "calls": []}
        for name, *_ in pages
    }
    services = app.extensions["hw_fhir"]
    # the last round counts the Python calls of each first view (untimed: counting slows it)
    for round_ in range(args.cold_runs + 1):
        counting_calls = round_ == args.cold_runs
        for name, who, path, params in pages:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker
                code = 1
                try:
                    os.close(read)
                    services.after_fork()
                    sessions = _sessions(app, services.store)
                    statements = _Statements(services.store.engine)
                    if counting_calls:
                        figures = {"calls": _python_calls(sessions[who], path, params)}
                    else:
                        wall, cpu, count = _sample(sessions[who], path, params, statements)
                        figures = {"wall": wall, "cpu": cpu, "statements": count,
                                   "compiled": statements.compiled}
                    os.write(write, json.dumps(figures).encode())
                    code = 0
                finally:
                    os._exit(code)
            os.close(write)
            data = b""
            while chunk := os.read(read, 65536):
                data += chunk
            os.close(read)
            _, status = os.waitpid(pid, 0)
            if status:
                raise SystemExit(f"cold view of {name} failed (status {status})")
            for key, value in json.loads(data).items():
                out[name][key].append(value)
    return out


def _run(args: argparse.Namespace, database_url: str | None) -> None:
    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{tmp}/bench.db"
        app = clinician_app(_config(url, tmp))
        print(f"database: {'PostgreSQL' if database_url else 'SQLite'}")
        store = app.extensions["hw_fhir"].store
        count, secs = load(store, history("pat-ava", args.tasks, now))
        others, other_secs = load(store, other_tasks(args.others, 500))
        panel_count, panel_secs = load(store, panel_patients(args.panel, 25, now))
        refresh_statistics(store)  # PostgreSQL: as autovacuum would within a minute
        mine = store.search("Task", [("patient", "Patient/pat-ava"), ("_summary", "count")]).total
        print(
            f"pat-ava: {mine} Tasks ({count} resources in {secs:.1f} s); "
            f"{others} Tasks of other patients ({other_secs:.1f} s); {args.panel} more "
            f"patients in the panel with 25 recent Tasks each ({panel_count} resources, "
            f"{panel_secs:.1f} s)"
        )
        if args.analyze and not database_url:
            import sqlalchemy as sa

            with store.engine.begin() as conn:
                conn.execute(sa.text("ANALYZE"))
            print("ran ANALYZE")
        pages = _pages(store, now)
        prepare_for_fork(app)  # as `hw-fhir serve` does before its workers start
        started = time.perf_counter()
        cold = _cold(args, app, pages) if args.cold_runs else {}
        cold_secs = time.perf_counter() - started
        sessions = _sessions(app, store)
        statements = _Statements(store.engine)
        for _name, who, path, params in pages:
            sessions[who].get(path, **params)  # warm up (templates, style, Task facts)
        walls: dict[str, list[float]] = {name: [] for name, *_ in pages}
        cpus: dict[str, list[float]] = {name: [] for name, *_ in pages}
        counts: dict[str, list[int]] = {name: [] for name, *_ in pages}
        emptied: dict[str, list[float]] = {"dashboard": [], "panel": []}
        references = []
        # round robin: every page sees the same drift of this machine's speed
        for _ in range(args.runs):
            references.append(_reference_ms())
            for name, who, path, params in pages:
                wall, cpu, n = _sample(sessions[who], path, params, statements)
                walls[name].append(wall)
                cpus[name].append(cpu)
                counts[name].append(n)
            # the dashboard and the panel when none of their Tasks was read before in this
            # process (after all of them changed); then both read again, unmeasured, so
            # that the next round's pages find what a running server would have kept
            for name, who, path, params in pages:
                if name in emptied:
                    clear_task_facts()
                    emptied[name].append(_sample(sessions[who], path, params, statements)[0])
            for name, who, path, params in pages:
                if name in emptied:
                    sessions[who].get(path, **params)
        print(
            f"{'page':26} {'warm ms':>8} {'p95':>6} {'best':>6} {'cpu':>6} {'stmts':>5}"
            f" | {'cold ms':>7} {'best':>6} {'cpu':>6} {'stmts':>5} {'compiled':>8} {'calls':>7}"
        )
        worst = 0.0
        for name, *_ in pages:
            median, p95, best = _summary(walls[name])
            line = (
                f"{name:26} {median:8.1f} {p95:6.1f} {best:6.1f} "
                f"{statistics.median(cpus[name]):6.1f} {max(counts[name]):5d}"
            )
            over = median >= 100
            worst = max(worst, median)
            if name in cold:
                c_median, _, c_best = _summary(cold[name]["wall"])
                worst = max(worst, c_median)
                over = over or c_median >= 100
                line += (
                    f" | {c_median:7.1f} {c_best:6.1f} "
                    f"{statistics.median(cold[name]['cpu']):6.1f} "
                    f"{int(max(cold[name]['statements'])):5d} "
                    f"{int(max(cold[name]['compiled'])):8d} {int(max(cold[name]['calls'])):7d}"
                )
            print(line + ("  <-- over 100 ms" if over else ""))
        for name, samples in emptied.items():
            median, p95, best = _summary(samples)
            worst = max(worst, median)
            print(
                f"{name + ', Task cache emptied':26} {median:8.1f} {p95:6.1f} {best:6.1f}"
                + ("  <-- over 100 ms" if median >= 100 else "")
            )
        print(
            f"warm: median of {args.runs} views, pages in turn; cold: the page's first view in "
            f"a fresh worker ({args.cold_runs} each, {cold_secs:.0f} s); stmts: SQL statements "
            "of one view; compiled: of those, compiled by SQLAlchemy in the fresh worker; calls: "
            "Python function calls of a first view (one more fresh worker, untimed)"
        )
        print(f"machine reference: sum(range(2*10**6)) took {min(references):.0f} ms at best, "
              f"{statistics.median(references):.0f} ms median, {max(references):.0f} ms at worst "
              "during the run (20-30 ms on a current laptop; this machine's speed drifts)")
        load1, load5, load15 = os.getloadavg()
        print(
            f"slowest median: {worst:.1f} ms (bar: < 100 ms); load average now "
            f"{load1:.1f} {load5:.1f} {load15:.1f} on {os.cpu_count()} CPUs"
        )
        app.extensions["hw_fhir"].close()


if __name__ == "__main__":
    main()
