"""Full and incremental dbt runs on ~10M generated events.

    python benchmarks/bench_dbt.py [--users 8300] [--titles 2000] [--days 90]
                                   [--workdir DIR [--reuse]]

Simulates days + 1 days (default 91), loads the first ``days`` into a fresh
DuckDB warehouse, then times, each as its own dbt process:

1. the full refresh: ``dbt build --full-refresh`` (seeds, models, data and
   unit tests),
2. loads the last day (late events included) and times the incremental
   ``dbt run``.

Prints wall-clock and CPU seconds of each dbt process, its peak resident
memory, the warehouse time dbt reports per model (run_results.json), the
slowest nodes, and the ratios incremental / full: for the whole command, and
for the models' own execution time (dbt's start-up, several seconds of Python
imports and parsing, is the same for both). CPU seconds matter on a shared
machine: wall time there depends on what else runs (the load average is
printed too).
Results are also written to bench-results/bench_dbt.json.

The CRM exports (models/exports/) are left out: they read the recommender's
output, which Dagster writes outside dbt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ottp import config  # noqa: E402
from ottp.config import DBT_PROJECT_DIR, dbt_executable  # noqa: E402
from ottp.ingest import landing  # noqa: E402
from ottp.ingest.load import load_files  # noqa: E402


def timed_dbt(args: list[str], env: dict[str, str], target_path: Path) -> dict:
    """Run one dbt command; wall and CPU seconds and peak RSS of that process alone."""
    cmd = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
        "--quiet",
    ]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"dbt {' '.join(args)} failed:\n{output[-4000:]}")
    results = json.loads((target_path / "run_results.json").read_text())
    nodes = sorted(results["results"], key=lambda r: -r["execution_time"])
    models = [r for r in nodes if r["unique_id"].startswith("model.")]
    return {
        "command": "dbt " + " ".join(args),
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "dbt_elapsed_s": round(results["elapsed_time"], 2),
        "nodes": len(nodes),
        "models_execution_s": round(sum(r["execution_time"] for r in models), 2),
        "incremental_models_execution_s": round(
            sum(r["execution_time"] for r in models if r["unique_id"] in INCREMENTAL), 2
        ),
        "load_avg_before": round(load_before, 2),
        "slowest": [
            (r["unique_id"].split(".", 2)[-1], round(r["execution_time"], 2)) for r in nodes[:8]
        ],
    }


INCREMENTAL = ("model.ottp.int_sessions", "model.ottp.int_plays")


def _count_events(warehouse: Path) -> int:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("select count(*) from raw.events").fetchall()[0][0]
    finally:
        con.close()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8300)
    parser.add_argument("--titles", type=int, default=2000)
    parser.add_argument("--days", type=int, default=90, help="days in the full build")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--dirty-rate", type=float, default=0.01)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep landing files and warehouse here (default: a temp dir)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the workdir's landing files and loaded warehouse",
    )
    return parser.parse_args()


def _prepare(args: argparse.Namespace, work: Path) -> list:
    """Landing files for days + 1 and the warehouse loaded with the first days (or reused)."""
    from ottp.simulator import simulate

    landing_dir, warehouse = work / "landing", work / "warehouse.duckdb"
    loaded = work / f"warehouse-{args.days}-days.duckdb"  # kept for --reuse
    warehouse.unlink(missing_ok=True)
    reuse = args.reuse and landing_dir.is_dir() and loaded.exists()
    if not reuse:
        started = time.perf_counter()
        sim = simulate(
            landing_dir,
            users=args.users,
            titles=args.titles,
            days=args.days + 1,
            seed=args.seed,
            dirty_rate=args.dirty_rate,
        )
        print(
            f"simulated {sim.events_written:,} events over {args.days + 1} days "
            f"({args.users:,} users, {args.titles:,} titles) "
            f"in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    files = landing.discover(landing_dir)
    last_day = max(f.partition_date for f in files)
    if reuse:
        shutil.copyfile(loaded, warehouse)
    else:
        started = time.perf_counter()
        load_files(warehouse, [f for f in files if f.partition_date < last_day])
        print(f"loaded days 1..{args.days} in {time.perf_counter() - started:.0f} s", flush=True)
        shutil.copyfile(warehouse, loaded)
    return files


def _print(summary: dict) -> None:
    for label, r in (
        ("full build", summary["full_build"]),
        ("incremental run", summary["incremental_run"]),
    ):
        print(
            f"{label:16} wall {r['wall_s']:7.2f} s  cpu {r['cpu_s']:7.2f} s  "
            f"dbt elapsed {r['dbt_elapsed_s']:7.2f} s  peak rss {r['peak_rss_mib']:,} MiB  "
            f"({r['nodes']} nodes, load avg {r['load_avg_before']})"
        )
        print(
            f"{'':16} models executing {r['models_execution_s']:.2f} s, of which "
            f"int_sessions + int_plays {r['incremental_models_execution_s']:.2f} s"
        )
        print(f"{'':16} slowest: {r['slowest']}")
    print(
        "incremental / full: wall {ratio_wall}, cpu {ratio_cpu}, models executing "
        "{ratio_models_execution}, int_sessions + int_plays "
        "{ratio_incremental_models_execution}".format(**summary)
    )


def main() -> None:
    args = _arguments()
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ottp-bench-dbt-")
        args.workdir = Path(tmp.name)
    work = args.workdir.resolve()
    warehouse, target = work / "warehouse.duckdb", work / "target"
    env = config.child_env(
        {
            "OTTP_WAREHOUSE_PATH": str(warehouse),
            "OTTP_DBT_TARGET": "duckdb",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
    )
    files = _prepare(args, work)
    last_day = max(f.partition_date for f in files)
    events_full = _count_events(warehouse)
    print(f"{events_full:,} events in the warehouse (days 1..{args.days})", flush=True)

    # the exports read the recommender's tables, which Dagster writes outside dbt
    scope = ["--exclude", "exports"]
    full = timed_dbt(["build", "--full-refresh", *scope], env, target)
    load_files(warehouse, [f for f in files if f.partition_date == last_day])
    events_last_day = _count_events(warehouse) - events_full
    print(f"loaded day {args.days + 1}: {events_last_day:,} events", flush=True)
    incremental = timed_dbt(["run", *scope], env, target)

    summary = {
        "events_full": events_full,
        "events_last_day": events_last_day,
        "full_build": full,
        "incremental_run": incremental,
        "ratio_wall": round(incremental["wall_s"] / full["wall_s"], 3),
        "ratio_cpu": round(incremental["cpu_s"] / full["cpu_s"], 3),
        "ratio_models_execution": round(
            incremental["models_execution_s"] / full["models_execution_s"], 3
        ),
        "ratio_incremental_models_execution": round(
            incremental["incremental_models_execution_s"] / full["incremental_models_execution_s"],
            3,
        ),
    }
    _print(summary)
    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "bench_dbt.json").write_text(json.dumps(summary, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
