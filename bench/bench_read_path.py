"""Where the time of a read by id goes: in process (the WSGI app called as gunicorn calls it)
and over real HTTP against ``hw-fhir serve``, with paired figures against another checkout.

Each round measures, interleaved, for every system (this checkout, and ``--before DIR``):

* in process: ``GET /fhir/Observation/<id>`` through the WSGI callable with a gunicorn-like
  environ (no test client, no socket): ms per read, and Python function calls per read
  (cProfile's count: independent of the machine's load);
* the store's ``read`` alone, and the bare SQL of the same row (a prepared, pooled single
  SELECT: ``sqlite3`` with its statement cache; psycopg in autocommit with ``prepare=True``);
* over HTTP: ``hw-fhir serve`` (the real command, 2 workers x 4 threads) read with
  one keep-alive ``http.client`` connection: ms per read, the server processes' CPU time
  per read (``/proc/<pid>/stat`` utime+stime of master and workers: less sensitive to load
  than wall time), the server's context switches per read (thread hand-offs: a count, not
  a time), and how many times the client had to connect (1 when keep-alive holds).

    python bench/bench_read_path.py                          # SQLite and PostgreSQL
    python bench/bench_read_path.py --db sqlite --rounds 5 --reads 2000
    python bench/bench_read_path.py --before /tmp/base       # paired after/before ratios
    python bench/bench_read_path.py --server granian --before /tmp/same  # granian vs gunicorn
    python bench/bench_read_path.py --profile 30             # also the top 30 by own time
    python bench/bench_read_path.py --peer --no-inproc       # and Medplum, same reads
    python bench/bench_read_path.py --no-http --token        # in process, with a bearer token

``--before DIR`` is another checkout (e.g. ``git archive main | tar -x -C /tmp/base``); its
``hw_fhir`` and ``smart_app`` are imported in a child process. Prints the load average with
every round.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("HW_FHIR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")
TOKEN = False  # --token


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------- in process (child)


def _environ(path: str) -> dict[str, Any]:
    """A WSGI environ as gunicorn builds it for ``GET path`` from a FHIR client."""
    return {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
            "RAW_URI": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "5000",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000",
            "HTTP_HOST": "127.0.0.1:5000", "HTTP_ACCEPT": "application/fhir+json",
            "HTTP_CONNECTION": "keep-alive", "HTTP_USER_AGENT": "bench",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False}


def _wsgi_get(app: Any, path: str, extra: dict[str, str] | None = None) -> tuple[str, bytes]:
    status: list[str] = []
    result = app(_environ(path) | (extra or {}), lambda s, h, exc=None: status.append(s))
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return status[0], body


class _Bare:
    """The bare SQL + JSON of one row: one prepared SELECT on one pooled connection."""

    SQL = "SELECT content FROM resource WHERE res_type = {p} AND res_id = {p}"

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.engine = sa.create_engine(url)
        self.raw = self.engine.raw_connection()
        self.sqlite = url.startswith("sqlite")
        driver = self.raw.driver_connection
        if self.sqlite:
            driver.isolation_level = None  # no BEGIN for a single SELECT
            self.sql = self.SQL.format(p="?")
        else:
            driver.autocommit = True  # no BEGIN / ROLLBACK round trips
            self.sql = self.SQL.format(p="%s")
        self.driver = driver

    def read(self, rtype: str, id: str) -> bytes:
        if self.sqlite:
            row = self.driver.execute(self.sql, (rtype, id)).fetchone()
        else:
            row = self.driver.execute(self.sql, (rtype, id), prepare=True).fetchone()
        return row[0].encode()

    def close(self) -> None:
        self.raw.close()
        self.engine.dispose()


def child_inproc(url: str, instance: str, reads: int, profile: int) -> None:
    """Child process: build the app, write data, print one JSON line of figures."""
    import logging

    from smart_app import create_app

    logging.getLogger("hw_fhir").setLevel(logging.ERROR)  # the open-API warning
    token = os.environ.get("BENCH_READ_TOKEN") == "1"  # --token: reads carry a bearer token
    app = create_app({"database_url": url, "open_api": not token, "secret_key": "bench",
                      "instance_path": instance})
    store = app.extensions["hw_fhir"].store
    store.update({"resourceType": "Patient", "id": "bench-pat", "active": True})
    ids = [f"bench-obs-{n}" for n in range(50)]
    for n, rid in enumerate(ids):
        store.update({"resourceType": "Observation", "id": rid, "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                      "subject": {"reference": "Patient/bench-pat"}, "valueQuantity": {"value": n}})
    extra = {}
    if token:
        from smart_app.state import app_state

        auth = app_state(app).smart_auth
        assert auth is not None
        auth.save_token(access_token="bench-token", client_id="bench", scope="patient/*.rs",
                        context={"patient": "bench-pat"}, expires_in=3600)
        extra = {"HTTP_AUTHORIZATION": "Bearer bench-token"}
    wsgi = app.wsgi_app if hasattr(app, "wsgi_app") else app
    paths = [f"/fhir/Observation/{ids[i % len(ids)]}" for i in range(reads)]
    bare = _Bare(url)
    for p in paths[:50]:  # warm: pools, statement caches
        assert _wsgi_get(wsgi, p, extra)[0].startswith("200")
        store.read("Observation", p.rsplit("/", 1)[1])
        bare.read("Observation", p.rsplit("/", 1)[1])
    app_t = store_t = bare_t = 0.0
    for p in paths:  # interleaved: the three see the same machine
        rid = p.rsplit("/", 1)[1]
        t0 = time.perf_counter()
        _wsgi_get(wsgi, p, extra)
        t1 = time.perf_counter()
        store.read("Observation", rid)
        t2 = time.perf_counter()
        bare.read("Observation", rid)
        t3 = time.perf_counter()
        app_t, store_t, bare_t = app_t + t1 - t0, store_t + t2 - t1, bare_t + t3 - t2
    n_prof = min(reads, 300)
    prof = cProfile.Profile()
    prof.enable()
    for p in paths[:n_prof]:
        _wsgi_get(wsgi, p, extra)
    prof.disable()
    stats = pstats.Stats(prof)
    out = {"app_ms": app_t / reads * 1000, "store_ms": store_t / reads * 1000,
           "bare_ms": bare_t / reads * 1000, "calls": stats.total_calls / n_prof}  # type: ignore[attr-defined]
    bare.close()
    if profile:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "tottime")).print_stats(profile)
        out["profile"] = buf.getvalue()
    print("RESULT " + json.dumps(out), flush=True)


# ------------------------------------------------------------------------ over HTTP


def _cpu_ticks(pid: int) -> int:
    """utime+stime of a process and its children alive now (gunicorn's master and workers)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            pids += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return total


def _switches(pid: int) -> int:
    """Context switches (voluntary and not) of every thread of a process and its children."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                for line in (task / "status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
            pids += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return total


class Served:
    """``hw-fhir serve`` from a checkout, on a free port, in a child process."""

    def __init__(self, name: str, url: str, tmp: Path, source: str | None,
                 server: str | None = None) -> None:
        self.name, self.port = name, _free_port()
        env = dict(os.environ, HW_FHIR_DATABASE_URL=url, HW_FHIR_OPEN_API="1",
                   HW_FHIR_INSTANCE_PATH=str(tmp / name), HW_FHIR_SECRET_KEY="bench-" + "x" * 40)
        env.pop("HW_FHIR_SERVER", None)  # --server: this checkout's; --before: its default
        if server:
            env["HW_FHIR_SERVER"] = server
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source or str(ROOT),
                                                        env.get("PYTHONPATH")) if p)
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from smart_app.cli import main; main()", "serve",
             "--port", str(self.port)], env=env, cwd=str(tmp), stdout=open(tmp / f"{name}.access", "wb"),
            stderr=open(self.log, "wb"), start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name}: serve exited: {self.log.read_text()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/fhir/metadata")
                if c.getresponse().status == 200:
                    c.close()
                    break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"{name}: serve did not come up")
        self.ids = self._data()

    def _data(self) -> list[str]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/fhir+json"}

        def post(body: dict[str, Any]) -> str:
            c.request("POST", f"/fhir/{body['resourceType']}", json.dumps(body), headers)
            r = c.getresponse()
            data = r.read()
            assert r.status == 201, data[:300]
            return str(json.loads(data)["id"])

        pat = post({"resourceType": "Patient", "active": True})
        ids = [post({"resourceType": "Observation", "status": "final",
                     "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                     "subject": {"reference": f"Patient/{pat}"}, "valueQuantity": {"value": n}})
               for n in range(50)]
        c.close()
        return ids

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def reads(self, n: int) -> tuple[float, float, float, int]:
        """(wall ms, server CPU ms, server context switches) per read, and connections opened,
        of ``n`` reads."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connects = 0
        sock = None
        paths = [f"/fhir/Observation/{self.ids[i % len(self.ids)]}" for i in range(n)]
        for p in paths[:20]:
            c.request("GET", p, headers={"Accept": "application/fhir+json"})
            c.getresponse().read()
        cpu0, switches0 = _cpu_ticks(self.pid), _switches(self.pid)
        t0 = time.perf_counter()
        for p in paths:
            c.request("GET", p, headers={"Accept": "application/fhir+json"})
            if c.sock is not sock:
                connects, sock = connects + 1, c.sock
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"{self.name}: {p} -> {r.status}")
        wall = time.perf_counter() - t0
        cpu = (_cpu_ticks(self.pid) - cpu0) / TICK
        switches = (_switches(self.pid) - switches0) / n
        c.close()
        return wall / n * 1000, cpu / n * 1000, switches, connects

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


class Peer(Served):
    """Medplum's in-memory FHIR engine (``shared/peers/medplum``), read the same way."""

    def __init__(self, start: Path) -> None:  # noqa: D107 - not Served's start-up
        self.name, self.port = "medplum", _free_port()
        env = dict(os.environ, PORT=str(self.port), LOG="0")
        out = subprocess.run(["bash", str(start)], env=env, capture_output=True, text=True,
                             timeout=900, check=True)
        self._pid = int(out.stdout.strip().splitlines()[-1])
        self.ids = self._data()

    @property
    def pid(self) -> int:
        return self._pid

    def stop(self) -> None:
        try:
            os.kill(self._pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


PEER_START = next((p for p in (ROOT.parent / "shared" / "peers" / "medplum" / "start.sh",
                               ROOT.parent.parent / "shared" / "peers" / "medplum" / "start.sh")
                   if p.exists()), None)


# ------------------------------------------------------------------------------ main


def _inproc(url: str, tmp: Path, name: str, source: str | None, reads: int, profile: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source or str(ROOT), env.get("PYTHONPATH")) if p)
    inst = tmp / f"inproc-{name}-{uuid.uuid4().hex[:6]}"
    inst.mkdir()
    out = subprocess.run([sys.executable, __file__, "--child", url, str(inst), str(reads),
                          str(profile)], env=env | {"BENCH_READ_TOKEN": "1" if TOKEN else "0"}, capture_output=True, text=True, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{name}: in-process child failed: {out.stderr[-3000:]}")
    return dict(json.loads(line[7:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "pg", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--before", metavar="DIR", help="another checkout, measured alongside")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--server", choices=["gunicorn", "granian"],
                        help="this checkout's server (hw-fhir serve --server); --before: its default")
    parser.add_argument("--no-inproc", action="store_true")
    parser.add_argument("--token", action="store_true",
                        help="in process: /fhir protected, reads with a patient/*.rs bearer token")
    parser.add_argument("--peer", action="store_true",
                        help="also read from Medplum's in-memory engine (shared/peers/medplum)")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions (own time)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_inproc(args.child[0], args.child[1], int(args.child[2]), int(args.child[3]))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    global TOKEN
    TOKEN = args.token
    import sqlalchemy as sa

    dbs = ["sqlite", "pg"] if args.db == "both" else [args.db]
    sources = {"after": None} | ({"before": args.before} if args.before else {})
    schemas: list[str] = []
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT") if "pg" in dbs else None
    served: list[tuple[str, str, Served]] = []
    table: dict[tuple[str, str, str], list[float]] = {}

    def url_for(db: str, tmp: Path) -> str:
        if db == "sqlite":
            return f"sqlite:///{tmp}/{uuid.uuid4().hex[:8]}.db"
        schema = f"bench_rp_{uuid.uuid4().hex[:10]}"
        assert admin is not None
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            if not args.no_http:
                for db in dbs:
                    for label, source in sources.items():
                        served.append((db, label, Served(
                            f"{db}-{label}", url_for(db, tmp), tmp, source,
                            args.server if label == "after" else None)))
            if args.peer:
                assert PEER_START is not None, "shared/peers/medplum/start.sh not found"
                served.append(("medplum", "peer", Peer(PEER_START)))
            for rnd in range(args.rounds):
                print(f"-- round {rnd + 1}/{args.rounds}  load average {_load()}", flush=True)
                for db in dbs:
                    order = list(sources.items())
                    if db != dbs[0]:
                        served_now = [s for s in served if s[0] != "medplum"]
                    else:
                        served_now = served
                    if rnd % 2:
                        order.reverse()
                    for label, source in order if not args.no_inproc else []:
                        r = _inproc(url_for(db, tmp), tmp, f"{db}-{label}", source, args.reads,
                                    args.profile if rnd == 0 else 0)
                        for key in ("app_ms", "store_ms", "bare_ms", "calls"):
                            table.setdefault((db, label, key), []).append(r[key])
                        print(f"   {db:<7} {label:<7} in process: app {r['app_ms']:.3f} ms "
                              f"({r['calls']:.0f} Python calls/read), store.read "
                              f"{r['store_ms']:.3f} ms, bare SQL+JSON {r['bare_ms']:.3f} ms, "
                              f"app/bare {r['app_ms'] / r['bare_ms']:.1f}x", flush=True)
                        if r.get("profile"):
                            print(r["profile"])
                    pairs = [s for s in served_now if s[0] in (db, "medplum")]
                    if rnd % 2:
                        pairs.reverse()
                    for name, label, server in pairs:
                        wall, cpu, switches, connects = server.reads(args.reads)
                        table.setdefault((name, label, "http_ms"), []).append(wall)
                        table.setdefault((name, label, "http_cpu_ms"), []).append(cpu)
                        table.setdefault((name, label, "http_switches"), []).append(switches)
                        print(f"   {name:<7} {label:<7} over HTTP: {wall:.3f} ms/read, server CPU "
                              f"{cpu:.3f} ms/read, {switches:.1f} context switches/read, "
                              f"connections opened {connects}", flush=True)
            print(f"== medians over {args.rounds} rounds (load average now {_load()})")
            for (db, label, key), values in sorted(table.items()):
                line = f"   {db:<7} {label:<7} {key:<13} {statistics.median(values):9.3f}"
                if label == "after" and (db, "before", key) in table:
                    ratios = [a / b for a, b in zip(values, table[(db, "before", key)])]
                    line += f"   after/before paired {statistics.median(ratios):.2f}x"
                if label == "after" and ("medplum", "peer", key) in table:
                    ratios = [a / b for a, b in zip(values, table[("medplum", "peer", key)])]
                    line += f"   /medplum paired {statistics.median(ratios):.2f}x"
                print(line)
        finally:
            for _, _, server in served:
                server.stop()
            if admin is not None:
                with admin.connect() as conn:
                    for schema in schemas:
                        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                admin.dispose()


if __name__ == "__main__":
    main()
