"""The floor of the serving layer: a constant WSGI app (no Flask, no database) served as
``hw-fhir serve`` serves (granian, 2 worker processes), and by gunicorn's gthread worker (what
``hw-fhir serve`` ran until granian replaced it), interleaved.

What no change to hw-fhir's own code can go below: per keep-alive request, the wall time,
the server processes' CPU time and their context switches (thread hand-offs).

    python bench/bench_serving_floor.py                    # granian with and without the access log
    python bench/bench_serving_floor.py --variants granian:4:lean,gthread:4:gunicorn --peer
    python bench/bench_serving_floor.py --variants granian:4:lean,granian:1:lean --n 2000

A variant is ``server:threads:log``. Server ``granian`` (threads: blocking threads per
worker) with log ``lean`` (:class:`smart_app.serving.AccessLog`, what ``hw-fhir serve``
runs) or ``none``; server ``gthread`` (gunicorn; not a dependency of hw-fhir: ``pip install
gunicorn`` to measure it) with log ``gunicorn`` (gunicorn's own logger, the same six fields)
or ``none``.

``--peer`` also reads one Observation by id from Medplum's in-memory FHIR engine
(``shared/peers/medplum``) with the same client loop, and prints each floor as a multiple of
that whole read: issue 18 asks for a read by id within 1.5x of it, and a floor near that
multiple leaves nothing for the token check, the scopes, the audit record and the row.
Prints the load average.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BODY = b'{"resourceType":"Observation","id":"x","status":"final"}' * 6
TICK = os.sysconf("SC_CLK_TCK")


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/fhir+json"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]


def _lean_app() -> Any:
    from smart_app.serving import AccessLog

    return AccessLog(_app)


def _serve(port: int, server: str, threads: int, log: str) -> None:
    if server == "granian":
        from granian.constants import HTTPModes, Interfaces
        from granian.server.mp import MPServer

        app = _lean_app() if log == "lean" else _app
        MPServer("floor", address="127.0.0.1", port=port, interface=Interfaces.WSGI, workers=2,
                 blocking_threads=threads, http=HTTPModes.http1, websockets=False,
                 log_access=False).serve(target_loader=lambda *_: app, wrap_loader=False)
        return
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"127.0.0.1:{port}")
            self.cfg.set("workers", 2)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", server)
            if log != "none":
                self.cfg.set("accesslog", "-")
                self.cfg.set("access_log_format", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss')

        def load(self) -> Any:
            return _app

    Server().run()


def _procs(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def _cpu_and_switches(pid: int) -> tuple[int, int]:
    ticks = switches = 0
    for p in _procs(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
            for task in Path(f"/proc/{p}/task").iterdir():
                for line in (task / "status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except OSError:
            pass
    return ticks, switches


class _Peer:
    """Medplum's in-memory engine with one Observation, read with the variants' client loop."""

    def __init__(self) -> None:
        root = Path(__file__).resolve().parent.parent
        start = next((p for p in (root.parent / "shared" / "peers" / "medplum" / "start.sh",
                                  root.parent.parent / "shared" / "peers" / "medplum" / "start.sh")
                      if p.exists()), None)
        assert start is not None, "shared/peers/medplum/start.sh not found"
        self.port = _free_port()
        out = subprocess.run(["bash", str(start)], env=dict(os.environ, PORT=str(self.port), LOG="0"),
                             capture_output=True, text=True, timeout=900, check=True)
        self.pid = int(out.stdout.strip().splitlines()[-1])
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("POST", "/fhir/Observation", body=json.dumps(
            {"resourceType": "Observation", "status": "final", "code": {"text": "floor"},
             "valueQuantity": {"value": 1}}), headers={"Content-Type": "application/fhir+json"})
        self.id = json.loads(c.getresponse().read())["id"]
        c.close()

    def read_ms(self, n: int) -> float:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        path = f"/fhir/Observation/{self.id}"
        for _ in range(50):
            c.request("GET", path)
            c.getresponse().read()
        t0 = time.perf_counter()
        for _ in range(n):
            c.request("GET", path, headers={"Accept": "application/fhir+json"})
            response = c.getresponse()
            response.read()
            assert response.status == 200, response.status
        c.close()
        return (time.perf_counter() - t0) / n * 1000

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="granian:4:lean,granian:4:none")
    parser.add_argument("--n", type=int, default=1500, help="requests per variant and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--peer", action="store_true",
                        help="also read an Observation from Medplum's engine, same client loop")
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(int(args.serve[0]), args.serve[1], int(args.serve[2]), args.serve[3])
        return
    variants = [v.split(":") for v in args.variants.split(",")]
    if any(v[0] != "granian" for v in variants) and importlib.util.find_spec("gunicorn") is None:
        print("gunicorn is not installed (pip install gunicorn): its variants are left out")
        variants = [v for v in variants if v[0] == "granian"]
    servers = []
    peer = None
    try:
        if args.peer:
            peer = _Peer()
        for worker, threads, log in variants:
            port = _free_port()
            proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), worker, threads,
                                     log], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            servers.append((port, proc))
        for port, proc in servers:
            deadline = time.time() + 60
            while True:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    c.request("GET", "/")
                    c.getresponse().read()
                    c.close()
                    break
                except OSError:
                    assert time.time() < deadline and proc.poll() is None, "server did not start"
                    time.sleep(0.1)
        results: dict[int, list[tuple[float, float, float]]] = {i: [] for i in range(len(variants))}
        peer_ms: list[float] = []
        for rnd in range(args.rounds):
            order = list(range(len(variants)))
            if rnd % 2:
                order.reverse()
            if peer is not None:
                peer_ms.append(peer.read_ms(args.n))
            for i in order:
                port, proc = servers[i]
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for _ in range(50):
                    c.request("GET", "/fhir/Observation/x")
                    c.getresponse().read()
                cpu0, sw0 = _cpu_and_switches(proc.pid)
                t0 = time.perf_counter()
                for _ in range(args.n):
                    c.request("GET", "/fhir/Observation/x", headers={"Accept": "application/fhir+json"})
                    c.getresponse().read()
                wall = (time.perf_counter() - t0) / args.n * 1000
                cpu1, sw1 = _cpu_and_switches(proc.pid)
                results[i].append((wall, (cpu1 - cpu0) / TICK / args.n * 1000, (sw1 - sw0) / args.n))
                c.close()
        print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; medians of "
              f"{args.rounds} interleaved rounds of {args.n} keep-alive requests")
        whole = statistics.median(peer_ms) if peer_ms else None
        if whole is not None:
            print(f"   {'medplum read by id':<22} wall {whole:.3f} ms  (the whole read: the "
                  f"target is <= {1.5 * whole:.3f} ms)")
        for i, variant in enumerate(variants):
            wall, cpu, switches = (statistics.median(r[k] for r in results[i]) for k in range(3))
            ratio = f"  = {wall / whole:.2f}x Medplum's read" if whole else ""
            print(f"   {':'.join(variant):<22} wall {wall:.3f} ms  server CPU {cpu:.3f} ms  "
                  f"context switches {switches:.1f}  per request{ratio}")
    finally:
        for _, proc in servers:
            os.killpg(proc.pid, signal.SIGTERM)
        if peer is not None:
            peer.stop()


if __name__ == "__main__":
    main()
