"""Loading Segment/RudderStack export files against the native files of the same seed.

    .venv/bin/python benchmarks/bench_segment_files.py --users 1500 --days 7 --repeat 3

Simulates the same events in both formats, then loads each into a fresh
warehouse ``--repeat`` times, alternating the formats (side by side), the
Segment files also with every line mapped in Python (``segment_python``: the
loader as it was before the compiled mapping), and
times the mapping alone both ways over the same lines: compiled into SQL
(``segment_sql.mapped_select``, what the loader runs) and in Python
(``segment_files.map_lines``, what the collector runs; the loader's fallback
for the lines the select flags, counted in ``python_lines``). Prints one JSON
object: median seconds and lines per second of each, and the load average.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from ottp.contract import segment
from ottp.ingest import load, segment_files, segment_sql
from ottp.simulator import simulate


def _all_to_python(mapping: segment.TrackerMapping, source: str) -> str:
    """A select that leaves every line to the Python mapping: the loader before SQL."""
    return (
        f"select seq, null::varchar as line, null::varchar as reason_code, "
        f"null::varchar as reason, true as python from ({source})"
    )


def _load_once(root: Path, fmt: str, run: int) -> tuple[float, int]:
    """One load of a format's files; ``segment_python`` maps every line in Python."""
    folder = "segment" if fmt == "segment_python" else fmt
    warehouse = root / f"{fmt}-{run}.duckdb"
    compiled = segment_sql.mapped_select
    if fmt == "segment_python":
        segment_sql.mapped_select = _all_to_python
    try:
        started = time.perf_counter()
        report = load.load_landing(warehouse, root / folder)
        seconds = time.perf_counter() - started
    finally:
        segment_sql.mapped_select = compiled
    warehouse.unlink()
    assert report.reconciles
    return seconds, report.lines_in


def _map_python(lines: list[str]) -> float:
    mapping = segment.load_mapping()
    started = time.perf_counter()
    for i in range(0, len(lines), segment_files.BATCH_LINES):
        segment_files.map_lines(lines[i : i + segment_files.BATCH_LINES], mapping)
    return time.perf_counter() - started


def _map_sql(lines: list[str]) -> tuple[float, int]:
    """Seconds of the compiled mapping over the lines, and how many it leaves to Python."""
    con = duckdb.connect()
    try:
        con.execute(  # the lines the loader maps: those its line checks pass
            "create table t as select row_number() over () as seq, line "
            f"from unnest($lines) as u(line) where ({segment_files._LINE_VERDICT}) is null",
            {"lines": lines},
        )
        select = segment_sql.mapped_select(segment.load_mapping(), "select seq, line from t")
        started = time.perf_counter()
        con.execute(f"create table m as {select}")
        seconds = time.perf_counter() - started
        flagged = con.execute("select count(*) from m where python").fetchall()[0][0]
    finally:
        con.close()
    return seconds, flagged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ottp-bench-segment-") as tmp:
        root = Path(tmp)
        size = dict(users=args.users, titles=max(100, args.users // 3), days=args.days)
        for fmt in ("native", "segment"):
            simulate(root / fmt, seed=args.seed, dirty_rate=0.01, fmt=fmt, **size)
        lines = [
            line.rstrip("\n")
            for path in sorted((root / "segment" / "segment").rglob("*.json.gz"))
            for line in gzip.open(path, "rt", encoding="utf-8")
        ]
        names = ("native", "segment", "segment_python", "map_sql", "map_python")
        seconds: dict[str, list[float]] = {name: [] for name in names}
        lines_in = {}
        for run in range(args.repeat):
            for fmt in ("native", "segment", "segment_python"):
                took, lines_in[fmt] = _load_once(root, fmt, run)
                seconds[fmt].append(took)
            took, flagged = _map_sql(lines)
            seconds["map_sql"].append(took)
            seconds["map_python"].append(_map_python(lines))
    lines_in["map_sql"] = lines_in["map_python"] = len(lines)
    result = {
        "size": size,
        "repeat": args.repeat,
        "python_lines": flagged,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    for name, runs in seconds.items():
        median = statistics.median(runs)
        result[name] = {
            "lines": lines_in[name],
            "median_s": round(median, 3),
            "lines_per_s": round(lines_in[name] / median),
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
