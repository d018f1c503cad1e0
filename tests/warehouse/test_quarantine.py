"""No poison pill: a raw row that breaks a model's input assumption is quarantined.

Rows the loader lets through today can no longer break a staging model (the
loader enforces the whole contract), but raw.events keeps what older loaders
wrote, and other writers exist. Here such rows are written straight into
raw.events and raw.titles of a small loaded warehouse: the two first reported
(a heartbeat at 1e308 s, a survey answer with a null question_id) and one per
assumption of macros/quarantine.sql. The dbt build succeeds; each row is in the
quarantine with the rule it breaks and in no staging model or mart; raw =
staged + quarantined; the report, the summary and the Dagster warning check
show them by reason; and the ingest job itself succeeds with the check warning.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ottp import pipeline
from ottp.bi import report
from ottp.ingest import landing
from ottp.ingest.load import load_files
from tests.warehouse.test_dbt_models import PG, postgres_database, query, run_dbt  # noqa: F401

SIM = dict(users=40, titles=30, days=3, seed=3, dirty_rate=0.01)
BUILD = ["build", "--exclude", "exports", "--exclude-resource-type", "unit_test"]
EVENT_MODELS = report.EVENT_STAGING_MODELS.values()
NUMBER_1E308 = "1e308"
# name -> (event_type, column overrides as SQL, staging model, rule expected)
POISON_EVENTS = {
    # the two first reported
    "heartbeat_at_1e308": ("heartbeat", {"position_s": NUMBER_1E308, "duration_s": NUMBER_1E308},
                           "stg_player_events", "position_s.maximum"),
    "null_question_id": ("survey_response",
                         {"properties": """'{"survey_id": "nps", "question_id": null,
                                             "answer": "9"}'"""},
                         "stg_survey_responses", "properties.question_id.required"),
    # one per assumption
    "player_without_user": ("heartbeat", {"user_id": "null"}, "stg_player_events",
                            "user_id.required"),
    "player_without_playback": ("heartbeat", {"playback_id": "null"}, "stg_player_events",
                                "playback_id.required"),
    "player_without_title": ("heartbeat", {"title_id": "null"}, "stg_player_events",
                             "title_id.required"),
    "player_without_position": ("heartbeat", {"position_s": "null"}, "stg_player_events",
                                "position_s.required"),
    "player_without_duration": ("heartbeat", {"duration_s": "null"}, "stg_player_events",
                                "duration_s.required"),
    "negative_position": ("heartbeat", {"position_s": "-1"}, "stg_player_events",
                          "position_s.minimum"),
    "seek_from_negative": ("seek", {"from_position_s": "-5"}, "stg_player_events",
                           "from_position_s.minimum"),
    "zero_duration": ("heartbeat", {"duration_s": "0"}, "stg_player_events",
                      "duration_s.exclusiveMinimum"),
    "duration_over_a_day": ("heartbeat", {"position_s": "10", "duration_s": "100000"},
                            "stg_player_events", "duration_s.maximum"),
    "seek_from_over_a_day": ("seek", {"position_s": "10", "from_position_s": "100000"},
                             "stg_player_events", "from_position_s.maximum"),
    "rank_not_a_number": ("title_click", {"properties": """'{"rail": "top", "rank": "abc"}'"""},
                          "stg_navigation_events", "properties.rank.type"),
    "like_without_user": ("like", {"user_id": "null"}, "stg_interest_events",
                          "user_id.required"),
    "like_without_title": ("like", {"title_id": "null"}, "stg_interest_events",
                           "title_id.required"),
    "rating_missing": ("rating", {"properties": "'{}'"}, "stg_interest_events",
                       "properties.rating.required"),
    "rating_text": ("rating", {"properties": """'{"rating": "abc"}'"""},
                    "stg_interest_events", "properties.rating.type"),
    "rating_fraction": ("rating", {"properties": """'{"rating": 4.5}'"""},
                        "stg_interest_events", "properties.rating.type"),
    "rating_zero": ("rating", {"properties": """'{"rating": 0}'"""}, "stg_interest_events",
                    "properties.rating.minimum"),
    "rating_nine": ("rating", {"properties": """'{"rating": 9}'"""}, "stg_interest_events",
                    "properties.rating.maximum"),
    "signup_without_user": ("signup", {"user_id": "null"}, "stg_account_events",
                            "user_id.required"),
    "consent_without_opt_in": ("consent_update", {"properties": "'{}'"}, "stg_account_events",
                               "properties.marketing_opt_in.required"),
    "consent_yes": ("consent_update", {"properties": """'{"marketing_opt_in": "yes"}'"""},
                    "stg_account_events", "properties.marketing_opt_in.type"),
    "survey_without_user": ("survey_response",
                            {"user_id": "null",
                             "properties": """'{"survey_id": "nps", "question_id": "q1",
                                                "answer": "9"}'"""},
                            "stg_survey_responses", "user_id.required"),
    "survey_without_survey": ("survey_response",
                              {"properties": """'{"question_id": "q1", "answer": "9"}'"""},
                              "stg_survey_responses", "properties.survey_id.required"),
    "unknown_event_type": ("teleport", {}, None, "event_type.enum"),
}  # fmt: skip
# name -> (column overrides, rule expected)
POISON_TITLES = {
    "category_outside_the_seed": ({"title_id": "'t_cooking'", "category": "'cooking'"},
                                  "titles.category.seed"),
    "kind_unknown": ({"title_id": "'t_short'", "kind": "'short'"}, "titles.kind.enum"),
}  # fmt: skip
# Declared not null by raw.events / raw.titles themselves: no row can break them there.
RAW_NOT_NULL = {
    ("events", "event_id"), ("events", "device_id"), ("events", "occurred_at"),
    ("titles", "title_id"), ("titles", "category"), ("titles", "duration_s"),
}  # fmt: skip


@dataclass
class Poisoned:
    root: Path
    warehouse: Path
    env: dict[str, str]
    target: Path
    event_ids: dict[str, str]
    build_rc: int
    build_log: str


def _poison(warehouse: Path) -> dict[str, str]:
    """Write the poison rows as an older loader would have: in the raw tables and
    counted in the load manifest of the file they copy. Returns name -> event_id."""
    con = duckdb.connect(str(warehouse))
    try:
        ids = {}
        template = con.execute(
            "select source_file from raw.events where event_type = 'heartbeat' limit 1"
        ).fetchone()[0]
        for name, (event_type, overrides, _, _) in POISON_EVENTS.items():
            event_id = con.execute("select cast(uuid() as varchar)").fetchone()[0]
            columns = {"event_id": f"'{event_id}'::uuid", "event_type": f"'{event_type}'",
                       **overrides}  # fmt: skip
            replace = ", ".join(f"{sql} as {column}" for column, sql in columns.items())
            con.execute(
                f"insert into raw.events select * replace ({replace}) from raw.events "
                "where source_file = ? and event_type = 'heartbeat' limit 1",
                [template],
            )
            ids[name] = event_id
        con.execute(
            "update raw.load_manifest set lines_in = lines_in + ?, loaded = loaded + ? "
            "where file_path = ?",
            [len(ids), len(ids), template],
        )
        for overrides, _ in POISON_TITLES.values():
            replace = ", ".join(f"{sql} as {column}" for column, sql in overrides.items())
            con.execute(
                f"insert into raw.titles select * replace ({replace}) from raw.titles limit 1"
            )
    finally:
        con.close()
    return ids


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory) -> Poisoned:
    from ottp.simulator import simulate

    root = tmp_path_factory.mktemp("quarantine")
    simulate(root / "landing", **SIM)
    warehouse = root / "warehouse.duckdb"
    load_files(warehouse, landing.discover(root / "landing"))
    ids = _poison(warehouse)
    shutil.copy(warehouse, root / "raw_only.duckdb")
    env = dict(
        os.environ,
        OTTP_WAREHOUSE_PATH=str(warehouse),
        OTTP_DBT_TARGET="duckdb",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    target = root / "target"
    build = run_dbt(BUILD, env, target, check=False)
    return Poisoned(root, warehouse, env, target, ids, build.returncode, build.stdout)


def test_the_poison_is_counted_by_the_load_reconciliation(poisoned):
    from ottp.ingest.load import reconciliation

    assert reconciliation(poisoned.root / "raw_only.duckdb")["reconciles"]


def test_the_build_goes_on_with_every_test_passing(poisoned):
    assert poisoned.build_rc == 0, poisoned.build_log[-6000:]
    results = json.loads((poisoned.target / "run_results.json").read_text())["results"]
    assert len(results) > 150
    assert not [r["unique_id"] for r in results if r["status"] in ("error", "fail", "warn")]
    reconciled = [r for r in results if "assert_raw_events_reconcile" in r["unique_id"]]
    assert [r["status"] for r in reconciled] == ["pass"]


def test_each_poison_row_is_quarantined_with_the_rule_it_breaks(poisoned):
    rows = query(
        poisoned.warehouse,
        "select event_id, event_type, staging_model, rule_id, reason_code, reason, "
        "landing_date, source_file from staging.stg_quarantined_events",
    )
    by_id = {r[0]: r for r in rows}
    for name, (event_type, _, model, rule_id) in POISON_EVENTS.items():
        row = by_id.pop(poisoned.event_ids[name], None)
        assert row is not None, f"{name} is not in the quarantine"
        assert row[1:4] == (event_type, model, rule_id), name
        assert row[4] and row[5] and row[6] and row[7], name
    # The simulator's data breaks no assumption: only the poison is quarantined.
    assert by_id == {}
    titles = query(
        poisoned.warehouse, "select title_id, rule_id from staging.stg_quarantined_titles"
    )
    expected = {(o["title_id"].strip("'"), r) for o, r in POISON_TITLES.values()}
    assert set(titles) == expected


def test_every_assumption_is_exercised(poisoned):
    """Each rule the quarantine holds has a poison row here, but the columns raw
    declares not null (which no row can break there)."""
    compiled = next(poisoned.target.rglob("stg_quarantined_events.sql")).read_text()
    compiled += next(poisoned.target.rglob("stg_quarantined_titles.sql")).read_text()
    held = set(re.findall(r"cast\('([^']*)' as \w+\) as rule_id", compiled))
    exercised = {rule for *_, rule in POISON_EVENTS.values()}
    exercised |= {rule for _, rule in POISON_TITLES.values()}
    not_null = {f"{'titles.' if t == 'titles' else ''}{c}.required" for t, c in RAW_NOT_NULL}
    assert held - exercised == not_null
    assert exercised <= held
    declared = query(
        poisoned.warehouse,
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'raw' and table_name in ('events', 'titles') "
        "and is_nullable = 'NO'",
    )
    assert RAW_NOT_NULL <= set(declared)


def test_staging_and_marts_leave_the_poison_out(poisoned):
    ids = list(poisoned.event_ids.values())
    marks = ", ".join("?" for _ in ids)
    staged = " union all ".join(
        f"select event_id from staging.{m} where event_id in ({marks})" for m in EVENT_MODELS
    )
    assert query(poisoned.warehouse, staged, ids * len(EVENT_MODELS)) == []
    (longest, furthest, plays) = query(
        poisoned.warehouse,
        "select max(played_s), max(furthest_position_s), count(*) from marts.plays",
    )[0]
    assert plays > 0 and longest <= 86400 and furthest <= 86400
    ratings = query(
        poisoned.warehouse,
        "select count(*) from intermediate.int_user_title_interests "
        "where rating not between 1 and 5",
    )[0][0]
    assert ratings == 0
    titles = query(
        poisoned.warehouse,
        "select count(*) from intermediate.int_titles where title_id in ('t_cooking', 't_short')",
    )[0][0]
    assert titles == 0


def test_the_report_and_the_summary_reconcile_and_show_the_reasons(poisoned, monkeypatch):
    raw = query(poisoned.warehouse, "select count(*) from raw.events")[0][0]
    con = duckdb.connect(str(poisoned.warehouse), read_only=True)
    try:
        q = report.quarantine(con)
    finally:
        con.close()
    assert q["reconciles"] and q["raw_events"] == raw
    assert q["quarantined_events"] == len(POISON_EVENTS)
    assert q["staged_events"] == raw - len(POISON_EVENTS)
    assert q["quarantined_titles"] == len(POISON_TITLES)
    counted = {(r["staging_model"], r["rule_id"]): r["rows"] for r in q["events_by_reason"]}
    assert counted[("stg_player_events", "position_s.maximum")] == 1
    assert counted[("stg_interest_events", "properties.rating.type")] == 2
    assert counted[("stg_account_events", "user_id.required")] == 1
    assert sum(counted.values()) == len(POISON_EVENTS)

    built = report.build(poisoned.warehouse, poisoned.root, poisoned.root / "report.html")
    page = built.path.read_text()
    assert "Quarantined rows" in page and "properties.question_id.required" in page
    assert f"raw {raw:,} = staged {raw - len(POISON_EVENTS):,} + quarantined: holds" in (
        built.markdown()
    )

    monkeypatch.setenv("OTTP_DATA_DIR", str(poisoned.root))
    summary = pipeline.summary()
    assert summary["quarantine"]["quarantined_events"] == len(POISON_EVENTS)
    assert summary["quarantine"]["reconciles"]


def test_a_staging_model_that_drops_rows_breaks_the_reconciliation(poisoned, tmp_path):
    """The reconciliation counts the staging views, so a silent drop shows."""
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(poisoned.warehouse, warehouse)
    con = duckdb.connect(str(warehouse))
    try:
        con.execute(
            "create or replace view staging.stg_survey_responses as "
            "select * from raw.events where false"
        )
        q = report.quarantine(con)
    finally:
        con.close()
    assert not q["reconciles"]
    env = dict(poisoned.env, OTTP_WAREHOUSE_PATH=str(warehouse))
    target = tmp_path / "target"
    shutil.copytree(poisoned.target, target, ignore=shutil.ignore_patterns("logs", "run"))
    result = run_dbt(
        ["test", "--select", "assert_raw_events_reconcile_with_staging_and_quarantine"],
        env,
        target,
        check=False,
    )
    assert result.returncode != 0, result.stdout[-3000:]


def test_the_dagster_check_warns_with_the_count_and_reasons(poisoned):
    from orchestration.defs.report.checks import staging_quarantine
    from orchestration.defs.resources import WarehouseResource

    resource = WarehouseResource(
        data_dir=str(poisoned.root),
        landing_dir=str(poisoned.root / "landing"),
        warehouse_path=str(poisoned.warehouse),
    )
    result = staging_quarantine(warehouse=resource)
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    meta = result.metadata
    assert meta["quarantined_events"].value == len(POISON_EVENTS)
    assert meta["quarantined_titles"].value == len(POISON_TITLES)
    assert meta["reconciles"].value is True
    assert "position_s above 86400" in meta["by_reason"].value
    assert meta["rules"].value["properties.question_id.required"] == 1


def test_the_ingest_job_succeeds_and_its_check_warns(poisoned, tmp_path, monkeypatch):
    """The reported symptom: the ingest run over the poisoned day failed. Now it
    succeeds, and its quarantine check reports a warning."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(poisoned.root / "raw_only.duckdb", data_dir / "warehouse.duckdb")
    monkeypatch.setenv("OTTP_DATA_DIR", str(data_dir))
    monkeypatch.setenv("OTTP_LANDING_DIR", str(poisoned.root / "landing"))
    monkeypatch.setenv("OTTP_DBT_TARGET", "duckdb")
    from orchestration.definitions import defs as load_defs

    days = landing.partition_dates(poisoned.root / "landing")
    tags = {
        "dagster/asset_partition_range_start": days[0].isoformat(),
        "dagster/asset_partition_range_end": days[-1].isoformat(),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        result = (
            load_defs()
            .resolve_job_def("ingest")
            .execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        )
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    warning = checks["staging_quarantine"]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert warning.metadata["quarantined_events"].value == len(POISON_EVENTS)
    assert all(e.passed for name, e in checks.items() if name != "staging_quarantine")


def test_postgres_quarantines_the_same_rows(poisoned, postgres_database):  # noqa: F811
    """The same poisoned raw tables on PostgreSQL: the build passes and the
    quarantine holds the same rows with the same rules as on DuckDB."""
    import psycopg2

    from ottp.ingest.pg_mirror import mirror_raw_to_postgres

    dsn = " ".join(f"{k}={v}" for k, v in {**PG, "dbname": postgres_database}.items())
    mirror_raw_to_postgres(poisoned.root / "raw_only.duckdb", dsn)
    env = dict(poisoned.env, OTTP_DBT_TARGET="postgres", OTTP_PG_DATABASE=postgres_database)
    build = run_dbt(BUILD, env, poisoned.root / "target_pg", check=False)
    assert build.returncode == 0, build.stdout[-6000:]
    sql_events = (
        "select event_id, staging_model, rule_id, reason_code from staging.stg_quarantined_events"
    )
    sql_titles = "select title_id, rule_id from staging.stg_quarantined_titles"
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql_events)
            pg_events = set(cur.fetchall())
            cur.execute(sql_titles)
            pg_titles = set(cur.fetchall())
    finally:
        conn.close()
    assert pg_events == set(query(poisoned.warehouse, sql_events))
    assert len(pg_events) == len(POISON_EVENTS)
    assert pg_titles == set(query(poisoned.warehouse, sql_titles))


_SPARK_POISON = """
import json, sys
from ottp import spark
s = spark.session('poison')
events, titles = sys.argv[1], sys.argv[2]
columns = [c for c in s.table('raw.events').columns if c != 'load_id']
s.read.parquet(events).createOrReplaceTempView('poison_events')
s.sql('insert into raw.events partition (load_id = \\'poison\\') select '
      + ', '.join(columns) + ' from poison_events')
columns = [c for c in s.table('raw.titles').columns if c != 'load_id']
s.read.parquet(titles).createOrReplaceTempView('poison_titles')
s.sql('insert into raw.titles partition (load_id = \\'poison\\') select '
      + ', '.join(columns) + ' from poison_titles')
"""
_SPARK_READ = """
import json
from ottp import spark
s = spark.session('read')
events = s.sql('select event_id, staging_model, rule_id, reason_code '
               'from staging.stg_quarantined_events').collect()
titles = s.sql('select title_id, rule_id from staging.stg_quarantined_titles').collect()
print(json.dumps({'events': [list(r) for r in events], 'titles': [list(r) for r in titles]}))
"""


def test_spark_quarantines_the_same_rows(poisoned, tmp_path, spark_steps):
    """On Spark: the same landing files through the Spark loader, the same poison
    rows added to its raw tables; the build passes and the quarantine holds the
    same rows with the same rules as on DuckDB."""
    from ottp.config import DBT_PROJECT_DIR

    ids = list(poisoned.event_ids.values())
    con = duckdb.connect(str(poisoned.root / "raw_only.duckdb"), read_only=True)
    try:
        marks = ", ".join("?" for _ in ids)
        con.execute(
            f"copy (select * exclude (load_id) replace (cast(event_id as varchar) as event_id, "
            f"cast(properties as varchar) as properties) from raw.events "
            f"where event_id in ({marks})) to '{tmp_path}/events.parquet' (format parquet)",
            ids,
        )
        con.execute(
            "copy (select * exclude (load_id) from raw.titles "
            "where title_id in ('t_cooking', 't_short')) "
            f"to '{tmp_path}/titles.parquet' (format parquet)"
        )
    finally:
        con.close()

    def run(step: str, result, ok: tuple[int, ...] = (0,)):
        if result.returncode not in ok:
            pytest.fail(f"{step}\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}")
        return result

    spark_steps.reset()
    # exit status 1: the simulator's malformed lines were rejected (as on DuckDB)
    landing_dir = str(poisoned.root / "landing")
    load = run("spark_load", spark_steps.spark_load(["--landing", landing_dir, "--json"]), (0, 1))
    assert json.loads(load.stdout.strip().splitlines()[-1])["reconciles"]
    run("poison", spark_steps.python(
        _SPARK_POISON, [f"{tmp_path}/events.parquet", f"{tmp_path}/titles.parquet"]
    ))  # fmt: skip
    target = tmp_path / "target"
    run("dbt build", spark_steps.dbt([*BUILD,
        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(target), "--log-path", str(target / "logs")],
        {"OTTP_SPARK_THREADS": "2"}))  # fmt: skip
    read = json.loads(run("read", spark_steps.python(_SPARK_READ)).stdout.strip().splitlines()[-1])
    spark_events = {tuple(r) for r in read["events"]}
    duck_events = set(
        query(
            poisoned.warehouse,
            "select event_id, staging_model, rule_id, reason_code "
            "from staging.stg_quarantined_events",
        )
    )
    assert spark_events == duck_events
    assert len(spark_events) == len(POISON_EVENTS)
    duck_titles = set(
        query(poisoned.warehouse, "select title_id, rule_id from staging.stg_quarantined_titles")
    )
    assert {tuple(r) for r in read["titles"]} == duck_titles
