"""The same dbt project on Apache Spark (a local session), against the DuckDB build.

One small simulated data set goes through both engines the same way: the
landing days but the last are loaded (Spark: ottp.ingest.spark_load, DuckDB:
ottp.ingest.load), then the last day arrives with a re-delivered file and a corrupt
one. On Spark the incremental models are built before the last day and run
incrementally after it (the delete+insert rewrite), then a full-refresh
``dbt build`` (models, data tests, unit tests) runs, the recommender trains on
the Spark marts and writes its tables back, and the CRM exports build.

The Spark steps run one after another in the test session's one Spark process
(tests/spark/jvm.py: the embedded Derby metastore admits one JVM at a time). The
Spark tables are Parquet directories, so the checks read them with DuckDB, with
no JVM of their own.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from ottp.config import DBT_PROJECT_DIR, dbt_executable
from ottp.ingest import landing
from ottp.ingest.load import load_files
from ottp.spark import java_available
from tests.conftest import BUILD_INCREMENTAL, INCREMENTAL_MODELS
from tests.spark.jvm import SparkSteps, StepResult

pytestmark = pytest.mark.skipif(
    not java_available(), reason="Spark needs a Java runtime (java on PATH or JAVA_HOME)"
)

SIM = dict(users=120, titles=80, days=10, seed=5, dirty_rate=0.01)
# Columns each engine computes its own way: the load times each loader stamps, the
# fingerprints each engine's hash gives.
ENGINE_OWN_COLUMNS = (
    "loaded_at",
    "session_loaded_at",
    "plays_fingerprint",
    "reactions_fingerprint",
    "ratings_fingerprint",
)
# Per mart: the key its unique test declares.
MART_KEYS = {
    "sessions": ["session_id"],
    "plays": ["playback_id"],
    "titles": ["title_id"],
    "users": ["user_id"],
    "title_engagement": ["title_id"],
    "title_engagement_daily": ["title_id", "activity_date"],
    "user_title_interests": ["user_id", "title_id"],
    "user_category_affinity": ["user_id", "category"],
    "user_category_segments": ["user_id", "category"],
    "user_segments": ["user_id"],
    "user_lifecycle": ["user_id"],
    "churn_summary": ["segment", "signup_cohort_month", "cancel_reason"],
    "survey_summary": ["survey_id", "question_id", "answer", "segment", "lifecycle_stage"],
    "continue_watching": ["user_id", "title_id"],
    "next_episodes": ["user_id", "series_id"],
    "title_transitions": ["from_title_id", "to_title_id"],
}


@dataclass
class Runs:
    root: Path
    duckdb_path: Path
    spark_warehouse: Path
    duckdb_reports: list[dict]
    spark_reports: list[dict]
    build: StepResult
    build_results: list[dict]
    recommender: dict[str, int]
    exports: StepResult


# Per step: dbt's threads (the session's shuffle partitions are the runner's).
SPARK_STEP_ENV = {"OTTP_SPARK_THREADS": "4"}


def _run(cmd: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd[:4])} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        )
    return result


def _checked(step: str, result: StepResult, check: bool = True) -> StepResult:
    if check and result.returncode != 0:
        pytest.fail(f"{step} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return result


def _dbt(spark: SparkSteps, args: list[str], root: Path, check: bool = True) -> StepResult:
    target = root / "spark_target"
    common = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
              "--target-path", str(target), "--log-path", str(target / "logs")]  # fmt: skip
    return _checked(f"dbt {args[0]}", spark.dbt([*args, *common], SPARK_STEP_ENV), check)


def _spark_load(spark: SparkSteps, landing_dir: Path) -> dict:
    out = spark.spark_load(["--landing", str(landing_dir), "--json"])
    assert out.returncode in (0, 1), out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _status_counts(report: dict) -> dict:
    keys = (
        "files_loaded",
        "files_already_loaded",
        "files_duplicate",
        "files_unreadable",
        "lines_in",
        "loaded",
        "events_loaded",
        "duplicates",
        "rejected",
        "rejected_by_reason",
        "reconciles",
    )
    return {k: report[k] for k in keys}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, spark_steps) -> Runs:
    from ottp.simulator import simulate

    root = tmp_path_factory.mktemp("spark")
    full = root / "landing"
    simulate(full, **SIM)
    files = landing.discover(full)
    last_day = max(f.partition_date for f in files)
    # The last day brings a re-delivery of the first day's file and a corrupt file.
    first = next(f for f in files if f.kind == "events")
    last_dir = landing.partition_dir(full, "events", last_day)
    shutil.copy(first.path, last_dir / "part-90000.ndjson.gz")
    (last_dir / "part-90001.ndjson.gz").write_bytes(gzip.compress(b'{"a": 1}\n' * 50)[:-9])
    # The days before the last, as a landing folder of their own (links resolve
    # to the same paths, so both loaders see the same files).
    early = root / "landing_early"
    for f in files:
        if f.partition_date < last_day:
            folder = early / f.kind / f.path.parent.name
            if not folder.exists():
                folder.parent.mkdir(parents=True, exist_ok=True)
                folder.symlink_to(f.path.parent, target_is_directory=True)

    duckdb_path = root / "warehouse.duckdb"
    duckdb_reports = [
        load_files(duckdb_path, landing.discover(early)).to_dict(),
        load_files(duckdb_path, landing.discover(full)).to_dict(),
    ]
    duck_env = dict(
        os.environ,
        OTTP_WAREHOUSE_PATH=str(duckdb_path),
        OTTP_DBT_TARGET="duckdb",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    _run(
        [
            dbt_executable(),
            "build",
            "--exclude",
            "exports",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(root / "duckdb_target"),
            "--log-path",
            str(root / "duckdb_target" / "logs"),
        ],
        duck_env,
    )

    spark_steps.reset()
    warehouse = spark_steps.warehouse
    spark_reports = [_spark_load(spark_steps, early)]
    _dbt(spark_steps, BUILD_INCREMENTAL, root)
    spark_reports.append(_spark_load(spark_steps, full))
    _dbt(spark_steps, BUILD_INCREMENTAL, root)
    for model in INCREMENTAL_MODELS:
        shutil.copytree(warehouse / "intermediate.db" / model, root / "incremental" / model)

    build = _dbt(spark_steps, ["build", "--full-refresh", "--exclude", "exports"], root, False)
    results = json.loads((root / "spark_target" / "run_results.json").read_text())["results"]
    recommender = _checked(
        "the recommender", spark_steps.recommender(["--min-lift-over-baseline", "-1"])
    )
    counts = json.loads(recommender.stdout.strip().splitlines()[-1])
    exports = _dbt(spark_steps, ["build", "--select", "path:models/exports"], root, False)
    return Runs(
        root, duckdb_path, warehouse, duckdb_reports, spark_reports, build, results, counts, exports
    )


def _duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    return con


def _spark_table(warehouse: Path, schema: str, table: str) -> str:
    """A Spark table's Parquet files as a DuckDB table expression."""
    folder = warehouse / f"{schema}.db" / table
    assert folder.is_dir(), f"{schema}.{table} is not on Spark"
    pattern = f"{folder}/**/*.parquet"
    return f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"


def _comparable(
    con, duck_table: str, spark_source: str, leave_out: tuple[str, ...] = ()
) -> tuple[str, str]:
    """Both sides as selects with DuckDB's column types, doubles rounded to 1e-6."""
    columns = [
        (name, data_type)
        for name, data_type in con.execute(
            "select column_name, data_type from duckdb_columns() "
            "where database_name = 'w' and schema_name || '.' || table_name = ? "
            "order by column_index",
            [duck_table],
        ).fetchall()
        if name not in leave_out
    ]
    assert columns, duck_table

    def expr(name: str, data_type: str, cast: bool) -> str:
        value = f'cast("{name}" as {data_type})' if cast else f'"{name}"'
        if data_type in ("DOUBLE", "FLOAT") or data_type.startswith("DECIMAL"):
            return f'round(cast({value} as double), 6) as "{name}"'
        return f'{value} as "{name}"'

    duck = ", ".join(expr(n, t, False) for n, t in columns)
    spark = ", ".join(expr(n, t, True) for n, t in columns)
    return f"select {duck} from w.{duck_table}", f"select {spark} from {spark_source}"


def _differences(con, a: str, b: str) -> int:
    return con.execute(f"select count(*) from ({a} except all {b})").fetchall()[0][0]


def test_spark_loader_accounts_for_every_line_like_the_duckdb_loader(runs):
    for spark, duck in zip(runs.spark_reports, runs.duckdb_reports, strict=True):
        assert _status_counts(spark) == _status_counts(duck)
    first, second = runs.spark_reports
    assert first["reconciles"] and second["reconciles"]
    assert first["rejected"] > 0 and set(first["rejected_by_reason"]) >= {"invalid_json"}
    # exactly once: the second load skips every file of the first
    assert second["files_already_loaded"] == first["files_loaded"]
    assert second["files_duplicate"] == 1 and second["files_unreadable"] == 1
    assert second["duplicates"] > 0

    con = _duck()
    con.execute(f"attach '{runs.duckdb_path}' as w (read_only)")
    for table, key in (("events", "event_id"), ("rejected_events", "raw_line")):
        source = _spark_table(runs.spark_warehouse, "raw", table)
        spark = f"select cast({key} as varchar) from {source}"
        duck = f"select cast({key} as varchar) from w.raw.{table}"
        assert _differences(con, spark, duck) == 0 and _differences(con, duck, spark) == 0
    source = _spark_table(runs.spark_warehouse, "raw", "load_manifest")
    manifest = con.execute(
        f"select status, count(*) from {source} group by 1 order by 1"
    ).fetchall()
    assert (
        manifest
        == con.execute(
            "select status, count(*) from w.raw.load_manifest group by 1 order by 1"
        ).fetchall()
    )


def test_spark_build_passes_every_model_and_test(runs):
    assert runs.build.returncode == 0, runs.build.stdout[-6000:]
    failed = [r["unique_id"] for r in runs.build_results if r["status"] in ("error", "fail")]
    assert not failed
    kinds = {r["unique_id"].split(".")[0] for r in runs.build_results}
    assert {"model", "seed", "test", "unit_test"} <= kinds
    assert len(runs.build_results) > 200


@pytest.mark.parametrize("mart", sorted(MART_KEYS))
def test_spark_marts_equal_the_duckdb_build(runs, mart):
    con = _duck()
    con.execute(f"attach '{runs.duckdb_path}' as w (read_only)")
    source = _spark_table(runs.spark_warehouse, "marts", mart)
    duck, spark = _comparable(con, f"marts.{mart}", source)
    rows = con.execute(f"select count(*) from ({duck})").fetchall()[0][0]
    assert rows > 0, f"marts.{mart} is empty: the comparison would prove nothing"
    assert con.execute(f"select count(*) from ({spark})").fetchall()[0][0] == rows
    keys = ", ".join(MART_KEYS[mart])
    key_diff = _differences(con, f"select {keys} from ({duck})", f"select {keys} from ({spark})")
    assert key_diff == 0, f"{key_diff} keys of marts.{mart} differ"
    assert _differences(con, duck, spark) == 0, f"marts.{mart} rows differ"
    assert _differences(con, spark, duck) == 0, f"marts.{mart} rows differ"


def test_spark_segments_and_sessions_match_duckdb(runs):
    con = _duck()
    con.execute(f"attach '{runs.duckdb_path}' as w (read_only)")
    wh = runs.spark_warehouse
    segments = (
        "select highest_segment, count(*) from {} group by 1 order by 1",
        "w.marts.user_segments",
        _spark_table(wh, "marts", "user_segments"),
    )
    sessions = (
        "select session_date, count(*), sum(event_count) from {} group by 1 order by 1",
        "w.marts.sessions",
        _spark_table(wh, "marts", "sessions"),
    )
    for sql, duck, spark in (segments, sessions):
        expected = con.execute(sql.format(duck)).fetchall()
        assert len(expected) > 1
        assert con.execute(sql.format(spark)).fetchall() == expected


@pytest.mark.parametrize("model", INCREMENTAL_MODELS)
def test_spark_incremental_run_equals_its_full_refresh(runs, model):
    con = _duck()
    con.execute(f"attach '{runs.duckdb_path}' as w (read_only)")
    incremental = f"read_parquet('{runs.root / 'incremental' / model}/*.parquet')"
    full = _spark_table(runs.spark_warehouse, "intermediate", model)
    _, b = _comparable(con, f"intermediate.{model}", incremental)
    _, c = _comparable(con, f"intermediate.{model}", full)
    assert con.execute(f"select count(*) from ({b})").fetchall()[0][0] > 100
    assert _differences(con, b, c) == 0 and _differences(con, c, b) == 0
    # and the full refresh on Spark equals DuckDB's, but for the load times (each
    # engine's loader stamps its own) and the fingerprints (each engine's hash)
    a, c = _comparable(con, f"intermediate.{model}", full, leave_out=ENGINE_OWN_COLUMNS)
    assert _differences(con, a, c) == 0 and _differences(con, c, a) == 0


def test_recommender_reads_spark_marts_and_exports_build_on_spark(runs):
    for table in (
        "training_interactions",
        "recommendations",
        "similar_titles",
        "user_taste_clusters",
        "churn_risk",
    ):
        assert runs.recommender[table] > 0, table
    assert runs.exports.returncode == 0, runs.exports.stdout[-6000:]
    con = _duck()
    con.execute(f"attach '{runs.duckdb_path}' as w (read_only)")
    wh = runs.spark_warehouse
    on_spark = con.execute(
        f"select count(*) from {_spark_table(wh, 'ml', 'recommendations')}"
    ).fetchall()[0][0]
    assert on_spark == runs.recommender["recommendations"]
    # Spark computed the training interactions from its marts; DuckDB gets the
    # same pairs from its own.
    from ml import interactions as ia
    from ml import warehouse as mwh

    duck = duckdb.connect(str(runs.duckdb_path), read_only=True)
    try:
        expected = ia.interactions(duck, mwh.as_of(duck))
    finally:
        duck.close()
    con.register("expected_pairs", expected)
    spark_pairs = _spark_table(wh, "ml", "training_interactions")
    pairs = "select user_id, title_id, evidence, round(value, 4) as value, valid_play_count from {}"
    a, b = pairs.format("expected_pairs"), pairs.format(spark_pairs)
    assert _differences(con, a, b) == 0 and _differences(con, b, a) == 0
    exported = con.execute(
        f"select count(*) from {_spark_table(wh, 'exports', 'crm_recommendations')}"
    ).fetchall()[0][0]
    assert exported > 0
