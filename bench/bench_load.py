"""Bulk load of resources through transaction Bundles: resources/s on SQLite and PostgreSQL.

    python bench/bench_load.py [--n 100000] [--skip-pg]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import load, tasks  # noqa: E402

from hw_fhir.store import open_store  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        n, secs = load(store, tasks(args.n, 1000))
        print(f"sqlite     : {n} resources in {secs:.1f} s = {n / secs:,.0f} resources/s")
        store.dispose()
    if args.skip_pg:
        return
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        store = open_store(f"{PG}?options=-csearch_path%3D{schema}")
        n, secs = load(store, tasks(args.n, 1000))
        print(f"postgresql : {n} resources in {secs:.1f} s = {n / secs:,.0f} resources/s")
        store.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
