"""The benchmark suite behind ``ottp bench``: every stage from landing files to the CRM.

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

Every stage and peer runs in a fresh child process: its wall time, CPU time
(from ``wait4``: the child and the processes it waited for, such as dbt) and peak
resident memory (its own high-water mark and its children's, see
``_peak_rss_kib``) are its own. The load average is
recorded around each one: the machine is shared, so ratios measured in one run
mean more than absolute times. This module imports no Dagster: it calls the
library functions the assets call.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from ottp import config

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
# The path from landing files to the CRM target (sync to PostgreSQL is the other target).
END_TO_END = (
    "load",
    "dbt_full_build",
    "train",
    "recommend",
    "exports",
    "quality",
    "sync_sqlite",
)
TARGETS = {
    "end_to_end_s": 120.0,
    "end_to_end_peak_rss_mib": 4096.0,
    "loader_vs_read_json": 0.7,
    "loader_vs_pandas": 10.0,
    "incremental_vs_full": 0.10,
    "growth_10x": 12.0,
}
_EXPORT_TABLES = ("crm_contacts", "crm_recommendations", "crm_similar_titles", "crm_triggers")


def _log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- children
# Each function below runs inside a fresh child process (see _child_main); it
# receives JSON-able keyword arguments and returns a JSON-able dict.


def _c_generate(landing: str, users: int, titles: int, days: int, seed: int, dirty: float) -> dict:
    from ottp.simulator import simulate

    s = simulate(Path(landing), users=users, titles=titles, days=days, seed=seed, dirty_rate=dirty)
    return {
        "items": s.lines_written,
        "events_written": s.events_written,
        "lines_written": s.lines_written,
        "event_files": len(s.event_files),
        "gzip_bytes": sum(p.stat().st_size for p in s.event_files),
        "users": s.users,
        "titles": s.titles,
        "days": s.days,
    }


def _c_load(warehouse: str, landing: str, days: list[str]) -> dict:
    from ottp.ingest import landing as ld
    from ottp.ingest import load

    wanted = set(days)
    files = [f for f in ld.discover(Path(landing)) if f.partition_date.isoformat() in wanted]
    report = load.load_files(Path(warehouse), files)
    event_lines = sum(f.lines_in for f in report.files if f.kind == "events")
    return {
        "items": report.lines_in,
        "event_lines_in": event_lines,
        "events_loaded": report.events_loaded,
        "duplicates": report.duplicates,
        "rejected": report.rejected,
        "reconciles": report.reconciles,
        "files": len(report.files),
    }


def _c_read_json(files: list[str], db: str) -> dict:
    import duckdb

    con = duckdb.connect(db)
    con.execute(
        "create table events as select * from read_json($files, "
        "format = 'newline_delimited', ignore_errors = true)",
        {"files": files},
    )
    rows = con.execute("select count(*) from events").fetchall()[0][0]
    con.close()
    return {"items": rows}


def _c_empty_warehouse(warehouse: str) -> dict:
    """A warehouse as the loader leaves it before its first file: raw tables, no rows."""
    from ottp.ingest import load
    from ottp.warehouse import connect

    con = connect(Path(warehouse))
    try:
        load.ensure_raw_schema(con)
    finally:
        con.close()
    return {"items": 0}


def _c_pandas_load(files: list[str]) -> dict:
    import pandas as pd

    frames = [pd.read_json(f, lines=True, compression="gzip") for f in files]
    df = pd.concat(frames, ignore_index=True)
    return {"items": len(df), "columns": len(df.columns)}


def _activity_sql(where: str) -> str:
    """The events int_sessions reads (its three staging views), keyed by actor."""
    parts = [
        f"select coalesce(user_id, 'device:' || device_id) as actor_id, occurred_at "
        f"from staging.{view}"
        for view in ("stg_navigation_events", "stg_player_events", "stg_interest_events")
    ]
    return f"select * from ({' union all '.join(parts)}) as a where {where}"


def _session_gap_minutes() -> float:
    import yaml

    project = yaml.safe_load((config.DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return float(project["vars"]["session_gap_minutes"])


def _c_pandas_sessions(warehouse: str, modulus: int) -> dict:
    """The session rule written the way one would in pandas, on a sample of actors."""
    import duckdb
    import pandas as pd

    con = duckdb.connect(warehouse, read_only=True)
    sample = "true" if modulus <= 1 else f"hash(actor_id) % {int(modulus)} = 0"
    total = con.execute(f"select count(*) from ({_activity_sql('true')})").fetchall()[0][0]
    t0 = time.perf_counter()
    df = con.sql(_activity_sql(sample)).df()
    read_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    gap = pd.Timedelta(minutes=_session_gap_minutes())
    df = df.sort_values(["actor_id", "occurred_at"], kind="stable", ignore_index=True)
    new_actor = df["actor_id"].ne(df["actor_id"].shift())
    starts = new_actor | (df["occurred_at"].diff() > gap)
    df["session"] = starts.cumsum()
    sessions = df.groupby("session", sort=False).agg(
        actor_id=("actor_id", "first"),
        started_at=("occurred_at", "min"),
        ended_at=("occurred_at", "max"),
        event_count=("occurred_at", "size"),
    )
    compute_s = time.perf_counter() - t0

    # The check: the same sessions (start, end, events) for every sampled actor.
    con.register("pandas_sessions", sessions.reset_index(drop=True))
    dbt_where = sample.replace("actor_id", "s.actor_id")
    diff = con.execute(
        f"""
        with d as (
            select actor_id, started_at, ended_at, event_count
            from intermediate.int_sessions as s where {dbt_where}
        ), p as (select actor_id, started_at, ended_at, event_count from pandas_sessions)
        select
            (select count(*) from d), (select count(*) from p),
            (select count(*) from (select * from d except all select * from p)),
            (select count(*) from (select * from p except all select * from d)),
            (select count(distinct actor_id) from p)
        """
    ).fetchall()[0]
    con.close()
    return {
        "items": len(df),
        "activity_events_total": total,
        "sample": f"1/{modulus} of actors" if modulus > 1 else "all actors",
        "read_s": round(read_s, 3),
        "compute_s": round(compute_s, 3),
        "sessions_dbt": diff[0],
        "sessions_pandas": diff[1],
        "only_in_dbt": diff[2],
        "only_in_pandas": diff[3],
        "actors": diff[4],
        "equal": diff[2] == 0 and diff[3] == 0 and diff[0] == diff[1],
    }


def _c_train(data_dir: str, warehouse: str) -> dict:
    """Training data, an offline evaluation (ALS against popularity), fit and gate."""
    from ml import evaluation as ev
    from ml import flows
    from ml import warehouse as wh
    from ml.models import ModelSpec
    from ottp.warehouse import connect

    reg = flows.registry(Path(data_dir))
    con = connect(Path(warehouse))
    try:
        table, info = flows.training_interactions(con)
        wh.write_tables(con, {"training_interactions": table})
        # One ALS (the default parameters) instead of the production grid: the
        # benchmark times the pipeline, docs/recommendations.md the tuning.
        settings = ev.EvalConfig(tuning=(ModelSpec("als"),), alternatives=(), variants=())
        t0 = time.perf_counter()
        report = flows.evaluate(con, reg, settings)
        eval_s = time.perf_counter() - t0
        wh.write_tables(con, {"model_evaluation": report.rows()})
        t0 = time.perf_counter()
        training = flows.train_and_gate(con, reg)
        fit_s = time.perf_counter() - t0
    finally:
        con.close()
    k = report.k

    def summary(result) -> dict:
        if result is None:
            return {}
        out = {m: result.metric(f"{m}_at_{k}") for m in ("precision", "recall", "ndcg", "map")}
        out["coverage"] = result.metric(f"coverage_at_{k}")
        out["users"] = int(result.summary.get("users", 0))
        out["fit_s"] = round(float(result.fit_seconds), 4)
        out["model"] = result.spec.label
        return {key: (round(v, 5) if isinstance(v, float) else v) for key, v in out.items()}

    return {
        "items": int(info["pairs"]),
        "users": int(info["users"]),
        "titles": int(info["titles"]),
        "evaluation_s": round(eval_s, 3),
        "final_fit_and_gate_s": round(fit_s, 3),
        "k": k,
        "als": summary(report.test("candidate")),
        "popularity": summary(report.test("baseline")),
        "gate_passed": bool(training.decision.passed),
        "version": training.version,
    }


def _c_recommend(data_dir: str, warehouse: str) -> dict:
    """What the CRM exports read from the recommender: lists, similar titles, clusters, churn."""
    from ml import churn, flows
    from ml import warehouse as wh
    from ottp.warehouse import connect

    reg = flows.registry(Path(data_dir))
    con = connect(Path(warehouse))
    timings = {}
    try:
        t0 = time.perf_counter()
        recs, info = flows.recommendations(con, reg)
        rows = wh.write_tables(con, {"recommendations": recs})
        timings["recommendations_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        similar, _ = flows.similar_titles(con, reg)
        rows.update(wh.write_tables(con, {"similar_titles": similar}))
        timings["similar_titles_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        clusters, members, _ = flows.taste_clusters(con, reg)
        rows.update(
            wh.write_tables(con, {"taste_clusters": clusters, "user_taste_clusters": members})
        )
        timings["taste_clusters_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        risk = churn.churn_risk(con, wh.as_of(con))
        rows.update(wh.write_tables(con, {"churn_risk": risk.scores}))
        timings["churn_risk_s"] = time.perf_counter() - t0
    finally:
        con.close()
    return {
        "items": int(rows["recommendations"]),
        "rows": {k: int(v) for k, v in rows.items()},
        "warm_users": int(info["warm_users"]),
        "cold_users": int(info["cold_users"]),
        **{k: round(v, 3) for k, v in timings.items()},
    }


def _c_exports(warehouse: str, target_path: str, exclude: list[str]) -> dict:
    import duckdb

    from ottp.crm import sync

    t0 = time.perf_counter()
    sync.pseudonymise_deleted_users(Path(warehouse))
    pseudonymise_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _dbt_call(
        ["build", "--select", "path:models/exports", *exclude], dict(os.environ), Path(target_path)
    )
    dbt_s = time.perf_counter() - t0
    con = duckdb.connect(warehouse, read_only=True)
    rows = {
        t: con.execute(f"select count(*) from exports.{t}").fetchall()[0][0] for t in _EXPORT_TABLES
    }
    con.close()
    return {
        "items": sum(rows.values()),
        "rows": rows,
        "pseudonymise_s": round(pseudonymise_s, 3),
        "dbt_s": round(dbt_s, 3),
    }


def _c_quality(data_dir: str, warehouse: str, sqlite_path: str) -> dict:
    from ottp.crm import gates, sync

    results = gates.validate(
        warehouse_path=Path(warehouse),
        target=sync.SqliteTarget(Path(sqlite_path)),
        results_dir=Path(data_dir) / "quality",
    )
    return {
        "items": sum(r.row_count for r in results.values()),
        "success": all(r.success for r in results.values()),
        "expectations": sum(r.evaluated for r in results.values()),
        "failed": {
            t: [f.description for f in r.failures] for t, r in results.items() if r.failures
        },
    }


def _c_sync(warehouse: str, state_dir: str, target: str, schema: str | None = None) -> dict:
    from ottp.crm import sync

    t = sync.target_from_url(target, schema)
    r = sync.sync(t, warehouse_path=Path(warehouse), state_dir=Path(state_dir))
    return {
        "items": r.total("source_rows"),
        "changes": r.changes,
        "status": r.status,
        "phases": r.timings,
    }


def _c_pg_mirror(warehouse: str, dsn: str) -> dict:
    from ottp.ingest import pg_mirror

    copied = pg_mirror.mirror_raw_to_postgres(Path(warehouse), dsn)
    return {"items": sum(copied.values()), "rows": copied}


_CHANGE_ONE_PERCENT = """
update exports.crm_contacts set churn_risk = 1 - coalesce(churn_risk, 0)
    where hash(user_id) % 300 = 0;
delete from exports.crm_contacts where hash(user_id) % 300 = 1;
insert into exports.crm_contacts
    select * replace ('n' || user_id as user_id) from exports.crm_contacts
    where hash(user_id) % 300 = 2;
delete from exports.crm_recommendations where hash(user_id) % 300 = 1;
insert into exports.crm_recommendations
    select * replace ('n' || user_id as user_id) from exports.crm_recommendations
    where hash(user_id) % 300 = 2;
update exports.crm_recommendations set title_id = title_id || '_x'
    where hash(user_id, rank) % 300 = 3;
"""


def _c_sync_peer(warehouse: str, folder: str) -> dict:
    """Re-sync after a 1 % change: the diff-based sync against delete-all-and-insert.

    Runs on a copy of the export tables (the warehouse is not changed). Both
    targets start from the same first sync and must end with the same rows.
    """
    import sqlite3

    import duckdb

    from ottp.crm import sync

    root = Path(folder)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    source = root / "peer_source.duckdb"  # not "exports": the schema's name
    con = duckdb.connect(str(source))
    con.execute(f"attach '{warehouse}' as wh (read_only)")
    con.execute("create schema exports; create schema marts")
    for t in _EXPORT_TABLES:
        con.execute(f"create table exports.{t} as select * from wh.exports.{t}")
    con.execute("create table marts.user_lifecycle as select * from wh.marts.user_lifecycle")
    con.execute("detach wh")
    con.close()

    diff_target = sync.SqliteTarget(root / "diff.sqlite")
    first = sync.sync(diff_target, warehouse_path=source, state_dir=root / "state")
    shutil.copyfile(root / "diff.sqlite", root / "replace.sqlite")

    con = duckdb.connect(str(source))
    con.execute(_CHANGE_ONE_PERCENT)
    con.close()

    t0 = time.perf_counter()
    again = sync.sync(diff_target, warehouse_path=source, state_dir=root / "state")
    diff_s = time.perf_counter() - t0

    # The peer: one transaction, every table emptied and refilled from the source.
    t0 = time.perf_counter()
    duck = duckdb.connect(str(source), read_only=True)
    lite = sqlite3.connect(root / "replace.sqlite", isolation_level=None)
    lite.execute("begin immediate")
    rows = 0
    for spec in sync.TABLES:
        names = spec.column_names
        cols = ", ".join(
            f'cast("{c.name}" as varchar)' if c.type == "timestamp" else f'"{c.name}"'
            for c in spec.columns
        )
        marks = ", ".join("?" for _ in range(len(names) + 1))
        lite.execute(f'delete from "{spec.name}"')
        cur = duck.execute(f"select {cols}, 0 from exports.{spec.name}")
        while batch := cur.fetchmany(100_000):
            lite.executemany(f'insert into "{spec.name}" values ({marks})', batch)
            rows += len(batch)
    lite.execute("commit")
    duck.close()
    replace_s = time.perf_counter() - t0

    # The check: the same contract columns in both targets.
    lite.execute(f"attach '{root / 'diff.sqlite'}' as d")
    mismatches = {}
    for spec in sync.TABLES:
        cols = ", ".join(f'"{c}"' for c in spec.column_names)
        a = f'select {cols} from main."{spec.name}"'
        b = f'select {cols} from d."{spec.name}"'
        n = lite.execute(
            f"select (select count(*) from ({a} except {b})) "
            f"+ (select count(*) from ({b} except {a}))"
        ).fetchall()[0][0]
        mismatches[spec.name] = n
    lite.close()
    return {
        "items": rows,
        "first_sync_s": round(first.seconds, 3),
        "diff_resync_s": round(diff_s, 3),
        "delete_insert_s": round(replace_s, 3),
        "changed_rows": again.changes,
        "source_rows": again.total("source_rows"),
        "mismatched_rows": mismatches,
        "equal": not any(mismatches.values()),
    }


_CHILDREN = {
    "generate": _c_generate,
    "load": _c_load,
    "read_json": _c_read_json,
    "empty_warehouse": _c_empty_warehouse,
    "pandas_load": _c_pandas_load,
    "pandas_sessions": _c_pandas_sessions,
    "train": _c_train,
    "recommend": _c_recommend,
    "exports": _c_exports,
    "quality": _c_quality,
    "sync": _c_sync,
    "pg_mirror": _c_pg_mirror,
    "sync_peer": _c_sync_peer,
}


def _c_dbt(args: list[str], target_path: str) -> dict:
    """dbt in a small wrapper process, so its peak memory is measured like the others'.

    A failing dbt test does not stop the benchmark: the failed nodes are reported.
    """
    results = Path(target_path) / "run_results.json"
    results.unlink(missing_ok=True)
    proc = subprocess.run(_dbt_command(args, Path(target_path)), env=dict(os.environ))
    if proc.returncode != 0 and not results.exists():
        raise RuntimeError(f"dbt {' '.join(args)} exited with {proc.returncode}")
    return {"returncode": proc.returncode}


_CHILDREN["dbt"] = _c_dbt


def _peak_rss_kib() -> int:
    """This process's own high-water mark (VmHWM) and its children's.

    Not ru_maxrss of RUSAGE_SELF: after exec, Linux carries over the high-water
    mark of the forked copy, i.e. the parent's size at the fork. A child forked
    from this small process inherits little, so RUSAGE_CHILDREN is fair.
    """
    import resource

    own = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            own = int(line.split()[1])
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def _child_main(argv: list[str]) -> int:
    name, args_path, out_path = argv
    kwargs = json.loads(Path(args_path).read_text())
    result = _CHILDREN[name](**kwargs)
    result["peak_rss_kib"] = _peak_rss_kib()
    Path(out_path).write_text(json.dumps(result, default=str))
    return 0


# --------------------------------------------------------------------------- running


class StageFailed(RuntimeError):
    pass


def _dbt_command(args: list[str], target_path: Path) -> list[str]:
    return [
        config.dbt_executable(),
        *args,
        "--project-dir",
        str(config.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(config.DBT_PROJECT_DIR),
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
    ]


def _dbt_call(args: list[str], env: dict, target_path: Path) -> None:
    proc = subprocess.run(_dbt_command(args, target_path), env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{proc.stdout[-4000:]}")


def _wait(proc: subprocess.Popen, timeout: float | None) -> tuple[int, object, bool]:
    """Wait for the child with wait4 (its own rusage); kill it past the timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage, False
        if time.monotonic() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage, True
        time.sleep(0.05)


def _measure(
    label: str, cmd: list[str], env: dict, log_path: Path, timeout: float | None = None
) -> dict:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _log(f"{label}: started")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        rc, usage, timed_out = _wait(proc, timeout)
    wall = time.perf_counter() - started
    # CPU from wait4 covers the child and what it waited for; memory comes from
    # the child itself (see _peak_rss_kib).
    m = {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if timed_out:
        m["timed_out"] = True
        _log(f"{label}: stopped after the {timeout:.0f} s limit")
        return m
    if rc != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise StageFailed(f"{label} failed (exit {rc}), log {log_path}:\n{tail}")
    return m


def _child(
    label: str, name: str, kwargs: dict, env: dict, work: Path, timeout: float | None = None
) -> dict:
    tag = uuid.uuid4().hex[:8]
    args_path = work / "logs" / f"{label}-{tag}.args.json"
    out_path = work / "logs" / f"{label}-{tag}.out.json"
    args_path.parent.mkdir(parents=True, exist_ok=True)
    args_path.write_text(json.dumps(kwargs))
    cmd = [sys.executable, "-m", "ottp.bench", name, str(args_path), str(out_path)]
    m = _measure(label, cmd, env, work / "logs" / f"{label}.log", timeout)
    if not m.get("timed_out"):
        m.update(json.loads(out_path.read_text()))
        m["peak_rss_mib"] = round(m.pop("peak_rss_kib") / 1024, 1)
    return m


def _dbt_stage(
    label: str, args: list[str], env: dict, work: Path, target: Path, timeout: float | None = None
) -> dict:
    m = _child(label, "dbt", {"args": args, "target_path": str(target)}, env, work, timeout)
    if m.get("timed_out"):
        return m
    results = json.loads((target / "run_results.json").read_text())
    nodes = results["results"]
    models = [r for r in nodes if r["unique_id"].startswith("model.")]
    tests = [r for r in nodes if r["unique_id"].startswith(("test.", "unit_test."))]
    by_time = sorted(nodes, key=lambda r: -r["execution_time"])
    failed = [r["unique_id"] for r in nodes if r["status"] in ("error", "fail", "runtime error")]
    if failed:
        m["failed_nodes"] = failed
        _log(f"{label}: dbt reported {len(failed)} failed nodes: {', '.join(failed[:5])}")
    m.update(
        {
            "dbt_elapsed_s": round(results["elapsed_time"], 3),
            "nodes": len(nodes),
            "models": len(models),
            "tests": len(tests),
            "models_execution_s": round(sum(r["execution_time"] for r in models), 3),
            "tests_execution_s": round(sum(r["execution_time"] for r in tests), 3),
            "node_s": {
                r["unique_id"].split(".", 2)[-1]: round(r["execution_time"], 3) for r in by_time
            },
            "slowest": [
                [r["unique_id"].split(".", 2)[-1], round(r["execution_time"], 2)]
                for r in by_time[:8]
            ],
        }
    )
    return m


def _done(label: str, m: dict) -> None:
    if m.get("timed_out"):
        return
    rate = m.get("items", 0) / m["wall_s"] if m["wall_s"] else 0
    _log(
        f"{label}: {m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} s CPU, "
        f"{m.get('items', 0):,} {m.get('unit', 'items')} ({rate:,.0f}/s), "
        f"peak {m['peak_rss_mib']:,.0f} MiB, load {m['load_avg'][0]}"
    )


def _rate(m: dict) -> None:
    if m.get("items") and m.get("wall_s"):
        m["per_s"] = round(m["items"] / m["wall_s"], 1)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_admin(url: str):
    import psycopg2

    con = psycopg2.connect(url, connect_timeout=5)
    con.autocommit = True
    return con


def _pg_database(url: str) -> str | None:
    """A fresh database for this run, or None when the server cannot be reached."""
    try:
        import psycopg2  # noqa: F401

        con = _pg_admin(url)
    except Exception as e:  # noqa: BLE001 - any failure means: no PostgreSQL peer
        _log(f"PostgreSQL not reachable at {_pg_describe(url)}: {str(e).strip()[:200]}")
        return None
    name = f"ottp_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with con.cursor() as cur:
        cur.execute(f'create database "{name}"')  # our own generated name
    con.close()
    return name


def _pg_drop(url: str, name: str) -> None:
    try:
        con = _pg_admin(url)
        with con.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        con.close()
    except Exception as e:  # noqa: BLE001 - report, never mask the run's own result
        _log(f"could not drop PostgreSQL database {name}: {e}")


def _pg_url_for(url: str, database: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{database}").geturl()


def _pg_describe(url: str) -> str:
    p = urlsplit(url)
    return f"{p.hostname or 'localhost'}:{p.port or 5432}"


def _pg_dbt_env(env: dict, url: str, database: str) -> dict:
    p = urlsplit(url)
    out = dict(
        env,
        OTTP_DBT_TARGET="postgres",
        OTTP_PG_DATABASE=database,
        OTTP_PG_HOST=p.hostname or "127.0.0.1",
        OTTP_PG_PORT=str(p.port or 5432),
    )
    if p.username:
        out["OTTP_PG_USER"] = p.username
    if p.password:
        out["OTTP_PG_PASSWORD"] = p.password
    return out


# --------------------------------------------------------------------------- one size


def _pick_sample(files: list[Path], max_lines: int, lines_per_byte: float) -> list[Path]:
    """Files spread over the whole window, up to about max_lines lines."""
    total = sum(f.stat().st_size for f in files)
    if total * lines_per_byte <= max_lines:
        return files
    keep = max(1, int(len(files) * max_lines / (total * lines_per_byte)))
    step = len(files) / keep
    return [files[int(i * step)] for i in range(keep)]


def _clean_copy(files: list[Path], folder: Path) -> tuple[list[str], int, int]:
    """Copies holding only the lines that are JSON objects (pandas stops at the first bad line)."""
    folder.mkdir(parents=True, exist_ok=True)
    out, kept, dropped = [], 0, 0
    for i, src in enumerate(files):
        dst = folder / f"part-{i:05d}.ndjson.gz"
        with gzip.open(src, "rb") as fin, gzip.open(dst, "wb", compresslevel=1) as fout:
            for line in fin:
                try:
                    ok = isinstance(json.loads(line), dict)
                except ValueError:
                    ok = False
                if ok:
                    fout.write(line if line.endswith(b"\n") else line + b"\n")
                    kept += 1
                else:
                    dropped += 1
        out.append(str(dst))
    return out, kept, dropped


def _settings_with(variables: dict[str, str]) -> config.Settings:
    """ottp.config's settings for these variables; the environment is restored after."""
    with config.environment(variables):
        return config.settings()


def run_size(events: int, args: argparse.Namespace, root: Path, pg: dict | None) -> dict:
    from ottp.ingest import landing as ld
    from ottp.simulator import suggest_size

    work = root / f"events-{events}"
    shutil.rmtree(work, ignore_errors=True)
    data_dir = work / "data"
    landing_dir = data_dir / "landing"
    warehouse = data_dir / "warehouse.duckdb"
    sqlite_path = data_dir / "crm" / "crm.sqlite"
    data_dir.mkdir(parents=True)
    pointed = {
        "OTTP_DATA_DIR": str(data_dir),
        "OTTP_LANDING_DIR": str(landing_dir),
        "OTTP_DBT_TARGET": "duckdb",
    }
    s = _settings_with(pointed)
    if s.warehouse_path != warehouse:
        raise StageFailed(f"ottp.config puts the warehouse at {s.warehouse_path}, not {warehouse}")
    env = config.dbt_env(s)
    env.update(
        pointed,
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        PYTHONPATH=str(config.REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    for var in ("CRM_DATABASE_URL", "CRM_DATABASE_SCHEMA", "OTTP_MIN_DATE", "OTTP_MAX_DATE"):
        env.pop(var, None)
    skip = set(args.skip)
    stages: dict[str, dict] = {}
    peers: dict[str, dict] = {}

    def stage(key: str, unit: str, m: dict, items: int | None = None) -> dict:
        m["unit"] = unit
        if items is not None:
            m["items"] = items
        _rate(m)
        stages[key] = m
        _done(key, m)
        return m

    def peer(key: str, unit: str, m: dict, items: int | None = None) -> dict:
        m["unit"] = unit
        if items is not None and not m.get("timed_out"):
            m["items"] = items
        _rate(m)
        peers[key] = m
        _done(f"peer {key}", m)
        return m

    # The full build covers `days` days; one more day is the incremental run.
    size = suggest_size(events, days=args.days)
    _log(
        f"== {events:,} events: {size['users']:,} users, {size['titles']:,} titles, "
        f"{args.days} days + 1 for the incremental run; work folder {work}"
    )
    stage(
        "generate",
        "lines",
        _child(
            "generate",
            "generate",
            {
                "landing": str(landing_dir),
                "users": size["users"],
                "titles": size["titles"],
                "days": args.days + 1,
                "seed": args.seed,
                "dirty": args.dirty_rate,
            },
            env,
            work,
        ),
    )

    files = ld.discover(landing_dir)
    days = sorted({f.partition_date for f in files})
    full_days, last_day = days[:-1], days[-1]
    event_files = [f.path for f in files if f.kind == "events" and f.partition_date < last_day]

    m = stage(
        "load",
        "lines",
        _child(
            "load",
            "load",
            {
                "warehouse": str(warehouse),
                "landing": str(landing_dir),
                "days": [d.isoformat() for d in full_days],
            },
            env,
            work,
        ),
    )
    if not m["reconciles"]:
        raise StageFailed("the load does not reconcile")
    event_lines = m["event_lines_in"]

    if "read-json" not in skip:
        peer(
            "read_json",
            "rows",
            _child(
                "read_json",
                "read_json",
                {"files": [str(f) for f in event_files], "db": str(work / "read_json.duckdb")},
                env,
                work,
            ),
        )
        (work / "read_json.duckdb").unlink(missing_ok=True)
    if "pandas-load" not in skip:
        per_byte = event_lines / sum(f.stat().st_size for f in event_files)
        sample = _pick_sample(event_files, args.pandas_max_lines, per_byte)
        clean, kept, dropped = _clean_copy(sample, work / "pandas_landing")
        m = peer(
            "pandas_load",
            "lines",
            _child("pandas_load", "pandas_load", {"files": clean}, env, work),
        )
        m.update(
            {
                "files": len(sample),
                "of_files": len(event_files),
                "lines_kept": kept,
                "bad_lines_removed_beforehand": dropped,
                "subsample": len(sample) < len(event_files),
            }
        )
        shutil.rmtree(work / "pandas_landing", ignore_errors=True)

    target = work / "dbt_target"
    # As production builds: unit tests run in the test suite, not on the data.
    dbt_scope = ["--exclude", "path:models/exports", "--exclude-resource-type", "unit_test"]
    if args.no_dbt_tests:
        dbt_scope += ["--exclude-resource-type", "test"]
    stage(
        "dbt_full_build",
        "events",
        _dbt_stage("dbt_full_build", ["build", "--full-refresh", *dbt_scope], env, work, target),
        stages["load"]["events_loaded"],
    )

    if "pandas-sessions" not in skip:
        modulus = max(1, -(-event_lines // args.pandas_max_lines))
        peer(
            "pandas_sessions",
            "events",
            _child(
                "pandas_sessions",
                "pandas_sessions",
                {"warehouse": str(warehouse), "modulus": modulus},
                env,
                work,
            ),
        )

    stage(
        "train",
        "interactions",
        _child(
            "train", "train", {"data_dir": str(data_dir), "warehouse": str(warehouse)}, env, work
        ),
    )
    stage(
        "recommend",
        "recommendations",
        _child(
            "recommend",
            "recommend",
            {"data_dir": str(data_dir), "warehouse": str(warehouse)},
            env,
            work,
        ),
    )
    # dagster-dbt copies the project's partial_parse.msgpack into each
    # invocation's target folder, so a production exports run parses only what
    # changed; the same here (outside the timing).
    exports_target = work / "dbt_target_exports"
    exports_target.mkdir(exist_ok=True)
    if (target / "partial_parse.msgpack").exists():
        shutil.copy2(target / "partial_parse.msgpack", exports_target / "partial_parse.msgpack")
    stage(
        "exports",
        "rows",
        _child(
            "exports",
            "exports",
            {
                "warehouse": str(warehouse),
                "target_path": str(exports_target),
                "exclude": dbt_scope[2:],
            },
            env,
            work,
        ),
    )
    m = stage(
        "quality",
        "rows",
        _child(
            "quality",
            "quality",
            {
                "data_dir": str(data_dir),
                "warehouse": str(warehouse),
                "sqlite_path": str(sqlite_path),
            },
            env,
            work,
        ),
    )
    if not m["success"]:
        raise StageFailed(f"quality gates failed: {m['failed']}")
    stage(
        "sync_sqlite",
        "rows",
        _child(
            "sync_sqlite",
            "sync",
            {
                "warehouse": str(warehouse),
                "state_dir": str(data_dir / "crm" / "state"),
                "target": f"sqlite:///{sqlite_path}",
            },
            env,
            work,
        ),
    )

    if pg is not None:
        url = _pg_url_for(pg["url"], pg["database"])
        stage(
            "sync_postgres",
            "rows",
            _child(
                "sync_postgres",
                "sync",
                {
                    "warehouse": str(warehouse),
                    "state_dir": str(data_dir / "crm" / "state"),
                    "target": url,
                    "schema": f"crm_{events}",
                },
                env,
                work,
            ),
        )
        if "dbt-postgres" not in skip:
            peer(
                "pg_mirror",
                "rows",
                _child(
                    "pg_mirror", "pg_mirror", {"warehouse": str(warehouse), "dsn": url}, env, work
                ),
            )
            peer(
                "dbt_postgres",
                "events",
                _dbt_stage(
                    "dbt_postgres",
                    ["build", "--full-refresh", *dbt_scope],
                    _pg_dbt_env(env, pg["url"], pg["database"]),
                    work,
                    work / "dbt_target_pg",
                    timeout=args.pg_dbt_timeout,
                ),
                stages["load"]["events_loaded"],
            )

    if "sync-delete-insert" not in skip:
        peer(
            "sync_delete_insert",
            "rows",
            _child(
                "sync_delete_insert",
                "sync_peer",
                {"warehouse": str(warehouse), "folder": str(work / "sync_peer")},
                env,
                work,
            ),
        )

    m = stage(
        "load_day",
        "lines",
        _child(
            "load_day",
            "load",
            {
                "warehouse": str(warehouse),
                "landing": str(landing_dir),
                "days": [last_day.isoformat()],
            },
            env,
            work,
        ),
    )
    # The window Dagster's daily partition passes (environment variables, so dbt
    # parses partially): the staging tests then look at that landing day only
    # (macros/test_window.sql).
    day_env = {
        **env,
        "OTTP_MIN_DATE": last_day.isoformat(),
        "OTTP_MAX_DATE": (last_day + timedelta(days=1)).isoformat(),
    }
    stage(
        "dbt_incremental_day",
        "events",
        _dbt_stage("dbt_incremental_day", ["build", *dbt_scope], day_env, work, target),
        stages["load_day"]["events_loaded"],
    )

    if "dbt-no-data" not in skip:
        # The same command with the same profile, warehouse path and parse state,
        # on a warehouse whose raw tables are empty: dbt's own cost per build
        # (imports, parse, every node's overhead), below which no day can go.
        aside = work / "warehouse-aside"
        aside.mkdir()
        wal = Path(f"{warehouse}.wal")
        moved = [f for f in (warehouse, wal) if f.exists()]
        for f in moved:
            f.rename(aside / f.name)
        try:
            _child("empty_warehouse", "empty_warehouse", {"warehouse": str(warehouse)}, env, work)
            m = _dbt_stage("dbt_no_data", ["build", *dbt_scope], day_env, work, target)
            peer("dbt_no_data", "nodes", m, m.get("nodes"))
        finally:
            warehouse.unlink(missing_ok=True)
            wal.unlink(missing_ok=True)
            for f in moved:
                (aside / f.name).rename(f)
            aside.rmdir()

    result = {
        "events": events,
        "size": {**size, "days": args.days, "incremental_day": last_day.isoformat()},
        "stages": stages,
        "peers": peers,
    }
    result["summary"] = _summarise(result)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a and b else None


def _summarise(r: dict) -> dict:
    st, pe = r["stages"], r["peers"]
    e2e = [st[k] for k in END_TO_END if k in st]
    out: dict = {
        "end_to_end_s": round(sum(m["wall_s"] for m in e2e), 2),
        "end_to_end_cpu_s": round(sum(m["cpu_s"] for m in e2e), 2),
        # stages run one after another: the peak of the path is the largest child's
        "end_to_end_peak_rss_mib": max(m["peak_rss_mib"] for m in e2e),
        "end_to_end_stages": list(END_TO_END),
        "slowest_stage": max((k for k in END_TO_END if k in st), key=lambda k: st[k]["wall_s"]),
    }
    load_s = st["load"]["wall_s"]
    load_cpu = st["load"]["cpu_s"]
    # CPU ratios too: on a busy machine they show the work apart from the waiting.
    if "read_json" in pe:
        out["loader_vs_read_json"] = _ratio(pe["read_json"]["wall_s"], load_s)
        out["loader_vs_read_json_cpu"] = _ratio(pe["read_json"]["cpu_s"], load_cpu)
    if "pandas_load" in pe:
        p = pe["pandas_load"]
        lines = st["load"]["event_lines_in"]
        out["loader_vs_pandas"] = _ratio(lines / load_s, p["lines_kept"] / p["wall_s"])
        out["loader_vs_pandas_cpu"] = _ratio(lines / load_cpu, p["lines_kept"] / p["cpu_s"])
    full, incr = st["dbt_full_build"], st["dbt_incremental_day"]
    out["incremental_vs_full"] = _ratio(incr["wall_s"], full["wall_s"])
    out["incremental_vs_full_cpu"] = _ratio(incr["cpu_s"], full["cpu_s"])
    out["incremental_vs_full_models"] = _ratio(
        incr["models_execution_s"], full["models_execution_s"]
    )
    if pe.get("dbt_no_data", {}).get("wall_s"):
        floor = pe["dbt_no_data"]["wall_s"]
        # No daily build is cheaper than the floor, so the target ratio can
        # only be met once floor / full is under it.
        out["dbt_no_data_vs_full"] = _ratio(floor, full["wall_s"])
        out["incremental_above_no_data_s"] = round(incr["wall_s"] - floor, 2)
        out["full_above_no_data_s"] = round(full["wall_s"] - floor, 2)
    if "pandas_sessions" in pe:
        p = pe["pandas_sessions"]
        dbt_s = full["node_s"].get("int_sessions")
        out["sessions_equal"] = p["equal"]
        if dbt_s:
            dbt_rate = p["activity_events_total"] / dbt_s
            pandas_rate = p["items"] / p["compute_s"] if p["compute_s"] else None
            out["sessions_dbt_events_per_s"] = round(dbt_rate)
            out["sessions_pandas_events_per_s"] = round(pandas_rate) if pandas_rate else None
            out["sessions_dbt_vs_pandas"] = _ratio(dbt_rate, pandas_rate)
    if "dbt_postgres" in pe:
        pg = pe["dbt_postgres"]
        out["dbt_postgres_vs_duckdb"] = _ratio(pg["wall_s"], full["wall_s"])
        out["dbt_postgres_timed_out"] = bool(pg.get("timed_out"))
    tr = st["train"]
    if tr.get("als") and tr.get("popularity"):
        a, p = tr["als"], tr["popularity"]
        out["als_ndcg"] = a["ndcg"]
        out["popularity_ndcg"] = p["ndcg"]
        out["als_vs_popularity_ndcg"] = _ratio(a["ndcg"], p["ndcg"])
        out["als_vs_popularity_fit_time"] = _ratio(a["fit_s"], p["fit_s"])
    if "sync_delete_insert" in pe:
        s = pe["sync_delete_insert"]
        out["sync_equal"] = s["equal"]
        out["delete_insert_vs_diff_resync"] = _ratio(s["delete_insert_s"], s["diff_resync_s"])
    checks = {
        "end_to_end_s": out["end_to_end_s"] <= TARGETS["end_to_end_s"],
        "end_to_end_peak_rss_mib": out["end_to_end_peak_rss_mib"]
        <= TARGETS["end_to_end_peak_rss_mib"],
        "incremental_vs_full": out["incremental_vs_full"] <= TARGETS["incremental_vs_full"],
    }
    if out.get("loader_vs_read_json") is not None:
        checks["loader_vs_read_json"] = out["loader_vs_read_json"] >= TARGETS["loader_vs_read_json"]
    if out.get("loader_vs_pandas") is not None:
        checks["loader_vs_pandas"] = out["loader_vs_pandas"] >= TARGETS["loader_vs_pandas"]
    out["targets_met"] = checks
    return out


# --------------------------------------------------------------------------- report


def _machine() -> dict:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": mem,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _code_version() -> dict:
    def git(*a: str) -> str | None:
        try:
            p = subprocess.run(
                ["git", *a], cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "root": str(config.REPO_ROOT),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
    }


def format_table(report: dict) -> str:
    lines = []
    for r in report["runs"]:
        lines.append(
            f"\n{r['events']:,} events ({r['size']['users']:,} users, "
            f"{r['size']['titles']:,} titles, {r['size']['days']} days + 1)"
        )
        lines.append(
            f"  {'stage':<24}{'wall s':>9}{'CPU s':>9}{'items':>13}  {'unit':<16}"
            f"{'per s':>12}{'peak MiB':>10}{'load':>6}"
        )
        for group, table in (("", r["stages"]), ("peer ", r["peers"])):
            for key, m in table.items():
                if m.get("timed_out"):
                    lines.append(f"  {group + key:<24}{m['wall_s']:>9.1f}  stopped at the limit")
                    continue
                lines.append(
                    f"  {group + key:<24}{m['wall_s']:>9.1f}{m['cpu_s']:>9.1f}"
                    f"{m.get('items', 0):>13,}  {m.get('unit', ''):<16}{m.get('per_s', 0):>12,.0f}"
                    f"{m['peak_rss_mib']:>10,.0f}{m['load_avg'][0]:>6.1f}"
                )
                if m.get("failed_nodes"):
                    lines.append(f"    dbt failed: {', '.join(m['failed_nodes'])}")
        s = r["summary"]
        lines.append(
            f"  end to end (landing -> CRM): {s['end_to_end_s']:.1f} s wall, "
            f"{s['end_to_end_cpu_s']:.1f} s CPU, peak {s['end_to_end_peak_rss_mib']:,.0f}"
            f" MiB; slowest stage {s['slowest_stage']}"
        )
        for key, label in (
            ("loader_vs_read_json", "loader speed / bare read_json speed"),
            ("loader_vs_pandas", "loader speed / pandas read_json speed (lines/s)"),
            ("incremental_vs_full", "incremental day / full build (wall)"),
            ("incremental_vs_full_cpu", "incremental day / full build (CPU)"),
            ("incremental_vs_full_models", "incremental day / full build (models executing)"),
            ("dbt_no_data_vs_full", "same daily build on no rows / full build (wall)"),
            ("incremental_above_no_data_s", "incremental day above that floor (s)"),
            ("full_above_no_data_s", "full build above that floor (s)"),
            ("sessions_dbt_vs_pandas", "sessionization dbt / pandas (events/s)"),
            ("sessions_equal", "sessions equal (dbt vs pandas)"),
            ("dbt_postgres_vs_duckdb", "dbt build PostgreSQL / DuckDB (wall)"),
            ("als_ndcg", "ALS NDCG@10"),
            ("popularity_ndcg", "popularity NDCG@10"),
            ("als_vs_popularity_fit_time", "ALS / popularity fit time"),
            ("delete_insert_vs_diff_resync", "delete+insert / diff re-sync (1 % change)"),
            ("sync_equal", "targets equal (diff vs delete+insert)"),
        ):
            if key in s and s[key] is not None:
                extra = (
                    " (lower bound: stopped at the limit)"
                    if (key == "dbt_postgres_vs_duckdb" and s.get("dbt_postgres_timed_out"))
                    else ""
                )
                lines.append(f"  {label:<50} {s[key]}{extra}")
        lines.append(
            "  targets: "
            + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in s["targets_met"].items())
        )
    if "growth" in report:
        g = report["growth"]
        lines.append(
            f"\ngrowth {g['from']:,} -> {g['to']:,} events ({g['factor']:g}x): end to end "
            f"{g['end_to_end_ratio']}x (target <= {g['target']}: "
            f"{'met' if g['met'] else 'MISSED'})"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    sizes = args.events or list(DEFAULT_SIZES)
    root = Path(args.workdir or Path(tempfile.gettempdir()) / "ottp-bench").resolve()
    root.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "command": "ottp bench " + " ".join(getattr(args, "argv", sys.argv[2:])),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "code": _code_version(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "workdir": str(root),
        "runs": [],
    }
    pg = None
    if not args.no_postgres:
        name = _pg_database(args.pg_url)
        if name:
            pg = {"url": args.pg_url, "database": name}
            report["postgresql"] = _pg_describe(args.pg_url)
    try:
        for events in sizes:
            report["runs"].append(run_size(events, args, root, pg))
            _write(report, args.json)
    finally:
        if pg:
            _pg_drop(args.pg_url, pg["database"])
    report["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    runs = sorted(report["runs"], key=lambda r: r["events"])
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        # The simulator hits the asked size within ~10 %: grow by the lines it wrote.
        factor = b["stages"]["load"]["items"] / a["stages"]["load"]["items"]
        ratio = round(b["summary"]["end_to_end_s"] / a["summary"]["end_to_end_s"], 3)
        limit = TARGETS["growth_10x"] * factor / 10
        report["growth"] = {
            "from": a["events"],
            "to": b["events"],
            "factor": round(factor, 2),
            "end_to_end_ratio": ratio,
            "target": round(limit, 2),
            "met": ratio <= limit,
        }
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
        default=os.environ.get("OTTP_BENCH_PG_URL", DEFAULT_PG_URL),
        help="A PostgreSQL server where a database may be created and dropped.",
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
    p = argparse.ArgumentParser(prog="ottp bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
