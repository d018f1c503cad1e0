"""Where the loader's time goes: cProfile of ottp.ingest.load.load_files, by loader function.

    .venv/bin/python benchmarks/profile_load.py [--events 2000000] [--landing DIR]
                                                [--validation-split]

The per-line work runs inside DuckDB statements, so the time of each loader
function is the time of the statements it issues (plus hashing and the gzip
check, which run in Python's C code). With --validation-split it also times the
event validation query cut after each of its steps (the JSON parse, the checks on
the parsed fields, the typed columns, the verdict) on the lines held in memory.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def validation_split(paths: list[str], repeat: int = 3) -> list[tuple[str, float]]:
    """Median seconds of the validation query cut after each step, lines in memory."""
    import duckdb

    from ottp.ingest import validate

    captured: dict[str, str] = {}
    original = validate.create_validated
    validate.create_validated = lambda con, paths, select_sql: captured.update(sql=select_sql)
    try:
        validate.validate_events(None, ["unused"])
    finally:
        validate.create_validated = original
    sql = captured["sql"]
    verdict_start = sql.index("case\n                    when j is null and (line is null")
    verdict_end = sql.index("end as verdict") + len("end as verdict")
    parsed_start = sql.index("parsed as (", sql.index("raw_parsed as (") + 5)
    typed_start = sql.index("typed as (")
    # The first two steps keep one flag per line (DuckDB still computes the
    # parse); the last two write the loader's output columns, as the loader does.
    steps = [
        ("JSON parse",
         sql[:parsed_start].rstrip().rstrip(",") + " select j is not null from raw_parsed"),
        ("+ checks on the parsed fields",
         sql[:typed_start].rstrip().rstrip(",")
         + " select j is not null, not_a_string, has_non_finite, has_nul from parsed"),
        ("+ typed columns, written",
         sql[:verdict_start] + "null::varchar as verdict" + sql[verdict_end:]),
        ("+ verdict (the loader's query)", sql),
    ]  # fmt: skip
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(
        f"create temp table lines_in_memory as select filename as file_path, line "
        f"from {validate.reader()}",
        {"paths": paths},
    )
    timings = []
    for name, query in steps:
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            con.execute(
                "create or replace temp table step as "
                f"with lines as (select * from lines_in_memory) {query}"
            )
            runs.append(time.perf_counter() - started)
        timings.append((name, sorted(runs)[len(runs) // 2]))
    con.close()
    return timings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--landing", type=Path, help="Reuse these landing files.")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--validation-split", action="store_true", help="Time the validation query's steps."
    )
    args = ap.parse_args()

    from ottp.ingest import landing, load
    from ottp.simulator import simulate, suggest_size

    with tempfile.TemporaryDirectory(prefix="ottp-profile-load-") as tmp:
        landing_dir = args.landing or Path(tmp) / "landing"
        if args.landing is None:
            simulate(landing_dir, seed=args.seed, dirty_rate=0.01, **suggest_size(args.events))
        files = landing.discover(landing_dir)
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        report = load.load_files(Path(tmp) / "warehouse.duckdb", files)
        profile.disable()
        wall = time.perf_counter() - started
        event_paths = [str(f.path) for f in files if f.kind == "events"]
        split = validation_split(event_paths) if args.validation_split else []
    stats = pstats.Stats(profile)
    rows = []
    for (path, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        if path.endswith("ottp/ingest/load.py") or name in ("sha256_of",):
            rows.append((cumulative, name))
    print(f"{report.lines_in:,} lines in {wall:.1f} s ({report.lines_in / wall:,.0f} lines/s)")
    print(f"{'function (ottp/ingest/load.py)':<28}{'cumulative s':>14}{'share':>8}")
    for cumulative, name in sorted(rows, reverse=True)[:16]:
        print(f"{name:<28}{cumulative:>14.2f}{cumulative / wall:>8.0%}")
    if split:
        total = split[-1][1]
        print(f"\n{'validation query, cut after':<34}{'median s':>10}{'step':>8}{'share':>8}")
        previous = 0.0
        for name, seconds in split:
            step = seconds - previous
            print(f"{name:<34}{seconds:>10.3f}{step:>8.3f}{step / total:>8.0%}")
            previous = seconds
    return 0


if __name__ == "__main__":
    sys.exit(main())
