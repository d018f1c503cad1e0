"""Full and incremental dbt runs on ~10M generated events.

    python benchmarks/bench_dbt.py [--users 8300] [--titles 2000] [--days 90]
                                   [--workdir DIR [--reuse]] [--floor ROUNDS]

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

``--floor ROUNDS`` times dbt's fixed cost instead, on the warehouse of the first
``days`` (use a small one: --users 200 --titles 150 --days 20), after one
untimed full build whose saved parse the seeded runs start from: the production
daily build (Dagster's daily selection with OTTP_MIN_DATE/OTTP_MAX_DATE set to the
last loaded day) and the production full build, each from a fresh target path
without a saved parse and from one holding that saved parse, the four
interleaved, ROUNDS times. Phases, from dbt's JSON log:
imports (until dbt's first line), adapter registration, parse (until dbt reports
what it found), before the first node, the nodes, after the last node; plus the
summed node times by resource type and why dbt could not parse partially.
Prints and writes (bench-results/bench_dbt_floor.json) the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
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
        "model_execution_s": {
            r["unique_id"].split(".", 2)[-1]: round(r["execution_time"], 2) for r in models
        },
    }


INCREMENTAL = (
    "model.ottp.int_sessions",
    "model.ottp.int_plays",
    "model.ottp.int_plays_in_sessions",
    "model.ottp.int_pauses",
)


def _count_events(warehouse: Path) -> int:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("select count(*) from raw.events").fetchall()[0][0]
    finally:
        con.close()


# Dagster's production builds (orchestration/lib/dbt/): the daily layer, and
# everything but the exports; unit tests are left to the test suite.
FLOOR_BUILDS = {
    "daily": [
        "build",
        "--exclude-resource-type",
        "unit_test",
        "--select",
        "resource_type:seed",
        "path:models/staging",
        "tag:landing_day",
    ],
    "full": ["build", "--exclude-resource-type", "unit_test", "--exclude", "path:models/exports"],
}
PHASES = ("wall_s", "imports_s", "adapter_s", "parse_s", "before_nodes_s", "nodes_s", "after_s")


def phased_dbt(args: list[str], env: dict[str, str], target_path: Path) -> dict:
    """One dbt command with JSON logs: wall seconds split into phases by its log lines."""
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
        "--log-format",
        "json",
    ]
    started = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"dbt {' '.join(args)} failed:\n{proc.stdout[-4000:]}")
    first: dict[str, float] = {}
    reasons = []
    for line in proc.stdout.splitlines():
        info = json.loads(line)["info"] if line.startswith("{") else None
        if info is None:
            continue
        at = datetime.fromisoformat(info["ts"].replace("Z", "+00:00")).timestamp() - started
        first.setdefault(info["name"], at)
        if info["name"] == "UnableToPartialParse":
            reasons.append(info["msg"])
    node_start = min(first.get("LogStartLine", wall), first.get("NodeStart", wall))
    by_type: dict[str, float] = {}
    for r in json.loads((target_path / "run_results.json").read_text())["results"]:
        kind = r["unique_id"].split(".")[0]
        by_type[kind] = by_type.get(kind, 0.0) + r["execution_time"]
    return {
        "wall_s": wall,
        "imports_s": first["MainReportVersion"],
        "adapter_s": first["AdapterRegistered"] - first["MainReportVersion"],
        "parse_s": first["FoundStats"] - first["AdapterRegistered"],
        "before_nodes_s": node_start - first["FoundStats"],
        "nodes_s": first["FinishedRunningStats"] - node_start,
        "after_s": wall - first["FinishedRunningStats"],
        "node_time_by_type_s": by_type,
        "full_parse_reasons": reasons,
    }


def floor(rounds: int, env: dict[str, str], work: Path, last_day) -> dict:
    """dbt's fixed cost: daily and full builds, from fresh and from seeded target paths."""
    # One untimed full build: the tables exist, as on any day after the first, and
    # its target path keeps the saved parse the seeded runs start from.
    saved = work / "parsed"
    phased_dbt(FLOOR_BUILDS["full"], env, saved)
    next_day = (last_day + timedelta(days=1)).isoformat()
    window = {"OTTP_MIN_DATE": last_day.isoformat(), "OTTP_MAX_DATE": next_day}
    runs: dict[str, list[dict]] = {}
    for i in range(rounds):
        for build, args in FLOOR_BUILDS.items():
            run_env = dict(env, **window) if build == "daily" else env
            for start in ("fresh", "saved_parse"):
                target = work / f"floor-{build}-{start}"
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                if start == "saved_parse":
                    shutil.copyfile(
                        saved / "partial_parse.msgpack", target / "partial_parse.msgpack"
                    )
                r = phased_dbt(args, run_env, target)
                runs.setdefault(f"{build}_{start}", []).append(r)
                print(
                    f"round {i + 1} {build}_{start}: "
                    + ", ".join(f"{k} {r[k]:.2f}" for k in PHASES),
                    flush=True,
                )
    medians = {
        name: {
            **{k: round(statistics.median(r[k] for r in rs), 2) for k in PHASES},
            "node_time_by_type_s": {
                kind: round(statistics.median(r["node_time_by_type_s"][kind] for r in rs), 2)
                for kind in rs[0]["node_time_by_type_s"]
            },
            "full_parse_reasons": sorted({m for r in rs for m in r["full_parse_reasons"]}),
        }
        for name, rs in runs.items()
    }
    return {"rounds": rounds, "load_avg_after": os.getloadavg(), "medians": medians}


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
    parser.add_argument(
        "--floor",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="time dbt's fixed cost (fresh vs saved parse) this many rounds instead",
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
            f"the incremental models {r['incremental_models_execution_s']:.2f} s"
        )
        print(f"{'':16} slowest: {r['slowest']}")
    print(
        "incremental / full: wall {ratio_wall}, cpu {ratio_cpu}, models executing "
        "{ratio_models_execution}, the incremental models "
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

    if args.floor:
        out = REPO / "bench-results"
        out.mkdir(exist_ok=True)
        result = floor(args.floor, env, work, last_day - timedelta(days=1))
        print(json.dumps(result["medians"], indent=2))
        (out / "bench_dbt_floor.json").write_text(json.dumps(result, indent=2))
        if tmp is not None:
            tmp.cleanup()
        return

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
