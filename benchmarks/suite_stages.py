"""The suite's pipeline stages, each run inside a fresh child process (benchmarks.suite_child).

generate -> load -> (dbt, run by the dbt wrapper) -> train -> recommend -> exports -> quality
-> sync: every function takes JSON-able keyword arguments and returns a JSON-able dict
whose ``items`` is what the stage's rate is counted in. They call the library functions
the Dagster assets call, without Dagster.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

from benchmarks.suite_process import dbt_call

EXPORT_TABLES = ("crm_contacts", "crm_recommendations", "crm_similar_titles", "crm_triggers")


def generate(landing: str, users: int, titles: int, days: int, seed: int, dirty: float) -> dict:
    from ottp.simulator import DEFAULT_START_DATE, simulate

    # The simulator's calendar, moved back when a long history would reach past today:
    # the loader rejects events received in the future (timestamp_out_of_range).
    start = min(DEFAULT_START_DATE, date.today() - timedelta(days=days))
    s = simulate(
        Path(landing),
        users=users,
        titles=titles,
        days=days,
        seed=seed,
        dirty_rate=dirty,
        start_date=start,
    )
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


def load_days(warehouse: str, landing: str, days: list[str]) -> dict:
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


def train(data_dir: str, warehouse: str) -> dict:
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
        settings = ev.EvalConfig(tuning=(ModelSpec("als"),), ease=(), alternatives=(), variants=())
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


def recommend(data_dir: str, warehouse: str) -> dict:
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


def build_exports(warehouse: str, target_path: str, exclude: list[str]) -> dict:
    import duckdb

    from ottp.privacy import pseudonymise_deleted_users

    t0 = time.perf_counter()
    pseudonymise_deleted_users(Path(warehouse))
    pseudonymise_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dbt_call(["build", "--select", "path:models/exports", *exclude], Path(target_path))
    dbt_s = time.perf_counter() - t0
    con = duckdb.connect(warehouse, read_only=True)
    rows = {
        t: con.execute(f"select count(*) from exports.{t}").fetchall()[0][0] for t in EXPORT_TABLES
    }
    con.close()
    return {
        "items": sum(rows.values()),
        "rows": rows,
        "pseudonymise_s": round(pseudonymise_s, 3),
        "dbt_s": round(dbt_s, 3),
    }


def quality_gates(data_dir: str, warehouse: str, sqlite_path: str) -> dict:
    from ottp.crm import gates
    from ottp.crm.targets import SqliteTarget

    results = gates.validate(
        warehouse_path=Path(warehouse),
        target=SqliteTarget(Path(sqlite_path)),
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


def sync_target(warehouse: str, state_dir: str, target: str, schema: str | None = None) -> dict:
    from ottp.crm import sync
    from ottp.crm.targets import target_from_url

    t = target_from_url(target, schema)
    r = sync.sync(t, warehouse_path=Path(warehouse), state_dir=Path(state_dir))
    return {
        "items": r.total("source_rows"),
        "changes": r.changes,
        "status": r.status,
        "phases": r.timings,
    }
