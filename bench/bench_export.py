"""Benchmark: $export of N resources on SQLite and PostgreSQL — resources/s and peak memory.

Usage::

    python bench/bench_export.py                  # 1 000 000 Tasks, SQLite and PostgreSQL
    python bench/bench_export.py --n 100000 --db sqlite

The rows are written straight into the ``resource`` table (the export reads only
that table; loading a million resources through the API would take far longer
than the export itself). Each export then runs in a fresh process, so its peak
resident memory (``ru_maxrss``) is the export's own. Two exports are measured per
database: N/10 Patients and N Tasks; flat memory means both peaks are about the
same, whatever N is. Target (DESIGN.md): ≥ 50 000 resources/s from SQLite.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from _data import tasks  # noqa: E402

PG_ADMIN_URL = os.environ.get("HW_FHIR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _patients(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"resourceType": "Patient", "id": f"pat-{i}", "active": True,
               "name": [{"family": f"Family{i}", "given": ["Given"]}], "gender": "female",
               "birthDate": "1990-01-01"}


def fill(url: str, n: int, batch: int = 20000) -> float:
    """Write N Tasks and N/10 Patients as current resources; return seconds taken."""
    from sqlalchemy import insert

    from hw_fhir.store import open_store
    from hw_fhir.store import schema as S

    store = open_store(url)
    start = time.perf_counter()
    stamp = "2026-03-01T00:00:00.000000Z"
    for source in (tasks(n, max(1, n // 10)), _patients(max(1, n // 10))):
        rows: list[dict[str, Any]] = []
        for r in source:
            r["meta"] = {**r.get("meta", {}), "versionId": "1", "lastUpdated": stamp}
            rows.append({"res_type": r["resourceType"], "res_id": r["id"] or str(uuid.uuid4()),
                         "version_id": 1, "last_updated": stamp, "deleted": False,
                         "content": orjson.dumps(r).decode()})
            if len(rows) == batch:
                with store.begin() as conn:
                    conn.execute(insert(S.resource), rows)
                rows = []
        if rows:
            with store.begin() as conn:
                conn.execute(insert(S.resource), rows)
    store.dispose()
    return time.perf_counter() - start


def export_once(url: str, rtype: str) -> dict[str, Any]:
    """Run one export in this process and return its figures (called in a child process)."""
    from hw_fhir.store import SqlStore
    from hw_fhir.sync.export import parse_export_request, write_export

    store = SqlStore(url)
    out = Path(tempfile.mkdtemp(prefix="hw-export-"))
    start = time.perf_counter()
    result = write_export(store, parse_export_request([("_type", rtype)]), out)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.iterdir())
    for p in out.iterdir():
        p.unlink()
    out.rmdir()
    store.dispose()
    return {"type": rtype, "count": result.total, "seconds": seconds, "bytes": size,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bare_read(url: str, rtype: str) -> dict[str, Any]:
    """Read the same rows with a bare DBAPI cursor into one file: the floor an export can reach."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    raw = engine.raw_connection()
    postgres = engine.dialect.name == "postgresql"
    cursor = raw.cursor(name="bare") if postgres else raw.cursor()  # type: ignore[call-arg]
    sql = "SELECT content FROM resource WHERE res_type = %s" if postgres else \
        "SELECT content FROM resource WHERE res_type = ?"
    out = Path(tempfile.mkdtemp(prefix="hw-bare-")) / "bare.ndjson"
    start = time.perf_counter()
    count = 0
    cursor.execute(sql, (rtype,))
    with out.open("w", encoding="utf-8") as fh:
        while rows := cursor.fetchmany(2000):
            fh.write("\n".join(r[0] for r in rows))
            fh.write("\n")
            count += len(rows)
    seconds = time.perf_counter() - start
    out.unlink()
    out.parent.rmdir()
    raw.close()
    engine.dispose()
    return {"type": rtype, "count": count, "seconds": seconds, "bytes": 0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(url: str, rtype: str, mode: str = "--child") -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, mode, url, rtype], check=True,
                         capture_output=True, text=True)
    return orjson.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _pg_schema() -> tuple[str, Any]:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}", drop


def run(db: str, n: int) -> None:
    """Fill a fresh database of kind ``db`` and print the export figures."""
    cleanup = None
    tmp = tempfile.TemporaryDirectory()
    if db == "sqlite":
        url = f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    else:
        url, cleanup = _pg_schema()
    try:
        seconds = fill(url, n)
        print(f"\n{db}: wrote {n:,} Tasks + {max(1, n // 10):,} Patients in {seconds:.1f} s")
        baseline = _child(url, "Flag")  # nothing to export: the process's own footprint
        print(f"  baseline process (empty export): peak RSS {baseline['peak_rss_mb']:.0f} MB")
        for rtype in ("Patient", "Task"):
            fig = _child(url, rtype)
            rate = fig["count"] / fig["seconds"] if fig["seconds"] else 0.0
            print(f"  $export {rtype:<8} {fig['count']:>10,} resources  {fig['seconds']:6.2f} s  "
                  f"{rate:>10,.0f} resources/s  {fig['bytes'] / 2**20:8.1f} MB NDJSON  "
                  f"peak RSS {fig['peak_rss_mb']:.0f} MB")
        bare = _child(url, "Task", "--bare")
        print(f"  bare DBAPI read + write of the same Tasks: {bare['seconds']:6.2f} s  "
              f"{bare['count'] / bare['seconds']:>10,.0f} rows/s (the floor on this machine)")
    finally:
        if cleanup is not None:
            cleanup()
        tmp.cleanup()


def main() -> None:
    """Parse the command line and run the benchmark."""
    if len(sys.argv) == 4 and sys.argv[1] in ("--child", "--bare"):
        measure = export_once if sys.argv[1] == "--child" else bare_read
        print(orjson.dumps(measure(sys.argv[2], sys.argv[3])).decode())
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000,
                        help="how many Tasks (default 1 000 000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    for db in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        run(db, args.n)


if __name__ == "__main__":
    main()
