"""Quality-gate benchmark: the GX suites on 1M contacts and 10M recommendation rows.

    .venv/bin/python benchmarks/bench_quality.py [--contacts 1000000]

Builds the export tables of benchmarks/bench_sync.py plus the marts the gates
join against (users, titles, 3 plays per contact), then times each suite: the
DuckDB query that builds its validation frame and the GX validation of it.
Results are printed and written to bench-results/bench_quality.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_sync import build  # noqa: E402
from ottp.crm import gates  # noqa: E402


def add_marts(path: Path, contacts: int) -> None:
    con = duckdb.connect(str(path))
    con.execute(
        f"""
        create schema if not exists raw;
        create or replace table raw.deleted_users (pseudonym varchar);
        create or replace table marts.users as
            select user_id, true as is_contactable from exports.crm_contacts;
        create or replace table marts.titles as
            select 't_' || i as title_id, true as is_available from range(20000) as t(i);
        create or replace table marts.plays as
            select 'u_' || lpad((i // 3)::varchar, 8, '0') as user_id,
                't_w' || (i % 5000) as title_id, true as is_valid_play
            from range({contacts * 3}) as t(i);
        """
    )
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--out", default="bench-results/bench_quality.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ottp-bench-quality-") as tmp:
        warehouse = Path(tmp) / "warehouse.duckdb"
        t = time.perf_counter()
        build(warehouse, args.contacts, 10)
        add_marts(warehouse, args.contacts)
        print(f"warehouse built in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        import great_expectations  # noqa: F401 - timed apart: imported once per process

        gx_import = time.perf_counter() - t
        t = time.perf_counter()
        results = gates.validate(
            warehouse_path=warehouse, last_sync=None, results_dir=Path(tmp) / "quality"
        )
        total = time.perf_counter() - t
    report = {
        "contacts": args.contacts,
        "gx_import_s": round(gx_import, 2),
        "validate_all_s": round(total, 2),
        "tables": {
            name: {
                "rows": r.row_count,
                "frame_rows": r.frame_rows,
                "expectations": r.evaluated,
                "success": r.success,
                "failed": [f.description for f in r.failures],
                "seconds": r.seconds,
                "duckdb_frame_s": r.frame_seconds,
            }
            for name, r in results.items()
        },
    }
    print(json.dumps(report, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
