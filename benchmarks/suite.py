"""The pipeline benchmark suite: every stage from landing files to the CRM.

    python benchmarks/suite.py [--events 1000000 10000000] [--json PATH] [...]

For each size (events), on generated data under a work folder:

    generate -> load -> dbt full build -> train -> recommend -> exports -> quality
    -> sync (SQLite) -> sync (PostgreSQL, when reachable) -> load one more day
    -> dbt incremental day

and, side by side in the same run on the same files, the peers: DuckDB's bare
``read_json`` and pandas ``read_json(lines=True)`` against the loader, a pandas
sessionization against dbt's ``int_sessions`` (results compared), the dbt build
on PostgreSQL against DuckDB, ALS against popularity, and the diff-based sync
against delete-everything-and-insert (results compared); and the incremental
day's dbt command on a warehouse with no rows: what any daily build costs before
it touches data.

Every stage and peer runs in a fresh child process (benchmarks.suite_process): its
wall time, CPU time (from ``wait4``: the child and the processes it waited for, such
as dbt) and peak resident memory (its own high-water mark and its children's) are its
own. The load average is recorded around each one: the machine is shared, so ratios
measured in one run mean more than absolute times. The suite imports no Dagster: it
calls the library functions the assets call.

This module owns the command line and the run over sizes; suite_size runs one size,
suite_stages and suite_peers are what the children run, suite_summary the record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

# Run by its path (`python benchmarks/suite.py`): the repository root makes
# `benchmarks` and this tree's `ottp` importable from any working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import suite_postgres  # noqa: E402
from benchmarks.suite_size import run_size  # noqa: E402
from benchmarks.suite_summary import code_version, format_table, growth, machine  # noqa: E402
from ottp import config  # noqa: E402

DEFAULT_SIZES = (1_000_000, 10_000_000)
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PEERS = (
    "read-json",
    "pandas-load",
    "pandas-sessions",
    "dbt-postgres",
    "sync-delete-insert",
    "dbt-no-data",
)


def run(args: argparse.Namespace) -> int:
    """Every size in turn; the JSON rewritten after each. Exit 1 when a peer's results differ."""
    sizes = args.events or list(DEFAULT_SIZES)
    root = Path(args.workdir or Path(tempfile.gettempdir()) / "ottp-bench").resolve()
    root.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "command": "python benchmarks/suite.py " + " ".join(getattr(args, "argv", sys.argv[1:])),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "code": code_version(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "workdir": str(root),
        "runs": [],
    }
    pg = None
    if not args.no_postgres:
        name = suite_postgres.create_database(args.pg_url)
        if name:
            pg = {"url": args.pg_url, "database": name}
            report["postgresql"] = suite_postgres.describe(args.pg_url)
    try:
        for events in sizes:
            report["runs"].append(run_size(events, args, root, pg))
            _write(report, args.json)
    finally:
        if pg:
            suite_postgres.drop_database(args.pg_url, pg["database"])
    report["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    if grown := growth(report["runs"]):
        report["growth"] = grown
    _write(report, args.json)
    print(format_table(report))
    if args.json:
        print(f"\nJSON: {args.json}")
    ok = all(
        r["summary"].get("sessions_equal", True) and r["summary"].get("sync_equal", True)
        for r in report["runs"]
    )
    return 0 if ok else 1


def _write(report: dict, path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2, default=str))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--events",
        type=int,
        nargs="+",
        help="Sizes to run, in events (default: 1000000 10000000; 50000000 when "
        "asked). With two or more, the growth of the end-to-end time is checked.",
    )
    p.add_argument("--json", help="Write the results here as JSON.")
    p.add_argument(
        "--workdir",
        help="Where the generated data goes (default "
        "$TMPDIR/ottp-bench); each size's folder is removed after its run.",
    )
    p.add_argument("--keep", action="store_true", help="Keep each size's data.")
    p.add_argument(
        "--days",
        type=int,
        default=90,
        help="Days in the full build (one more is generated for the incremental run).",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dirty-rate", type=float, default=0.01)
    p.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=PEERS,
        metavar="PEER",
        help=f"Peers to leave out: {', '.join(PEERS)}.",
    )
    p.add_argument(
        "--no-dbt-tests",
        action="store_true",
        help="Build the models without running their dbt tests (quicker; the "
        "default measures what production runs: models and tests).",
    )
    p.add_argument(
        "--no-postgres",
        action="store_true",
        help="Leave out PostgreSQL (the sync to it and the dbt build on it).",
    )
    p.add_argument(
        "--pg-url",
        default=config.bench_postgres_url() or DEFAULT_PG_URL,
        help="A PostgreSQL server where a database may be created and dropped "
        f"(default: $OTTP_BENCH_PG_URL, else {DEFAULT_PG_URL}).",
    )
    p.add_argument(
        "--pg-dbt-timeout",
        type=float,
        default=1200.0,
        help="Stop the dbt build on PostgreSQL after this many seconds.",
    )
    p.add_argument(
        "--pandas-max-lines",
        type=int,
        default=1_200_000,
        help="The pandas peers run on a sample of about this many lines (or "
        "events) when the data is larger; throughput is compared per line.",
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python benchmarks/suite.py", description=__doc__.splitlines()[0]
    )
    add_arguments(p)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
