"""Benchmark the event simulator: about 10 million events over 90 days into a temp dir.

    PYTHONPATH=. python benchmarks/bench_simulate.py [--events 10000000] [--days 90] [--keep DIR]

Prints the run's size, wall time, events per second and the peak resident memory of the
process. Imports (numpy, pyarrow, pandas) happen before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas  # noqa: F401  (pyarrow imports it lazily; keep that out of the timing)
import pyarrow  # noqa: F401

from ottp.simulator import simulate, suggest_size


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000, help="target number of events")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dirty-rate", type=float, default=0.01)
    ap.add_argument("--keep", type=Path, help="write here and keep the files (default: temp dir)")
    args = ap.parse_args(argv)

    size = suggest_size(args.events, days=args.days)
    out = args.keep or Path(tempfile.mkdtemp(prefix="ottp-bench-"))
    try:
        t0 = time.perf_counter()
        s = simulate(out, seed=args.seed, dirty_rate=args.dirty_rate, progress=True, **size)
        wall = time.perf_counter() - t0
        gz = sum(p.stat().st_size for p in s.event_files)
        result = {
            "users": s.users,
            "titles": s.titles,
            "days": s.days,
            "events": s.events_written,
            "lines": s.lines_written,
            "seconds": round(wall, 2),
            "events_per_s": round(s.events_written / wall),
            "peak_rss_mib": round(peak_rss_mib()),
            "event_files": len(s.event_files),
            "gzip_mib": round(gz / 2**20),
            "bytes_per_event_gz": round(gz / s.lines_written, 1),
        }
        print(json.dumps(result))
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
