"""`ottp`: the project's command line, thin over the same code the Dagster assets call."""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from ottp import config

# The demo data set: big enough for fans, hardcore fans and churn to show,
# small enough to build in a couple of minutes.
DEMO = {"users": 1500, "titles": 500, "days": 60, "seed": 42, "dirty_rate": 0.01}


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ottp.simulator import simulate

    try:
        summary = simulate(
            Path(args.out),
            users=args.users,
            titles=args.titles,
            days=args.days,
            seed=args.seed,
            dirty_rate=args.dirty_rate,
            start_date=args.start_date,
            progress=not args.quiet,
            fmt=args.format,
        )
    except ValueError as exc:  # sizes the simulator refuses, with its reason
        print(f"ottp simulate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary.to_dict(), indent=2, default=str))
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from ottp.ingest import identities, live_triggers, load

    s = config.settings()
    s.ensure_dirs()
    landing_dir = Path(args.landing) if args.landing else s.landing_dir
    report = load.load_landing(s.warehouse_path, landing_dir, args.day)
    print(f"warehouse: {s.warehouse_path}")
    print(report.format_table())
    totals = load.reconciliation(s.warehouse_path)
    print(
        f"warehouse totals: {totals['events_in_table']:,} events from "
        f"{totals['event_files']} files, {totals['duplicates']:,} duplicates, "
        f"{totals['rejected_in_table']:,} rejected; "
        f"reconciles: {totals['reconciles']}"
    )
    # What the real-time server landed beside the events, as the ingest asset loads it.
    fired = live_triggers.load_live_triggers(s.warehouse_path, landing_dir)
    identified = identities.load_identities(s.warehouse_path, landing_dir)
    for name, side in (("live triggers", fired), ("identities", identified)):
        print(
            f"{name}: {side.loaded:,} loaded, {side.duplicates:,} duplicates, "
            f"{side.rejected:,} rejected from {side.files_loaded} new files; "
            f"reconciles: {side.reconciles}"
        )
    sides_reconcile = fired.reconciles and identified.reconciles
    return 0 if report.reconciles and totals["reconciles"] and sides_reconcile else 1


# The demo's stages, in order: one terminal line each (the rest goes to the log).
DEMO_STAGES = ("generate", "load", "dbt build", "ML", "exports + gates", "sync", "report")


def _cmd_demo(args: argparse.Namespace) -> int:
    from ottp import pipeline, run_log

    s = config.settings()
    s.ensure_dirs()
    log = run_log.log_path(s.logs_dir, "demo")
    print(f"log (dbt, Dagster, warnings): {log}", flush=True)
    started = time.perf_counter()
    try:
        with run_log.quiet_terminal(log) as say:

            def progress(line: str) -> None:
                number = DEMO_STAGES.index(line.split(":")[0]) + 1
                elapsed = time.perf_counter() - started
                say(f"[{number}/{len(DEMO_STAGES)}] {line}  ({elapsed:.0f} s)")

            _generate_demo_data(s, progress)
            runs = pipeline.run_all(progress=progress)
    except Exception:
        run_log.show_tail(log)
        return 1
    for run in runs:
        print(f"run {run.job}: {'success' if run.success else 'FAILED'} ({run.run_id})")
    if not all(r.success for r in runs):
        run_log.show_tail(log)
        return 1
    _print_summary(pipeline.summary(s), per_table=False)
    print(f"\nData: {s.data_dir}   UI: `make dev` (or `ottp ui`) shows these runs.")
    return 0


def _generate_demo_data(s: config.Settings, progress: Callable[[str], None]) -> None:
    """The demo data set, unless landing files are there already."""
    from ottp.ingest import landing

    if landing.discover(s.landing_dir):
        progress(f"generate: landing files found in {s.landing_dir}, kept")
        return
    from ottp.simulator import simulate

    summary = simulate(s.landing_dir, progress=False, **DEMO)
    progress(f"generate: {summary.lines_written:,} lines in {summary.seconds:.1f} s {DEMO}")


def _print_summary(summary: dict, per_table: bool = True) -> None:
    totals = summary["load"]
    print("\n== What was built ==")
    print(
        f"events: {totals['lines_in']:,} lines in, {totals['events_loaded']:,} loaded, "
        f"{totals['duplicates']:,} duplicates, {totals['rejected']:,} rejected "
        f"(reconciles: {totals['reconciles']})"
    )
    if summary["rejected_by_reason"]:
        print(
            "rejected by reason: "
            + ", ".join(f"{k}={v:,}" for k, v in summary["rejected_by_reason"].items())
        )
    q = summary.get("quarantine") or {}
    if q.get("built"):
        print(
            f"staging: {q['staged_events']:,} events staged, {q['quarantined_events']:,} "
            f"quarantined (raw = staged + quarantined: {q['reconciles']}), "
            f"{q['quarantined_titles']:,} catalog rows quarantined"
        )
        by_rule: dict[str, int] = {}
        for r in q["events_by_reason"] + q["titles_by_reason"]:
            by_rule[r["rule_id"]] = by_rule.get(r["rule_id"], 0) + r["rows"]
        if by_rule:
            print(
                "quarantined by rule: "
                + ", ".join(f"{rule}={n:,}" for rule, n in sorted(by_rule.items()))
            )
    if per_table:
        width = max((len(k) for k in summary["rows"]), default=10)
        for table, n in summary["rows"].items():
            print(f"  {table:<{width}}  {n:>12,} rows")
        return
    by_schema: dict[str, list[int]] = {}
    for table, n in summary["rows"].items():
        by_schema.setdefault(table.split(".")[0], []).append(n)
    views = summary.get("views", [])
    for schema, counts in by_schema.items():
        n_views = sum(1 for v in views if v.split(".")[0] == schema)
        kinds = f"{len(counts) - n_views:>3} tables" + (f", {n_views} views" if n_views else "")
        print(f"  {schema:<8} {kinds:<20} {sum(counts):>12,} rows")
    print("  (`ottp summary` lists every table and view)")


def _cmd_summary(args: argparse.Namespace) -> int:
    from ottp import pipeline

    summary = pipeline.summary()
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from ottp import instance

    home = instance.prepare_dagster_home()
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        "orchestration.definitions",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print(f"DAGSTER_HOME={home}\n$ {' '.join(cmd)}")
    return subprocess.call(cmd, cwd=config.REPO_ROOT)


def _cmd_sync(args: argparse.Namespace) -> int:
    from ottp.crm import gates, sync, targets

    s = config.settings()
    target = targets.target_from_url(args.target_url)
    gates = gates.validate(warehouse_path=s.warehouse_path, target=target)
    failed = [g for g in gates.values() if not g.success]
    for gate in gates.values():
        print(f"quality gate {gate.table}: {'passed' if gate.success else 'FAILED'}")
        if not gate.success:
            print(gate.summary_markdown())
    if failed:
        print("Nothing synced: the CRM target keeps its previous state.")
        return 1
    try:
        result = sync.sync(target, warehouse_path=s.warehouse_path, dry_run=args.dry_run)
    except sync.SyncError as e:
        print(f"sync failed, nothing applied: {e}")
        return 1
    print(result.format_table())
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    from ottp import pipeline

    runs = pipeline.backfill(args.start, args.end, build=not args.daily_only)
    for run in runs:
        print(f"run {run.job}: {'success' if run.success else 'FAILED'} ({run.run_id})")
    return 0 if runs and all(r.success for r in runs) else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from ottp.bi import report

    built = report.build()
    print(built.markdown())
    print(f"\nreport: {built.path}")
    for gate in built.figures["gates"]:
        print(f"validation results {gate['table']}: {gate['path']}")
    return 0


def _cmd_bi_snapshot(args: argparse.Namespace) -> int:
    from ottp.bi import snapshot

    published = snapshot.publish()
    print(published.markdown())
    print(
        f"\npublished {published.path} ({published.bytes / 2**20:.1f} MiB) "
        f"in {published.seconds:.1f} s; open it with: duckdb -readonly {published.path}"
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    rt = config.realtime_settings()
    if rt.api_key is None and not args.insecure_no_key:
        print(
            "OTTP_API_KEY is not set: set it (clients send it as X-API-Key) or, for a local "
            "test only, start with --insecure-no-key.",
            file=sys.stderr,
        )
        return 2
    if args.workers < 1:
        print("--workers must be 1 or more.", file=sys.stderr)
        return 2
    if args.workers > 1 and not rt.redis_url:
        print(
            "warning: several workers without OTTP_REDIS_URL each keep their own live state: "
            "a viewer's events and recommendations may reach different ones.",
            file=sys.stderr,
        )
    factory = "create_insecure_app" if args.insecure_no_key else "create_app"
    # The ottp loggers beside uvicorn's; no access log: it would record client addresses.
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["ottp"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    uvicorn.run(
        f"ottp.realtime.app:{factory}",
        factory=True,
        host=args.host or rt.host,
        port=args.port or rt.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        log_config=log_config,
        timeout_graceful_shutdown=30,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ottp",
        description="Personalization warehouse for video streaming platforms. Data lives "
        "under OTTP_DATA_DIR (default ./data).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_pipeline_commands(sub)
    _add_consumer_commands(sub)
    return parser


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """simulate, load, spark-load: landing files in, raw tables out."""
    sim = sub.add_parser("simulate", help="Write realistic landing files (events and catalog).")
    sim.add_argument("--out", required=True, help="Landing folder to write.")
    sim.add_argument("--users", type=int, default=DEMO["users"])
    sim.add_argument("--titles", type=int, default=DEMO["titles"])
    sim.add_argument("--days", type=int, default=DEMO["days"])
    sim.add_argument("--seed", type=int, default=DEMO["seed"])
    sim.add_argument(
        "--dirty-rate",
        type=float,
        default=DEMO["dirty_rate"],
        help="Share of lines made dirty: duplicates, late, skewed, malformed, bots.",
    )
    sim.add_argument("--start-date", type=date.fromisoformat, default=date(2026, 8, 1))
    sim.add_argument(
        "--format",
        choices=("native", "segment"),
        default="native",
        help="native: contract events in events/; segment: the same events as "
        "Segment/RudderStack tracking calls in segment/ (docs/segment.md).",
    )
    sim.add_argument("--quiet", action="store_true", help="No progress bar.")
    sim.set_defaults(func=_cmd_simulate)

    ld = sub.add_parser(
        "load", help="Load every landing file not loaded yet and print the reconciliation."
    )
    ld.add_argument("--landing", help="Landing folder (default $OTTP_DATA_DIR/landing).")
    ld.add_argument("--day", type=date.fromisoformat, help="Only this landing day.")
    ld.set_defaults(func=_cmd_load)

    sl = sub.add_parser(
        "spark-load",
        help="Load new landing files into the local Spark warehouse (OTTP_DBT_TARGET=spark).",
    )
    sl.add_argument("--landing", help="Landing folder (default $OTTP_DATA_DIR/landing).")
    sl.add_argument("--day", help="Only this landing day (YYYY-MM-DD).")
    sl.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def _cmd_spark_load(a: argparse.Namespace) -> int:
        from ottp.ingest import spark_load

        return spark_load.main(
            (["--landing", a.landing] if a.landing else [])
            + (["--day", a.day] if a.day else [])
            + (["--json"] if a.json else [])
        )

    sl.set_defaults(func=_cmd_spark_load)


def _add_pipeline_commands(sub: argparse._SubParsersAction) -> None:
    """demo, summary, ui, backfill: the Dagster jobs and what they built."""
    demo = sub.add_parser(
        "demo",
        help="The main job: generate demo data if missing, materialize every asset, "
        "print what was built.",
    )
    demo.set_defaults(func=_cmd_demo)

    summ = sub.add_parser("summary", help="Print events loaded/rejected and rows per mart.")
    summ.add_argument("--json", action="store_true")
    summ.set_defaults(func=_cmd_summary)

    ui = sub.add_parser("ui", help="Open the Dagster UI on the same data.")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=_cmd_ui)

    srv = sub.add_parser(
        "serve",
        help="The real-time service: event intake (POST /v1/events), health, OpenAPI page at "
        "/docs; needs OTTP_API_KEY (docs/realtime.md).",
    )
    srv.add_argument("--host", help="Address to listen on (default OTTP_SERVE_HOST, 127.0.0.1).")
    srv.add_argument("--port", type=int, help="Port (default OTTP_SERVE_PORT, 8700).")
    srv.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes, each loading and hot-swapping the serving bundle; "
        "several share the viewers' live state only through OTTP_REDIS_URL.",
    )
    srv.add_argument(
        "--insecure-no-key",
        action="store_true",
        help="Start even without OTTP_API_KEY, every request let in: local tests only.",
    )
    srv.set_defaults(func=_cmd_serve)

    bf = sub.add_parser(
        "backfill",
        help="Re-run the daily layer (loader, staging, incremental models) for a range of "
        "landing days in one run, then everything after it; the runs show in the UI.",
    )
    bf.add_argument("--from", dest="start", type=date.fromisoformat, required=True)
    bf.add_argument(
        "--to", dest="end", type=date.fromisoformat, required=True, help="last day, inclusive"
    )
    bf.add_argument(
        "--daily-only",
        action="store_true",
        help="only the daily layer; automation or build_warehouse does the rest",
    )
    bf.set_defaults(func=_cmd_backfill)


def _add_consumer_commands(sub: argparse._SubParsersAction) -> None:
    """movielens-benchmark, sync, report, bi-snapshot: what the recommender, CRM and BI get."""
    from ml import movielens

    bench = sub.add_parser(
        "movielens-benchmark",
        help="Run the recommender (popularity, ALS, tuned best) on a MovieLens folder.",
    )
    movielens.add_arguments(bench)
    bench.set_defaults(func=movielens.run)

    from ottp.realtime import session_benchmark

    sb = sub.add_parser(
        "session-benchmark",
        help="Replay held-out plays in time order: live session re-ranking against "
        "popularity, the batch model, item-kNN and V-SKNN (HR@10/20, MRR@20, coverage); "
        "MovieLens ratings at PATH, else the simulated demo warehouse.",
    )
    session_benchmark.add_arguments(sb)
    sb.set_defaults(func=session_benchmark.run)

    sy = sub.add_parser(
        "sync",
        help="Check the CRM export tables, then mirror them into the CRM database "
        "(SQLite under OTTP_DATA_DIR, or CRM_DATABASE_URL).",
    )
    sy.add_argument("--dry-run", action="store_true", help="Print what would change.")
    sy.add_argument(
        "--target-url",
        help="sqlite:///path or postgresql://... (default: CRM_DATABASE_URL, else the SQLite "
        "file); a password belongs in PGPASSWORD or ~/.pgpass, not on the command line.",
    )
    sy.set_defaults(func=_cmd_sync)

    rep = sub.add_parser(
        "report",
        help="Write the pipeline report (HTML under OTTP_DATA_DIR/reports) and list the "
        "latest validation results of each CRM gate.",
    )
    rep.set_defaults(func=_cmd_report)

    bi = sub.add_parser(
        "bi-snapshot",
        help="Publish the read-only copy of the marts BI tools open "
        "(OTTP_DATA_DIR/bi/marts_snapshot.duckdb); every build does this itself.",
    )
    bi.set_defaults(func=_cmd_bi_snapshot)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
