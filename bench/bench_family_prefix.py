"""Patient?family=<prefix>&_count=20 on PostgreSQL before/after migration 0009, read-only on
a kept store (e.g. ``bench_peers.py --keep`` at 1 000 000 Observations).

The kept schema is not touched: its ``sp_string`` is copied to a scratch schema, migration
0009's ``ALTER … COLLATE "C"`` applied to the copy and analyzed; the page statement then runs
with ``search_path = scratch, kept`` (so ``resource`` is the kept one). Variants, interleaved,
``EXPLAIN (ANALYZE, BUFFERS)`` each run:

* A: the kept schema, ``value LIKE 'prefix%'`` only (the statement before 0009);
* B: the kept schema (value in the database default collation), the range ``prefix <= value
  < successor`` — here C.UTF-8, which glibc orders by code point, so the results agree;
* C: the copy under COLLATE "C", the range alone (the statement after 0009).

Prints per variant the median / min execution time, the sp_string scan (rows returned and
removed by the filter) and the buffers touched: the last two are the load-independent part.

    python bench/bench_family_prefix.py --schema bench_dbf2ce9960 okafor ok zzz
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hw_fhir.store.searchparams import normalize_string  # noqa: E402

SQL = """SELECT resource.res_id, resource.version_id, resource.last_updated, resource.content
FROM resource WHERE resource.res_type = 'Patient' AND resource.deleted = false
AND resource.res_id IN (SELECT sp_string.res_id FROM sp_string
  WHERE sp_string.res_type = 'Patient' AND sp_string.param = 'family' AND {cond})
ORDER BY resource.last_updated ASC, resource.res_id ASC LIMIT 21"""


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def statements(prefix: str) -> dict[str, str]:
    p = normalize_string(prefix)
    like = (p.replace("/", "//").replace("%", "/%").replace("_", "/_"))
    nxt = p[:-1] + chr(ord(p[-1]) + 1)  # plain letters here; the store's prefix_range bumps
    rng = f"sp_string.value >= {_lit(p)} AND sp_string.value < {_lit(nxt)}"
    return {"A": SQL.format(cond=f"sp_string.value LIKE {_lit(like + '%')} ESCAPE '/'"),
            "B": SQL.format(cond=rng), "C": SQL.format(cond=rng)}


def scans(node: dict[str, Any], out: list[str]) -> list[str]:
    if node.get("Relation Name") == "sp_string":
        out.append(f'{node["Node Type"]} {node.get("Index Name", "")} rows={node["Actual Rows"]}'
                   f' removed={node.get("Rows Removed by Filter", 0)}')
    for child in node.get("Plans", []):
        scans(child, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", required=True, help="the kept store's schema (read only)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep-copy", action="store_true")
    parser.add_argument("prefixes", nargs="*", default=["okafor", "ok", "zzz"])
    args = parser.parse_args()
    kept, scratch = args.schema, f"{args.schema}_pfam"
    conn = psycopg.connect(args.dsn, autocommit=True)
    conn.execute(f'DROP SCHEMA IF EXISTS "{scratch}" CASCADE')
    conn.execute(f'CREATE SCHEMA "{scratch}"')
    try:
        conn.execute(f'CREATE TABLE "{scratch}".sp_string (LIKE "{kept}".sp_string INCLUDING ALL)')
        conn.execute(f'INSERT INTO "{scratch}".sp_string SELECT * FROM "{kept}".sp_string')
        conn.execute(f'ALTER TABLE "{scratch}".sp_string ALTER COLUMN value '
                     'TYPE VARCHAR(255) COLLATE "C"')
        conn.execute(f'ANALYZE "{scratch}".sp_string')
        paths = {"A": f'"{kept}"', "B": f'"{kept}"', "C": f'"{scratch}", "{kept}"'}
        print("load average %.2f %.2f %.2f" % os.getloadavg())
        for prefix in args.prefixes:
            times: dict[str, list[float]] = {k: [] for k in paths}
            plans: dict[str, Any] = {}
            for _ in range(args.runs):
                for key, sql in statements(prefix).items():
                    conn.execute(f"SET search_path = {paths[key]}")
                    row = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql).fetchone()
                    assert row is not None
                    plans[key] = row[0][0]
                    times[key].append(plans[key]["Execution Time"])
            for key in paths:
                plan = plans[key]["Plan"]
                print(f"{prefix!r:10} {key}: median {statistics.median(times[key]):7.2f} ms "
                      f"min {min(times[key]):7.2f}  rows={plan['Actual Rows']}  "
                      f"buffers={plan['Shared Hit Blocks'] + plan['Shared Read Blocks']}  "
                      f"sp_string: {'; '.join(scans(plan, []))}")
        print("load average %.2f %.2f %.2f" % os.getloadavg())
    finally:
        conn.execute("RESET search_path")
        if not args.keep_copy:
            conn.execute(f'DROP SCHEMA "{scratch}" CASCADE')
        conn.close()


if __name__ == "__main__":
    main()
