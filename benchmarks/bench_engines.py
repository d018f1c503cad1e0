"""The same dbt build on DuckDB, PostgreSQL and a local Spark session, one data set.

    python benchmarks/bench_engines.py [--users 2800] [--titles 1000] [--days 27]
                                       [--workdir DIR] [--engines duckdb postgres spark]

Simulates ~0.83M events with the defaults (`--users 3400` for ~1M), loads them into DuckDB
(ottp.ingest.load), copies the raw tables to a fresh PostgreSQL database
(ottp.ingest.pg_mirror) and loads the same landing files into Spark's raw tables
(ottp.ingest.spark_load, Spark reading the files itself). Then times, on each engine,
the same command as its own process: ``dbt build --full-refresh --exclude
exports`` (seeds, every model, data and unit tests). Prints a table of wall
seconds, the ratio to DuckDB, and the seconds dbt spent running models alone
(``run_results.json``), with the machine's cores and load average: on a shared
machine wall time depends on what else runs.

Results go to bench-results/bench_engines.json. PostgreSQL is the local server
(127.0.0.1:5432, trust auth, as the tests use); Spark needs Java.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ottp import config  # noqa: E402
from ottp.config import DBT_PROJECT_DIR, dbt_executable  # noqa: E402
from ottp.ingest import landing  # noqa: E402
from ottp.ingest.load import load_files  # noqa: E402

PG = dict(host="127.0.0.1", port=5432, user="postgres", dbname="test")
BUILD = ["build", "--full-refresh", "--exclude", "exports"]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    return wall, proc.stdout


def timed_dbt(env: dict[str, str], target: Path) -> dict:
    cmd = [
        dbt_executable(),
        *BUILD,
        "--quiet",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target),
        "--log-path",
        str(target / "logs"),
    ]
    load_before = os.getloadavg()[0]
    wall, _ = timed(cmd, env)
    results = json.loads((target / "run_results.json").read_text())["results"]
    models = [r for r in results if r["unique_id"].startswith("model.")]
    slowest = sorted(models, key=lambda r: -r["execution_time"])[:3]
    return {
        "wall_s": round(wall, 1),
        "nodes": len(results),
        "failed": sum(r["status"] in ("error", "fail") for r in results),
        "model_s": round(sum(r["execution_time"] for r in models), 1),
        "slowest_models": {
            r["unique_id"].split(".")[-1]: round(r["execution_time"], 1) for r in slowest
        },
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2800)
    parser.add_argument("--titles", type=int, default=1000)
    parser.add_argument("--days", type=int, default=27)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["duckdb", "postgres", "spark"],
        choices=["duckdb", "postgres", "spark"],
    )
    return parser.parse_args()


def _postgres(base_env: dict, warehouse: Path, work: Path, loads: dict) -> dict:
    """The raw tables mirrored into a fresh PostgreSQL database, dbt built there; dropped after."""
    import psycopg2

    from ottp.ingest.pg_mirror import mirror_raw_to_postgres

    name = f"ottp_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(**PG)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    try:
        dsn = " ".join(f"{k}={v}" for k, v in {**PG, "dbname": name}.items())
        started = time.perf_counter()
        mirror_raw_to_postgres(warehouse, dsn)
        loads["postgres (copy from DuckDB)"] = round(time.perf_counter() - started, 1)
        env = dict(base_env, OTTP_DBT_TARGET="postgres", OTTP_PG_DATABASE=name)
        return timed_dbt(env, work / "target_postgres")
    finally:
        with admin.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


def _spark(base_env: dict, work: Path, events: int, loads: dict) -> dict:
    """The landing files read by the Spark loader, then dbt built on Spark."""
    env = dict(base_env, OTTP_DBT_TARGET="spark", OTTP_DATA_DIR=str(work / "spark_data"))
    wall, out = timed(
        [
            sys.executable,
            "-m",
            "ottp.ingest.spark_load",
            "--landing",
            str(work / "landing"),
            "--json",
        ],
        env,
    )
    spark_report = json.loads(out.strip().splitlines()[-1])
    if spark_report["events_loaded"] != events:
        raise SystemExit(f"Spark loaded {spark_report['events_loaded']} events, not {events}")
    loads["spark (read landing files)"] = round(wall, 1)
    return timed_dbt(env, work / "target_spark")


def _print_table(events: int, results: dict, loads: dict) -> None:
    base = results.get("duckdb", {}).get("wall_s")
    print()
    print(
        f"dbt {' '.join(BUILD)} on {events:,} events "
        f"({os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()})"
    )
    print()
    print("| engine | wall s | vs DuckDB | models s | nodes | load avg before/after |")
    print("|---|---:|---:|---:|---:|---|")
    for engine, r in results.items():
        ratio = f"{r['wall_s'] / base:.1f}×" if base else "-"
        print(
            f"| {engine} | {r['wall_s']} | {ratio} | {r['model_s']} | {r['nodes']} | "
            f"{r['load_avg_before']} / {r['load_avg_after']} |"
        )
    print()
    print("raw load:", ", ".join(f"{k} {v} s" for k, v in loads.items()))


def main() -> None:
    args = _arguments()
    from ottp.simulator import simulate

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ottp-bench-engines-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    base_env = config.child_env(
        {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "OTTP_LANDING_DIR": None}
    )

    started = time.perf_counter()
    simulate(
        work / "landing",
        users=args.users,
        titles=args.titles,
        days=args.days,
        seed=args.seed,
        dirty_rate=0.01,
    )
    files = landing.discover(work / "landing")
    print(f"simulated {len(files)} files in {time.perf_counter() - started:.0f} s", flush=True)

    warehouse = work / "warehouse.duckdb"
    started = time.perf_counter()
    report = load_files(warehouse, files)
    loads = {"duckdb": round(time.perf_counter() - started, 1)}
    events = report.events_loaded
    print(f"{events:,} events; DuckDB load {loads['duckdb']} s", flush=True)

    results: dict[str, dict] = {}
    if "duckdb" in args.engines:
        env = dict(base_env, OTTP_DBT_TARGET="duckdb", OTTP_WAREHOUSE_PATH=str(warehouse))
        results["duckdb"] = timed_dbt(env, work / "target_duckdb")
        print("duckdb", results["duckdb"], flush=True)
    if "postgres" in args.engines:
        results["postgres"] = _postgres(base_env, warehouse, work, loads)
        print("postgres", results["postgres"], flush=True)
    if "spark" in args.engines:
        results["spark"] = _spark(base_env, work, events, loads)
        print("spark", results["spark"], flush=True)

    _print_table(events, results, loads)
    out_dir = REPO / "bench-results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bench_engines.json").write_text(
        json.dumps(
            {
                "events": events,
                "cores": os.cpu_count(),
                "dbt": results,
                "raw_load_s": loads,
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
