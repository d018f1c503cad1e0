"""Where the loader's time goes: cProfile of ottp.load.load_files, by loader function.

    .venv/bin/python benchmarks/profile_load.py [--events 2000000] [--landing DIR]

The per-line work runs inside DuckDB statements, so the time of each loader
function is the time of the statements it issues (plus hashing and the gzip
check, which run in Python's C code).
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--landing", type=Path, help="Reuse these landing files.")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from ottp import landing, load
    from ottp.simulate import simulate, suggest_size

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
    stats = pstats.Stats(profile)
    rows = []
    for (path, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        if path.endswith("ottp/load.py") or name in ("sha256_of",):
            rows.append((cumulative, name))
    print(f"{report.lines_in:,} lines in {wall:.1f} s ({report.lines_in / wall:,.0f} lines/s)")
    print(f"{'function (ottp/load.py)':<28}{'cumulative s':>14}{'share':>8}")
    for cumulative, name in sorted(rows, reverse=True)[:16]:
        print(f"{name:<28}{cumulative:>14.2f}{cumulative / wall:>8.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
