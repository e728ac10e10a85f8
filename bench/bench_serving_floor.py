"""The floor of the serving layer: gunicorn serving a constant WSGI app (no Flask, no database),
configured as ``hw-fhir serve`` is (gthread, 2 workers), with access-log variants, interleaved.

What no change to hw-fhir's own code can go below: per keep-alive request, the wall time,
the server processes' CPU time and their context switches (thread hand-offs).

    python bench/bench_serving_floor.py                            # the three access logs
    python bench/bench_serving_floor.py --variants gthread:4:lean,gthread:1:lean --n 2000

A variant is ``worker_class:threads:log`` with log ``gunicorn`` (gunicorn's own logger and
the access format hw-fhir uses), ``lean`` (:class:`smart_app.serving.AccessLogger`, what
``hw-fhir serve`` runs) or ``none``. Prints the load average.
"""

from __future__ import annotations

import argparse
import http.client
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


def _serve(port: int, worker: str, threads: int, log: str) -> None:
    from gunicorn.app.base import BaseApplication

    from smart_app.serving import ACCESS_LOG_FORMAT, AccessLogger

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"127.0.0.1:{port}")
            self.cfg.set("workers", 2)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", worker)
            if log != "none":
                self.cfg.set("accesslog", "-")
                self.cfg.set("access_log_format", ACCESS_LOG_FORMAT)
            if log == "lean":
                self.cfg.set("logger_class", AccessLogger)

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="gthread:4:gunicorn,gthread:4:lean,gthread:4:none")
    parser.add_argument("--n", type=int, default=1500, help="requests per variant and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(int(args.serve[0]), args.serve[1], int(args.serve[2]), args.serve[3])
        return
    variants = [v.split(":") for v in args.variants.split(",")]
    servers = []
    try:
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
        for rnd in range(args.rounds):
            order = list(range(len(variants)))
            if rnd % 2:
                order.reverse()
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
        for i, variant in enumerate(variants):
            wall, cpu, switches = (statistics.median(r[k] for r in results[i]) for k in range(3))
            print(f"   {':'.join(variant):<22} wall {wall:.3f} ms  server CPU {cpu:.3f} ms  "
                  f"context switches {switches:.1f}  per request")
    finally:
        for _, proc in servers:
            os.killpg(proc.pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
