"""The benchmark suite of a git revision against the working tree's, alternately, in one run.

    python benchmarks/bench_versions.py --base REV [--events 1000000] [--repeat 2]
                                        [--json PATH]

Exports REV into a temporary folder (`git archive`) and runs the pipeline stages
of the suite (no peers, no PostgreSQL) with each code base in turn (base,
current, base, ...) on the same simulated data (same seed and size), each with the
same virtual environment. Prints the median wall and CPU seconds of every stage,
the end to end time and the incremental day's share of a full build, side by
side, with the ratio base / current. Absolute times drift on a shared machine;
a change is judged by this, not against figures from another day. A revision may
hold the suite as benchmarks/suite.py or, before it left the library, as ottp/bench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ottp import config  # noqa: E402

PEERS = [
    "read-json", "pandas-load", "pandas-sessions", "dbt-postgres", "sync-delete-insert",
    "dbt-no-data",
]  # fmt: skip
STAGES = (
    "load", "dbt_full_build", "train", "recommend", "exports", "quality", "sync_sqlite",
    "load_day", "dbt_incremental_day",
)  # fmt: skip


def _export(rev: str, dest: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev],
        capture_output=True,
        check=True,
    ).stdout
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _suite(tree: Path) -> tuple[str, Path]:
    """The module that holds the suite's ``main`` in ``tree``, and its file."""
    old = tree / "ottp" / "bench.py"
    if old.exists():
        return "ottp.bench", old
    return "benchmarks.suite", tree / "benchmarks" / "suite.py"


def _bench(tree: Path, events: int, work: Path, out: Path) -> dict:
    """One run of the suite with the code under ``tree``; its run record."""
    module, source = _suite(tree)
    env = config.child_env({"PYTHONPATH": str(tree), "OTTP_MIN_DATE": None, "OTTP_MAX_DATE": None})
    code = (
        "import sys, ottp; assert ottp.__file__.startswith(sys.argv[1]), ottp.__file__; "
        f"from {module} import main; raise SystemExit(main(sys.argv[2:]))"
    )
    # An older revision knows fewer peers, and its --skip refuses the others.
    known = source.read_text()
    peers = [peer for peer in PEERS if f'"{peer}"' in known]
    cmd = [
        sys.executable, "-c", code, str(tree),
        "--events", str(events), "--no-postgres", "--skip", *peers,
        "--workdir", str(work), "--json", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["runs"][0]


def _figures(run: dict) -> dict[str, float]:
    st = run["stages"]
    fig = {f"{s} wall": st[s]["wall_s"] for s in STAGES}
    fig.update({f"{s} CPU": st[s]["cpu_s"] for s in STAGES})
    fig["end to end wall"] = run["summary"]["end_to_end_s"]
    fig["end to end CPU"] = run["summary"]["end_to_end_cpu_s"]
    fig["incremental day / full build"] = run["summary"]["incremental_vs_full"]
    for s in ("dbt_full_build", "dbt_incremental_day"):
        fig[f"{s} nodes"] = st[s].get("nodes", 0)
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="git revision to compare with the working tree")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--json", type=Path, help="write the medians and every run here")
    args = p.parse_args(argv)

    runs: dict[str, list[dict]] = {"base": [], "current": []}
    with tempfile.TemporaryDirectory(prefix="ottp-versions-") as tmp:
        tmp_path = Path(tmp)
        _export(args.base, tmp_path / "base")
        trees = {"base": tmp_path / "base", "current": REPO}
        for i in range(args.repeat):
            for name, tree in trees.items():
                run = _bench(tree, args.events, tmp_path / "work", tmp_path / f"{name}-{i}.json")
                runs[name].append(_figures(run))
                print(
                    f"[{i + 1}/{args.repeat}] {name:8} end to end "
                    f"{runs[name][-1]['end to end wall']:.1f} s, load average "
                    f"{os.getloadavg()[0]:.2f}",
                    file=sys.stderr,
                )
    medians = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }
    print(
        f"\n{args.events:,} events, base {args.base} vs the working tree, medians of "
        f"{args.repeat}\n"
    )
    print("| figure | base | current | base / current |\n|---|---:|---:|---:|")
    for key in medians["current"]:
        b, c = medians["base"][key], medians["current"][key]
        ratio = f"{b / c:.2f}" if c else ""
        print(f"| {key} | {b:,.2f} | {c:,.2f} | {ratio} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"base": args.base, "events": args.events, "medians": medians, "runs": runs},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
