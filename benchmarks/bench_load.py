"""Loader throughput against DuckDB's bare read_json of the same files, in one run.

    python benchmarks/bench_load.py [--events 10000000] [--repeat 3] [--landing DIR]

Generates landing files with the simulator (or reuses --landing), then times,
alternately, (a) a bare `read_json` of every event file into a table and (b) the
loader into a fresh warehouse. Prints events/s for both, the ratio, and peak
resident memory of each (measured in a child process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _bare_read_json(files: list[str], db: str, out) -> None:
    import duckdb

    con = duckdb.connect(db)
    started = time.perf_counter()
    con.execute(
        "create table events as select * from read_json($files, format = 'newline_delimited', "
        "ignore_errors = true)",
        {"files": files},
    )
    rows = con.execute("select count(*) from events").fetchone()[0]
    con.close()
    out.put(
        {
            "seconds": time.perf_counter() - started,
            "rows": rows,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def _loader(landing_dir: str, db: str, out) -> None:
    from ottp.ingest import load

    started = time.perf_counter()
    report = load.load_landing(Path(db), Path(landing_dir))
    out.put(
        {
            "seconds": time.perf_counter() - started,
            "rows": report.events_loaded,
            "lines_in": report.lines_in,
            "reconciles": report.reconciles,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def _simulate(landing_dir: str, size: dict, out) -> None:
    from ottp.simulator import simulate

    started = time.perf_counter()
    sim = simulate(Path(landing_dir), seed=1, dirty_rate=0.01, progress=False, **size)
    out.put({"lines": sim.lines_written, "seconds": time.perf_counter() - started})


def _in_child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--landing", help="Reuse this landing folder instead of generating.")
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args()

    from ottp.ingest import landing
    from ottp.simulator import suggest_size

    with tempfile.TemporaryDirectory(prefix="ottp-bench-") as tmp:
        tmp = Path(tmp)
        landing_dir = Path(args.landing) if args.landing else tmp / "landing"
        if not args.landing:
            # In a child, so this process stays small: a forked child's peak
            # resident memory starts from its parent's.
            size = suggest_size(args.events)
            print(f"generating ~{args.events:,} events with {size} ...", flush=True)
            sim = _in_child(_simulate, str(landing_dir), size)
            print(f"  {sim['lines']:,} lines in {sim['seconds']:.1f} s", flush=True)
        files = [str(f.path) for f in landing.discover(landing_dir) if f.kind == "events"]
        size_mib = sum(Path(f).stat().st_size for f in files) / 2**20
        print(f"{len(files)} event files, {size_mib:,.0f} MiB gzip", flush=True)

        bare, ours = [], []
        for i in range(args.repeat):
            for name, runs, target, first in (
                ("read_json", bare, _bare_read_json, files),
                ("loader", ours, _loader, str(landing_dir)),
            ):
                db = tmp / f"{name}-{i}" / "warehouse.duckdb"
                db.parent.mkdir()
                result = _in_child(target, first, str(db))
                runs.append(result)
                print(
                    f"  run {i + 1} {name:9}: {result['seconds']:6.1f} s "
                    f"{result['rows']:>12,} rows  peak {result['peak_rss_mib']:,.0f} MiB",
                    flush=True,
                )
                db.unlink()

        lines = ours[0]["lines_in"]
        med_bare = statistics.median(r["seconds"] for r in bare)
        med_ours = statistics.median(r["seconds"] for r in ours)
        results = {
            "lines": lines,
            "files": len(files),
            "gzip_mib": round(size_mib, 1),
            "read_json_median_s": round(med_bare, 2),
            "loader_median_s": round(med_ours, 2),
            "read_json_events_per_s": round(lines / med_bare),
            "loader_events_per_s": round(lines / med_ours),
            "loader_vs_read_json": round(med_bare / med_ours, 3),
            "loader_peak_rss_mib": round(max(r["peak_rss_mib"] for r in ours)),
            "read_json_peak_rss_mib": round(max(r["peak_rss_mib"] for r in bare)),
            "reconciles": all(r["reconciles"] for r in ours),
            "repeat": args.repeat,
        }
        print(json.dumps(results, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
