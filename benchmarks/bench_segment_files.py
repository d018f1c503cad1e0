"""Loading Segment/RudderStack export files against the native files of the same seed.

    .venv/bin/python benchmarks/bench_segment_files.py --users 1500 --days 7 --repeat 3

Simulates the same events in both formats, then loads each into a fresh
warehouse ``--repeat`` times, alternating the formats (side by side), and
times the mapping alone (``segment_files.map_lines``, the part that runs in
Python). Prints one JSON object: median seconds and lines per second of each.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path

from ottp.contract import segment
from ottp.ingest import load, segment_files
from ottp.simulator import simulate


def _load_once(root: Path, fmt: str, run: int) -> tuple[float, int]:
    warehouse = root / f"{fmt}-{run}.duckdb"
    started = time.perf_counter()
    report = load.load_landing(warehouse, root / fmt)
    seconds = time.perf_counter() - started
    warehouse.unlink()
    assert report.reconciles
    return seconds, report.lines_in


def _map_once(lines: list[str]) -> float:
    mapping = segment.load_mapping()
    started = time.perf_counter()
    for i in range(0, len(lines), segment_files.BATCH_LINES):
        segment_files.map_lines(lines[i : i + segment_files.BATCH_LINES], mapping)
    return time.perf_counter() - started


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
        seconds: dict[str, list[float]] = {"native": [], "segment": [], "map_lines": []}
        lines_in = {}
        for run in range(args.repeat):
            for fmt in ("native", "segment"):
                took, lines_in[fmt] = _load_once(root, fmt, run)
                seconds[fmt].append(took)
            seconds["map_lines"].append(_map_once(lines))
    lines_in["map_lines"] = len(lines)
    result = {"size": size, "repeat": args.repeat}
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
