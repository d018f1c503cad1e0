"""The loader of a git revision against the working tree's, on the same files, in one run.

    python benchmarks/bench_load_versions.py --base REV [--events 1000000] [--repeat 3]
                                             [--landing DIR]

Generates landing files with the simulator (or reuses --landing), then loads
them into a fresh warehouse with each loader in turn (base, current, base, ...),
each load in a fresh child process. Prints the median wall and CPU seconds of
each, the ratio, and whether both loaders accounted for every line the same way
(loaded, duplicates, rejected by reason). A change to the loader is judged by
this, side by side, not against figures from another day.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ottp import config  # noqa: E402

_ACCOUNTING = ("loaded", "duplicates", "rejected", "rejected_by_reason")


def _child(module_path: str, landing_dir: str, warehouse: str) -> None:
    """Load every landing file with the loader at ``module_path``; print one JSON line."""
    from ottp.ingest import landing

    spec = importlib.util.spec_from_file_location("loader_under_test", module_path)
    loader = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loader  # its dataclasses look their module up there
    spec.loader.exec_module(loader)
    files = landing.discover(Path(landing_dir))
    started = time.perf_counter()
    report = loader.load_files(Path(warehouse), files)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary = report.to_dict()
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mib": usage.ru_maxrss / 1024,
                "lines_in": summary["lines_in"],
                "accounting": {
                    k: summary[k]
                    for k in ("loaded", "duplicates", "rejected", "rejected_by_reason")
                },
            }
        )
    )


def _run(module_path: Path, landing_dir: Path, work: Path) -> dict:
    warehouse = work / "warehouse.duckdb"
    warehouse.unlink(missing_ok=True)
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(module_path), str(landing_dir), str(warehouse)],
        capture_output=True,
        text=True,
        check=True,
        env=config.child_env({"PYTHONPATH": str(REPO)}),
    )
    warehouse.unlink(missing_ok=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(*sys.argv[2:5])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--base", required=True, help="git revision whose ottp/ingest/load.py is the base"
    )
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--landing", type=Path, help="reuse these landing files")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="ottp-load-versions-") as tmp:
        work = Path(tmp)
        base = work / "load_base.py"
        base.write_text(
            subprocess.run(
                ["git", "-C", str(REPO), "show", f"{args.base}:ottp/ingest/load.py"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        landing_dir = args.landing
        if landing_dir is None:
            from ottp.simulator import simulate, suggest_size

            landing_dir = work / "landing"
            size = suggest_size(args.events, days=90)
            simulate(landing_dir, seed=42, dirty_rate=0.01, **size)
        runs: dict[str, list[dict]] = {"base": [], "current": []}
        for i in range(args.repeat):
            for name, path in (("base", base), ("current", REPO / "ottp" / "load.py")):
                r = _run(path, landing_dir, work)
                runs[name].append(r)
                print(
                    f"[{i + 1}/{args.repeat}] {name:8} {r['wall_s']:7.2f} s wall "
                    f"{r['cpu_s']:7.2f} s CPU  peak {r['peak_rss_mib']:,.0f} MiB  "
                    f"load {os.getloadavg()[0]:.2f}",
                    file=sys.stderr,
                )
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s", "peak_rss_mib")}
        for name, rs in runs.items()
    }
    same = runs["base"][0]["accounting"] == runs["current"][0]["accounting"]
    result = {
        "base": args.base,
        "lines_in": runs["current"][0]["lines_in"],
        "repeat": args.repeat,
        "median": med,
        "speedup_wall": med["base"]["wall_s"] / med["current"]["wall_s"],
        "speedup_cpu": med["base"]["cpu_s"] / med["current"]["cpu_s"],
        "same_accounting": same,
        "accounting": {n: rs[0]["accounting"] for n, rs in runs.items()},
    }
    print(json.dumps(result, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
