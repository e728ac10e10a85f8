"""hw-fhir side by side with Medplum's in-memory FHIR engine, over real HTTP, in one run.

The same workloads go to every system in the same round, the order rotating from round
to round so the machine's drift hits all of them alike; each round prints its figures
and the paired ratio hw-fhir / Medplum (the peer in ``../shared/peers/medplum``):

* creates of Patient, Observation and QuestionnaireResponse with 1 and 4 clients (/s),
* transaction Bundles of 100 and 1 000 Observations (resources/s),
* read by id (ms); hw-fhir's also in process (Flask test client, no socket) against the
  bare SQL + JSON of the same row,
* searches (ms): Observation?subject&code, Patient?family, Observation?code&date,
* ten ``_count=10`` pages of one patient's Observations (ms, following the next links;
  the patient's 110 Observations are spread evenly through the data loaded at each size),
* peak RSS of each server process (``VmHWM``); with ``--memory`` per process, split into
  anonymous (Python heap, SQLite's page caches) and file-backed, with its open SQLite
  connections and its read system calls so far (SQLite's cache misses).

hw-fhir runs as ``hw-fhir serve`` does (gunicorn gthread, 2 workers x 4 threads) on a
fresh SQLite file and a fresh PostgreSQL schema. ``--sizes`` grows the data set in steps
(Observations loaded through transaction Bundles of 1 000) and measures at each, then prints how the ten pages
cost at each size against the first::

    python bench/bench_peers.py                         # 1 000 Observations, 3 rounds
    python bench/bench_peers.py --sizes 1000,100000     # paging flat from 1 000 to 100 000?
    python bench/bench_peers.py --sizes 1000,1000000 --rounds 2 --creates 100
    python bench/bench_peers.py --no-peer               # hw-fhir only
    python bench/bench_peers.py --before /tmp/main      # also main's code: after/before ratios
    python bench/bench_peers.py --server granian --before /tmp/same   # granian vs gunicorn
    python bench/bench_peers.py --sizes 1000,1000000 --no-peer --keep /tmp/k  # keep the DBs
    python bench/bench_peers.py --reuse /tmp/k bench_xxxx  # measure them again, no loading
    python bench/bench_peers.py --sizes 1000,250000 --rounds 1 --no-peer --no-pg --memory \
        --before /tmp/main                              # memory per process, after and before

The peer is started with its ``start.sh`` (on a free port) unless ``--peer-url`` names a
running one; when it cannot start the bench says so and prints hw-fhir's figures alone.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import orjson
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
#: The peer's start script: in ``shared/`` beside the checkout (or beside a worktree's folder).
PEER_START = next((p for p in (ROOT.parent / "shared" / "peers" / "medplum" / "start.sh",
                               ROOT.parent.parent / "shared" / "peers" / "medplum" / "start.sh")
                   if p.exists()), ROOT.parent / "shared" / "peers" / "medplum" / "start.sh")
PG_ADMIN_URL = os.environ.get("HW_FHIR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PAGER_OBS = 110
CODES = [("44261-6", "PHQ-9 total"), ("70274-6", "GAD-7 total"), ("29463-7", "Body weight"),
         ("8867-4", "Heart rate"), ("55758-7", "PHQ-2 total")]
FAMILIES = ["Rivera", "Nguyen", "Okafor", "Schmidt", "Kowalski", "Haddad", "Tanaka", "Silva",
            "Murphy", "Rossi", "Novak", "Larsen"]


# --------------------------------------------------------------------------- HTTP client


class Client:
    """One keep-alive HTTP/1.1 connection to a FHIR base URL."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port, self.prefix = parts.hostname, parts.port, parts.path.rstrip("/")
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request (path below the base, or an absolute URL); return status and body."""
        if path.startswith("http"):
            parts = urlsplit(path)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            path = self.prefix + "/" + path.lstrip("/")
        headers = {"Accept": "application/fhir+json"}
        if body is not None:
            headers["Content-Type"] = "application/fhir+json"
        for attempt in (1, 2):  # a server may close an idle keep-alive connection
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        status, data = self.request(method, path, None if body is None else orjson.dumps(body))
        if status not in ok:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
        return orjson.loads(data) if data else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ------------------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(base: str, proc: subprocess.Popen | None = None, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            status, _ = Client(base).request("GET", "metadata")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base} did not come up")


def _tree(pid: int) -> list[int]:
    """The process and its children (gunicorn's master and workers)."""
    out = [pid]
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out.extend(_tree(int(child)))
    except OSError:
        pass
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _smaps_kb(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` in kB (Rss, Anonymous, ...); empty when unreadable."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _read_calls(pid: int) -> int:
    """Read system calls the process made (``/proc/PID/io`` syscr): SQLite reads each page
    its cache misses with one, so fewer means more served from the cache (sockets' recv
    are not counted)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("syscr:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _open_files(pid: int, suffix: str) -> int:
    """How many descriptors of the process name a file ending in ``suffix`` (SQLite
    connections: each holds the database file open once)."""
    count = 0
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0
    for fd in fds:
        try:
            count += os.readlink(fd).endswith(suffix)
        except OSError:  # closed meanwhile (the listing's own descriptor, among others)
            pass
    return count


class System:
    """A FHIR server under test: its base URL, its processes, how to stop it."""

    def __init__(self, name: str, base: str, pid: int, stop: Callable[[], None],
                 bare: "Bare | None" = None, url: str = "") -> None:
        self.name, self.base, self.pid, self._stop, self.bare = name, base, pid, stop, bare
        self.url = url  # its database (hw-fhir)
        self.ids: list[str] = []  # Observation ids for reads
        self.patients: list[str] = []
        self.pagers: list[str] = []

    def peak_rss_mb(self) -> tuple[float, float]:
        """Return (largest process peak, sum of peaks) in MB over the server's processes."""
        peaks = [_status_kb(p, "VmHWM") for p in _tree(self.pid)]
        return max(peaks) / 1024, sum(peaks) / 1024

    def memory_lines(self) -> list[str]:
        """Per process: peak and current RSS, anonymous (heap: Python objects, SQLite's page
        cache) and file-backed/shared resident memory, open SQLite connections."""
        lines = []
        for n, pid in enumerate(_tree(self.pid)):
            smaps = _smaps_kb(pid)
            anon = smaps.get("Anonymous", 0)
            role = "master" if n == 0 else "worker"
            line = (f"   memory {self.name} pid {pid} ({role}): peak {_status_kb(pid, 'VmHWM') / 1024:.0f} MB, "
                    f"now {_status_kb(pid, 'VmRSS') / 1024:.0f} MB = anonymous {anon / 1024:.0f} MB "
                    f"+ file/shared {(smaps.get('Rss', 0) - anon) / 1024:.0f} MB")
            if self.url.startswith("sqlite"):
                line += (f"; SQLite connections open {_open_files(pid, '.db')}, "
                         f"read calls so far {_read_calls(pid):,}")
            lines.append(line)
        return lines

    def stop(self) -> None:
        self._stop()


def start_hw(name: str, url: str, tmp: Path, workers: int, threads: int,
             source: str | None = None, server: str | None = None) -> System:
    """Serve hw-fhir on ``url`` in a child process as ``hw-fhir serve`` does (``source``: another
    checkout, served with its default server; ``server``: this checkout's server)."""
    port = _free_port()
    env = dict(os.environ, HW_FHIR_DATABASE_URL=url, HW_FHIR_OPEN_API="1",
               HW_FHIR_INSTANCE_PATH=str(tmp / name), HW_FHIR_SECRET_KEY="bench",
               HW_FHIR_PLUGINS=os.environ.get("HW_FHIR_PLUGINS", ""))
    env.pop("HW_FHIR_BENCH_SERVER", None)
    if server:
        env["HW_FHIR_BENCH_SERVER"] = server
    if not env["HW_FHIR_PLUGINS"]:
        env.pop("HW_FHIR_PLUGINS")
    if source:  # its hw_fhir and smart_app come first on the path
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(workers),
                             str(threads)], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / f"{name}.log", "wb"), start_new_session=True)
    base = f"http://127.0.0.1:{port}/fhir"

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    try:
        _wait_up(base, proc)
    except Exception:
        stop()
        raise
    return System(name, base, proc.pid, stop, None if source else Bare(url, tmp / name), url)


def start_peer(args: argparse.Namespace) -> System | None:
    """Start the Medplum peer (or use ``--peer-url``); None, said why, when it cannot."""
    if args.peer_url:
        try:
            _wait_up(args.peer_url, None, 5)
        except Exception as exc:  # noqa: BLE001 - report and go on without the peer
            print(f"peer: {args.peer_url} does not answer ({exc}); hw-fhir figures only")
            return None
        return System("medplum", args.peer_url, args.peer_pid or 0, lambda: None)
    if not PEER_START.exists():
        print(f"peer: {PEER_START} not found; hw-fhir figures only")
        return None
    port = _free_port()
    env = dict(os.environ, PORT=str(port), LOG="0")
    try:
        out = subprocess.run(["bash", str(PEER_START)], env=env, capture_output=True, text=True,
                             timeout=900, check=True)
        pid = int(out.stdout.strip().splitlines()[-1])
    except Exception as exc:  # noqa: BLE001 - report and go on without the peer
        print(f"peer: Medplum could not start ({exc}); hw-fhir figures only")
        return None
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        _wait_up(base, None, 60)
    except Exception as exc:  # noqa: BLE001
        os.kill(pid, signal.SIGTERM)
        print(f"peer: Medplum started (pid {pid}) but does not answer ({exc}); hw-fhir only")
        return None

    def stop() -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    return System("medplum", base, pid, stop)


def serve(port: int, workers: int, threads: int) -> None:
    """Child process: served as ``hw-fhir serve`` serves (:func:`smart_app.serving.serve_app`)."""
    from smart_app import create_app
    from smart_app.cli import freeze_startup_heap

    app = create_app()
    try:
        from smart_app.serving import serve_app
    except ImportError:  # a checkout from before smart_app.serving (--before): as it served
        _serve_gthread(app, port, workers, threads)
        return
    server = os.environ.get("HW_FHIR_BENCH_SERVER")  # --server (a --before checkout: its default)
    serve_app(app, "127.0.0.1", port, workers, threads, before_run=freeze_startup_heap,
              **({"server": server} if server else {}))


def _serve_gthread(app: Any, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from smart_app.cli import freeze_startup_heap

    store = app.extensions["hw_fhir"].store

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"127.0.0.1:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", "-")
            self.cfg.set("access_log_format", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss')
            self.cfg.set("post_fork", lambda _server, _worker: store.engine.dispose(close=False))

        def load(self) -> Any:
            return app

    freeze_startup_heap()
    Server().run()


# ---------------------------------------------------------------------------- bare SQL


class Bare:
    """hw-fhir's database read directly (DB-API), and the app in this process (no socket)."""

    SQL = "SELECT content FROM resource WHERE res_type = {p} AND res_id = {p}"

    def __init__(self, url: str, instance: Path) -> None:
        self.url, self.instance = url, instance
        self._raw: Any = None
        self._client: Any = None

    def _connection(self) -> Any:
        if self._raw is None:
            self._engine = sa.create_engine(self.url)
            self._raw = self._engine.raw_connection()
            # one SELECT, no transaction: no BEGIN and no ROLLBACK round trips (PostgreSQL
            # in autocommit; sqlite3 emits no BEGIN with isolation_level None)
            if self.url.startswith("sqlite"):
                self._raw.driver_connection.isolation_level = None
            else:
                self._raw.driver_connection.autocommit = True
            self._sql = self.SQL.format(p="?" if self.url.startswith("sqlite") else "%s")
        return self._raw.driver_connection

    def read(self, rtype: str, id: str) -> bytes:
        """The stored JSON of one resource by its key, as the response body would carry it:
        one prepared SELECT on one pooled connection (psycopg ``prepare=True``: parsed and
        planned once; sqlite3: its statement cache)."""
        conn = self._connection()
        if self.url.startswith("sqlite"):
            row = conn.execute(self._sql, (rtype, id)).fetchone()
        else:
            row = conn.execute(self._sql, (rtype, id), prepare=True).fetchone()
        return row[0].encode()

    def app_read(self, rtype: str, id: str) -> bytes:
        """GET /fhir/<type>/<id> through the WSGI app in this process (no HTTP socket)."""
        if self._client is None:
            import logging

            from smart_app import create_app

            logging.getLogger("hw_fhir").setLevel(logging.ERROR)  # the open-API warning

            app = create_app({"database_url": self.url, "open_api": True, "secret_key": "bench",
                              "instance_path": str(self.instance)})
            self._client = app.test_client()
        response = self._client.get(f"/fhir/{rtype}/{id}")
        assert response.status_code == 200, response.data[:200]
        return response.data

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._engine.dispose()


# -------------------------------------------------------------------------------- data


def patient(rnd: random.Random, pid: str | None = None) -> dict[str, Any]:
    res = {"resourceType": "Patient", "active": True,
           "identifier": [{"system": "urn:bench:mrn", "value": str(rnd.getrandbits(40))}],
           "name": [{"family": rnd.choice(FAMILIES), "given": ["Alex", "Sam"][rnd.randrange(2):]}],
           "gender": rnd.choice(["female", "male", "other"]),
           "birthDate": f"19{rnd.randrange(40, 99)}-0{rnd.randrange(1, 10)}-1{rnd.randrange(10)}"}
    if pid:
        res["id"] = pid
    return res


def observation(rnd: random.Random, subject: str, n: int) -> dict[str, Any]:
    code, display = CODES[n % len(CODES)]
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "survey"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{subject}"},
            "effectiveDateTime": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T10:00:00Z",
            "valueQuantity": {"value": rnd.randrange(0, 28), "unit": "{score}",
                              "system": "http://unitsofmeasure.org", "code": "{score}"}}


def response(rnd: random.Random, subject: str) -> dict[str, Any]:
    """A completed mood log (the catalog's): homework that no instrument scores (the common case)."""
    return {"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0",
            "subject": {"reference": f"Patient/{subject}"},
            "authored": "2026-03-02T20:15:00Z",
            "item": [{"linkId": "date", "answer": [{"valueDate": "2026-03-02"}]},
                     {"linkId": "mood", "answer": [{"valueInteger": rnd.randrange(11)}]},
                     {"linkId": "anxiety", "answer": [{"valueInteger": rnd.randrange(11)}]},
                     {"linkId": "sleep-hours", "answer": [{"valueDecimal": 7.5}]},
                     {"linkId": "helped", "answer": [
                         {"valueString": "Walked with a friend, felt a little better."}]}]}


def bundle(resources: list[dict[str, Any]], kind: str = "transaction") -> dict[str, Any]:
    entries = []
    for r in resources:
        if "id" in r:
            entries.append({"resource": r, "request": {"method": "PUT",
                                                       "url": f"{r['resourceType']}/{r['id']}"}})
        else:
            entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r,
                            "request": {"method": "POST", "url": r["resourceType"]}})
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def _ids(reply: dict[str, Any]) -> list[str]:
    out = []
    for e in reply.get("entry", []):
        location = (e.get("response") or {}).get("location", "")
        parts = location.split("/")
        if "Observation" in parts:
            out.append(parts[parts.index("Observation") + 1])
    return out


def grow(systems: list[System], target: int, have: int, stage: int, seed: int = 11) -> float:
    """Load Observations up to ``target`` in every system (same data); return seconds per system."""
    rnd = random.Random(seed + stage)
    new_patients = [f"p{stage}-{i}" for i in range(max(10, (target - have) // 20))]
    pager = f"pager-{stage}"
    patients = [patient(rnd, pid) for pid in new_patients] + [patient(rnd, pager)]
    count = target - have
    spacing = max(1, count // PAGER_OBS)
    obs = []
    for i in range(count):
        subject = pager if i % spacing == 0 and i // spacing < PAGER_OBS else rnd.choice(new_patients)
        obs.append(observation(rnd, subject, i))
    seconds: dict[str, float] = {}
    failures: list[BaseException] = []

    def load_into(system: System) -> None:
        try:
            client = Client(system.base)
            kind = "transaction"
            t0 = time.perf_counter()
            for start in range(0, len(patients), 50):  # Medplum: at most 50 PUTs a transaction
                client.json("POST", "", bundle(patients[start:start + 50], kind))
            for start in range(0, len(obs), 1000):
                reply = client.json("POST", "", bundle(obs[start:start + 1000], kind))
                ids = _ids(reply)
                if len(system.ids) < 50_000:
                    system.ids.extend(ids[:50_000 - len(system.ids)])
            seconds[system.name] = time.perf_counter() - t0
            client.close()
            system.patients.extend(new_patients)
            system.pagers.append(pager)
        except BaseException as exc:  # noqa: BLE001 - raised below, in the main thread
            failures.append(exc)

    # every system loads at the same time (each server is a process of its own), so a large
    # size takes the slowest system's time, not the sum; each rate is under that contention
    loaders = [threading.Thread(target=load_into, args=(s,)) for s in systems]
    for t in loaders:
        t.start()
    for t in loaders:
        t.join()
    if failures:
        raise failures[0]
    for name, secs in seconds.items():
        print(f"  loaded {count} Observations into {name} in {secs:.1f} s ({count / secs:.0f}/s; "
              f"all systems loading at once, load average {os.getloadavg()[0]:.1f})")
    return max(seconds.values())


# --------------------------------------------------------------------------- workloads


def creates(system: System, rtype: str, clients: int, n: int, seed: int) -> float:
    """``n`` creates split over ``clients`` connections; return creates per second."""
    rnd = random.Random(seed)
    bodies = []
    for _ in range(n):
        subject = rnd.choice(system.patients)
        if rtype == "Patient":
            bodies.append(orjson.dumps(patient(rnd)))
        elif rtype == "Observation":
            bodies.append(orjson.dumps(observation(rnd, subject, rnd.randrange(1000))))
        else:
            bodies.append(orjson.dumps(response(rnd, subject)))
    conns = [Client(system.base) for _ in range(clients)]
    for c in conns:  # connect first: the timing is of the creates
        c.request("GET", "metadata")
    errors: list[str] = []

    def run(k: int) -> None:
        c = conns[k]
        for body in bodies[k::clients]:
            status, data = c.request("POST", rtype, body)
            if status != 201:
                errors.append(f"{status} {data[:200]!r}")
                return

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    for c in conns:
        c.close()
    if errors:
        raise RuntimeError(f"{system.name} create {rtype}: {errors[0]}")
    return n / secs


def transactions(system: System, size: int, times: int, seed: int) -> float:
    """``times`` transaction Bundles of ``size`` Observations; return resources per second."""
    rnd = random.Random(seed)
    bodies = [orjson.dumps(bundle([observation(rnd, rnd.choice(system.patients), i)
                                   for i in range(size)])) for _ in range(times)]
    c = Client(system.base)
    c.request("GET", "metadata")
    t0 = time.perf_counter()
    for body in bodies:
        status, data = c.request("POST", "", body)
        if status != 200:
            raise RuntimeError(f"{system.name} transaction: {status} {data[:300]!r}")
    secs = time.perf_counter() - t0
    c.close()
    return size * times / secs


def reads(system: System, n: int, seed: int) -> float:
    """Mean ms of ``n`` reads by id over HTTP."""
    rnd = random.Random(seed)
    picks = [rnd.choice(system.ids) for _ in range(n)]
    c = Client(system.base)
    c.request("GET", "metadata")
    t0 = time.perf_counter()
    for id in picks:
        status, data = c.request("GET", f"Observation/{id}")
        if status != 200:
            raise RuntimeError(f"{system.name} read: {status} {data[:200]!r}")
    secs = time.perf_counter() - t0
    c.close()
    return secs / n * 1000


def bare_reads(system: System, n: int, seed: int) -> tuple[float, float]:
    """Mean ms of ``n`` reads in process (WSGI app) and of the bare SQL + JSON; same ids."""
    assert system.bare is not None
    rnd = random.Random(seed)
    picks = [rnd.choice(system.ids) for _ in range(n)]
    system.bare.app_read("Observation", picks[0])
    system.bare.read("Observation", picks[0])
    app_t = sql_t = 0.0
    for id in picks:  # interleaved: both see the same cache state
        t0 = time.perf_counter()
        body = system.bare.read("Observation", id)
        t1 = time.perf_counter()
        served = system.bare.app_read("Observation", id)
        t2 = time.perf_counter()
        assert len(served) >= len(body) // 2
        sql_t += t1 - t0
        app_t += t2 - t1
    return app_t / n * 1000, sql_t / n * 1000


def searches(system: System, n: int, seed: int) -> float:
    """Mean ms of ``n`` searches (three kinds in turn)."""
    rnd = random.Random(seed)
    queries = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            queries.append(f"Observation?subject=Patient/{rnd.choice(system.patients)}"
                           f"&code=http://loinc.org|{CODES[rnd.randrange(len(CODES))][0]}")
        elif kind == 1:
            queries.append(f"Patient?family={rnd.choice(FAMILIES)}&_count=20")
        else:
            queries.append(f"Observation?code=http://loinc.org|{CODES[rnd.randrange(len(CODES))][0]}"
                           f"&date=ge2026-{1 + rnd.randrange(12):02d}-15&_count=20")
    c = Client(system.base)
    c.request("GET", "metadata")
    t0 = time.perf_counter()
    for q in queries:
        status, data = c.request("GET", q)
        if status != 200:
            raise RuntimeError(f"{system.name} search {q}: {status} {data[:200]!r}")
    secs = time.perf_counter() - t0
    c.close()
    return secs / n * 1000


def ten_pages(system: System, pager: str) -> float:
    """ms to fetch ten ``_count=10`` pages of one patient's Observations by the next links."""
    c = Client(system.base)
    c.request("GET", "metadata")
    t0 = time.perf_counter()
    url = f"Observation?subject=Patient/{pager}&_count=10"
    seen = 0
    for page in range(10):
        data = c.json("GET", url)
        seen += len(data.get("entry", []))
        link = [ln["url"] for ln in data.get("link", []) if ln["relation"] == "next"]
        if page < 9:
            if not link:
                raise RuntimeError(f"{system.name}: no next link after page {page + 1}")
            url = link[0]
    secs = time.perf_counter() - t0
    c.close()
    if seen != 100:
        raise RuntimeError(f"{system.name}: ten pages held {seen} Observations, not 100")
    return secs * 1000


# ---------------------------------------------------------------------------------- run


def machine_reference() -> float:
    """Time a fixed pure-Python loop: this machine's speed right now (it drifts)."""
    t0 = time.perf_counter()
    sum(range(2 * 10**6))
    return (time.perf_counter() - t0) * 1000


def _fmt(value: float, unit: str) -> str:
    return f"{value:,.0f}{unit}" if value >= 100 else f"{value:.2f}{unit}"


def measure(systems: list[System], args: argparse.Namespace, size: int,
            pages: dict[str, dict[int, list[float]]]) -> None:
    hw = [s for s in systems if s.name != "medplum"]
    peer = next((s for s in systems if s.name == "medplum"), None)
    table: dict[str, dict[str, list[float]]] = {}
    refs = []
    for rnd_no in range(args.rounds):
        refs.append(machine_reference())
        order = systems[rnd_no % len(systems):] + systems[:rnd_no % len(systems)]
        seed = 1000 * size + rnd_no
        work: list[tuple[str, str, Callable[[System], float]]] = []
        for rtype in ("Patient", "Observation", "QuestionnaireResponse"):
            for clients in (1, 4):
                work.append((f"create {rtype} x{clients}", "/s",
                             lambda s, r=rtype, k=clients: creates(s, r, k, args.creates, seed)))
        work.append(("transaction 100", " res/s", lambda s: transactions(s, 100, 3, seed)))
        work.append(("transaction 1000", " res/s", lambda s: transactions(s, 1000, 1, seed)))
        work.append(("read by id", " ms", lambda s: reads(s, args.reads, seed)))
        work.append(("search", " ms", lambda s: searches(s, args.searches, seed)))
        work.append(("10 pages", " ms", lambda s: ten_pages(s, s.pagers[-1])))
        print(f"-- size {size:,} round {rnd_no + 1}/{args.rounds} "
              f"(order {', '.join(s.name for s in order)}; machine ref {refs[-1]:.0f} ms)")
        for label, unit, fn in work:
            figures = {}
            for system in order:
                figures[system.name] = fn(system)
                table.setdefault(label, {}).setdefault(system.name, []).append(figures[system.name])
            line = f"   {label:<30}" + "".join(f" {s.name} {_fmt(figures[s.name], unit):>12}"
                                                for s in systems)
            if peer is not None:
                line += "   ratio hw/peer:" + "".join(
                    f" {s.name} {figures[s.name] / figures[peer.name]:.2f}x" for s in hw)
            line += "".join(f"   {s.name}/before {figures[s.name] / figures[s.name + '@before']:.2f}x"
                            for s in hw if s.name + "@before" in figures)
            print(line)
            if label == "10 pages":
                for s in systems:
                    pages.setdefault(s.name, {}).setdefault(size, []).append(figures[s.name])
        for s in hw:
            if s.bare is None:
                continue
            app_ms, sql_ms = bare_reads(s, args.reads, seed)
            table.setdefault("read in process", {}).setdefault(s.name, []).append(app_ms)
            table.setdefault("read bare SQL+JSON", {}).setdefault(s.name, []).append(sql_ms)
            print(f"   read by id in process {s.name}: app {app_ms:.3f} ms, bare SQL+JSON "
                  f"{sql_ms:.3f} ms, ratio {app_ms / sql_ms:.1f}x")
    print(f"== size {size:,}: medians over {args.rounds} rounds (machine reference "
          f"sum(range(2*10**6)) {min(refs):.0f} ms at best, {statistics.median(refs):.0f} median)")
    for label, by_system in table.items():
        line = f"   {label:<30}" + "".join(f" {name} {statistics.median(v):>10.3f}"
                                            for name, v in by_system.items())
        if peer is not None and peer.name in by_system:
            ratios = [statistics.median([a / b for a, b in zip(by_system[s.name],
                                                               by_system[peer.name])])
                      for s in hw]
            line += "   paired ratio:" + "".join(f" {s.name} {r:.2f}x" for s, r in zip(hw, ratios))
        for s in hw:
            twin = by_system.get(s.name + "@before")
            if twin and s.name in by_system:
                ratio = statistics.median([a / b for a, b in zip(by_system[s.name], twin)])
                line += f"   {s.name}/before {ratio:.2f}x"
        print(line)
    for s in systems:
        peak, total = s.peak_rss_mb()
        print(f"   peak RSS {s.name}: largest process {peak:.0f} MB, all processes {total:.0f} MB")
        if args.memory:
            print("\n".join(s.memory_lines()))


def _held(system: System) -> int:
    """Fill the system's ids, patients and pagers from its database; return its Observations."""
    assert system.bare is not None
    engine = sa.create_engine(system.bare.url)
    with engine.connect() as conn:
        def ids(sql: str) -> list[str]:
            return list(conn.execute(sa.text(sql)).scalars())
        system.ids = ids("SELECT res_id FROM resource WHERE res_type = 'Observation' LIMIT 50000")
        system.patients = ids("SELECT res_id FROM resource WHERE res_type = 'Patient' "
                              "AND res_id LIKE 'p%-%' AND res_id NOT LIKE 'pager%'")
        system.pagers = sorted(ids("SELECT res_id FROM resource WHERE res_type = 'Patient' "
                                   "AND res_id LIKE 'pager-%'"))
        count = conn.execute(sa.text("SELECT count(*) FROM resource "
                                     "WHERE res_type = 'Observation'")).scalar_one()
    engine.dispose()
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000",
                        help="Observation counts to measure at, growing (e.g. 1000,100000,1000000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--creates", type=int, default=120, help="creates per type, per clients")
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--searches", type=int, default=60)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--peer-url", help="a running peer's FHIR base (default: start one)")
    parser.add_argument("--peer-pid", type=int, help="its PID, for the peak RSS")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--server", choices=["gunicorn", "granian"],
                        help="the server of this checkout (hw-fhir serve --server); default its default")
    parser.add_argument("--memory", action="store_true",
                        help="after each size, every server process's peak and current RSS, "
                             "anonymous vs file-backed, and its open SQLite connections")
    parser.add_argument("--before", metavar="DIR",
                        help="also serve hw-fhir from this checkout (e.g. `git worktree` of main) "
                             "as <db>@before, measured in the same rounds, with after/before ratios")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the databases after the run: the SQLite file(s) in DIR, the "
                             "PostgreSQL schema(s) not dropped (their URLs are printed)")
    parser.add_argument("--reuse", nargs=2, metavar=("DIR", "SCHEMA"),
                        help="measure (no loading) the databases an earlier --keep DIR run left: "
                             "DIR/bench.db and PostgreSQL schema SCHEMA, at the size they hold "
                             "(hw-fhir only)")
    parser.add_argument("--serve", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    # a TERM (or INT, ignored by background jobs) still stops the servers and drops the schema
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    sizes = [int(s) for s in args.sizes.split(",")]
    systems: list[System] = []
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = None
    if args.reuse:
        args.keep, schema = args.reuse
        args.no_peer = True
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.keep:
            tmp = Path(args.keep)
            tmp.mkdir(parents=True, exist_ok=True)
        try:
            if not args.no_sqlite:
                systems.append(start_hw("sqlite", f"sqlite:///{tmp}/bench.db", tmp,
                                        args.workers, args.threads, server=args.server))
            if not args.no_pg:
                admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
                if not args.reuse:
                    with admin.connect() as conn:
                        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
                systems.append(start_hw("postgresql",
                                        f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}",
                                        tmp, args.workers, args.threads, server=args.server))
            if args.before:  # the same servers from another checkout, e.g. main
                for system in list(systems):
                    url = system.bare.url if system.bare else ""
                    if system.name == "sqlite":
                        url = f"sqlite:///{tmp}/before.db"
                    elif system.name == "postgresql":
                        with admin.connect() as conn:  # type: ignore[union-attr]
                            conn.execute(sa.text(f'CREATE SCHEMA "{schema}_b"'))
                        url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}_b"
                    systems.append(start_hw(system.name + "@before", url, tmp, args.workers,
                                            args.threads, source=args.before))
            if not args.no_peer:
                peer = start_peer(args)
                if peer is not None:
                    systems.append(peer)
            print("systems: " + ", ".join(f"{s.name} {s.base} (pid {s.pid})" for s in systems))
            pages: dict[str, dict[int, list[float]]] = {}
            if args.reuse:
                size = max(_held(s) for s in systems)
                print(f"== reusing {size:,} Observations (no load)")
                measure(systems, args, size, pages)
                sizes = [size]
            have = 0
            for stage, size in enumerate([] if args.reuse else sizes):
                print(f"== growing to {size:,} Observations")
                grow(systems, size, have, stage)
                have = size
                measure(systems, args, size, pages)
            if len(sizes) > 1:
                print("== ten pages, median ms at each size (and against the first size)")
                for name, by_size in pages.items():
                    first = statistics.median(by_size[sizes[0]])
                    print(f"   {name:<12}" + "".join(
                        f"  {size:,}: {statistics.median(v):.1f} ms ({statistics.median(v) / first:.2f}x)"
                        for size, v in by_size.items()))
        finally:
            for s in systems:
                if s.bare is not None:
                    s.bare.close()
                s.stop()
            if args.keep:
                print(f"kept: sqlite:///{tmp}/bench.db, PostgreSQL schema {schema}")
            elif admin is not None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}_b" CASCADE'))
            if admin is not None:
                admin.dispose()


if __name__ == "__main__":
    main()
