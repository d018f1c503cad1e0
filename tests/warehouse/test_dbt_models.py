"""The dbt models on a small simulated data set.

One session-scoped warehouse: days 1..N-1 are loaded and the incremental models
built, day N (late events included) arrives and they run incrementally, their
rows are kept aside, then a full-refresh ``dbt build`` (every model, data test
and unit test) runs on the same data. The tests then check that build, that the
incremental run equals the full refresh, that the manifest holds the tests the
yml files declare, a few invariants straight from the tables, and the same build
on a real PostgreSQL server.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from ottp.config import DBT_PROJECT_DIR, SEEDS_DIR, dbt_executable
from ottp.ingest import landing
from ottp.ingest.load import load_files
from tests.conftest import BUILD_INCREMENTAL, INCREMENTAL_MODELS

WAREHOUSE_FILE = "warehouse.duckdb"
SIM = dict(users=200, titles=150, days=21, seed=7, dirty_rate=0.01)
MODEL_DIRS = ("intermediate", "marts")
# The CRM exports read the recommender's tables, which Dagster writes outside dbt.
SCOPE = ["--exclude", "exports"]
PG = dict(host="127.0.0.1", port=5432, user="postgres", dbname="test")
# Keys a column may carry in a models yml; anything else is a typo that
# silently drops what it was meant to declare (a test, most of the time).
COLUMN_KEYS = {
    "name",
    "description",
    "data_tests",
    "data_type",
    "meta",
    "config",
    "constraints",
    "quote",
    "tags",
}
MODEL_KEYS = {
    "name",
    "description",
    "columns",
    "data_tests",
    "config",
    "meta",
    "docs",
    "access",
    "constraints",
    "latest_version",
    "versions",
    "deprecation_date",
}


@dataclass
class Built:
    root: Path
    warehouse: Path
    env: dict[str, str]
    target_path: Path
    build: subprocess.CompletedProcess
    late_events_last_day: int


def run_dbt(
    args: list[str],
    env: dict[str, str],
    target_path: Path,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    cmd = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
    ]
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        pytest.fail(
            f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
        )
    return result


def query(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    from ottp.simulator import simulate

    root = tmp_path_factory.mktemp("dbt_models")
    landing_dir = root / "landing"
    simulate(landing_dir, **SIM)
    warehouse = root / WAREHOUSE_FILE
    target_path = root / "target"
    env = dict(
        os.environ,
        # relative to each dbt process's working directory: dbt keeps a saved parse only
        # for the same profile values, so copies of the warehouse under the same file
        # name (in another folder) start from the fixture's saved parse
        OTTP_WAREHOUSE_PATH=WAREHOUSE_FILE,
        OTTP_DBT_TARGET="duckdb",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )

    files = landing.discover(landing_dir)
    last_day = max(f.partition_date for f in files)
    load_files(warehouse, [f for f in files if f.partition_date < last_day])
    run_dbt(BUILD_INCREMENTAL, env, target_path, cwd=root)

    load_files(warehouse, [f for f in files if f.partition_date == last_day])
    late = query(
        warehouse,
        "select count(*) from raw.events where landing_date = ? "
        "and epoch(received_at) - epoch(occurred_at) > 86400",
        [last_day],
    )[0][0]
    # the tables between them (user_title_interests) are rebuilt, the incremental
    # models run incrementally
    run_dbt(BUILD_INCREMENTAL, env, target_path, cwd=root)
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("create schema if not exists compare")
        for model in INCREMENTAL_MODELS:
            con.execute(f"create table compare.{model} as select * from intermediate.{model}")
    finally:
        con.close()

    build = run_dbt(["build", "--full-refresh", *SCOPE], env, target_path, check=False, cwd=root)
    return Built(root, warehouse, env, target_path, build, late)


def test_dbt_build_passes(built):
    assert built.build.returncode == 0, built.build.stdout[-6000:]
    results = json.loads((built.target_path / "run_results.json").read_text())["results"]
    failed = [r["unique_id"] for r in results if r["status"] in ("error", "fail")]
    assert not failed
    assert len(results) > 200


@pytest.mark.parametrize("model", INCREMENTAL_MODELS)
def test_incremental_run_equals_full_refresh(built, model):
    assert built.late_events_last_day > 0, "the last day should bring late events"
    incremental = f"compare.{model}"
    full = f"intermediate.{model}"
    rows = query(built.warehouse, f"select count(*) from {full}")[0][0]
    assert rows > 100
    for a, b in ((incremental, full), (full, incremental)):
        extra = query(
            built.warehouse,
            f"select count(*) from (select * from {a} except all select * from {b}) as d",
        )[0][0]
        assert extra == 0, f"{extra} rows of {a} are not in {b}"


def _declared_tests() -> tuple[dict[str, int], int, int, list[str]]:
    """Generic tests per model, column checks (a not_null_columns test checks each of
    its columns) and unit tests, as the yml files declare them; and typos."""
    per_model: dict[str, int] = {}
    unit_tests = checks = 0
    problems: list[str] = []
    for folder in MODEL_DIRS:
        for path in sorted((DBT_PROJECT_DIR / "models" / folder).rglob("*.yml")):
            doc = yaml.safe_load(path.read_text())
            unit_tests += len(doc.get("unit_tests", []))
            for model in doc.get("models", []):
                problems += [f"{path.name}: {model['name']}.{k}" for k in set(model) - MODEL_KEYS]
                n = len(model.get("data_tests", []))
                for test in model.get("data_tests", []):
                    if isinstance(test, dict) and "not_null_columns" in test:
                        checks += len(test["not_null_columns"]["arguments"]["columns"]) - 1
                for column in model.get("columns", []):
                    problems += [
                        f"{path.name}: {model['name']}.{column['name']}.{k}"
                        for k in set(column) - COLUMN_KEYS
                    ]
                    n += len(column.get("data_tests", []))
                per_model[model["name"]] = n
                checks += n
    return per_model, unit_tests, checks, problems


def test_manifest_holds_every_declared_test(built):
    declared, declared_unit_tests, declared_checks, problems = _declared_tests()
    assert not problems, f"unknown keys (misspelled?): {problems}"
    manifest = json.loads((built.target_path / "manifest.json").read_text())
    model_files = {
        n["name"]: n["original_file_path"]
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model"
        and n["original_file_path"].startswith(tuple(f"models/{d}/" for d in MODEL_DIRS))
    }
    assert set(declared) == set(model_files), "every model has a yml entry and vice versa"

    generic: dict[str, int] = {name: 0 for name in model_files}
    keyed: set[str] = set()
    singular = 0
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test":
            continue
        meta = node.get("test_metadata")
        if not meta:
            singular += 1
            continue
        attached = node.get("attached_node") or ""
        name = attached.split(".")[-1]
        if attached.startswith("model.") and name in generic:
            generic[name] += 1
            if meta["name"] in ("unique", "unique_combination_of_columns"):
                keyed.add(name)
    assert generic == declared
    assert keyed == set(model_files), f"no primary-key test: {set(model_files) - keyed}"
    unit = [n for n in manifest.get("unit_tests", {}).values() if n["model"] in model_files]
    assert len(unit) == declared_unit_tests >= 12
    assert singular == len(list((DBT_PROJECT_DIR / "tests").glob("*.sql"))) >= 3
    assert declared_checks >= 250


def _thresholds() -> list[tuple[int, str]]:
    with open(SEEDS_DIR / "segment_thresholds.csv", newline="") as f:
        return sorted((int(r["min_titles_watched"]), r["segment"]) for r in csv.DictReader(f))


def test_fan_segments_follow_the_seed(built):
    rows = query(
        built.warehouse, "select titles_watched, segment from marts.user_category_segments"
    )
    assert rows
    thresholds = _thresholds()
    assert thresholds == [(6, "fan"), (50, "hardcore_fan")]
    for titles_watched, segment in rows:
        expected = "casual"
        for minimum, name in thresholds:
            if titles_watched >= minimum:
                expected = name
        assert segment == expected, (titles_watched, segment)
    assert {s for _, s in rows} >= {"casual", "fan"}


def test_sessions_do_not_overlap_and_respect_the_gap(built):
    overlaps = query(
        built.warehouse,
        """
        select count(*) from (
            select
                started_at,
                lag(ended_at) over (partition by actor_id order by started_at) as prev
            from intermediate.int_sessions
        ) as s
        where prev is not null and epoch(started_at) - epoch(prev) <= 30 * 60
    """,
    )[0][0]
    assert overlaps == 0
    longest = query(built.warehouse, "select max(duration_s) from marts.sessions")[0][0]
    # session_max_hours: longer sessions are likely bots, left out of the mart
    assert longest <= 20 * 3600
    bots = query(
        built.warehouse, "select count(*) from intermediate.int_sessions where is_likely_bot"
    )[0][0]
    assert bots > 0, "the simulator's bots should be flagged"


def test_plays_are_consistent(built):
    (bad_time, bad_pct, no_session, plays, valid) = query(
        built.warehouse,
        """
        select
            count(*) filter (where played_s > epoch(ended_at) - epoch(started_at) + 0.001),
            count(*) filter (where furthest_pct < 0 or furthest_pct > 1),
            count(*) filter (where is_valid_play and session_id is null),
            count(*),
            count(*) filter (where is_valid_play)
        from marts.plays
    """,
    )[0]
    assert plays > 500 and valid > plays / 2
    assert bad_time == bad_pct == no_session == 0
    engagement = query(built.warehouse, "select sum(play_count) from marts.title_engagement")[0][0]
    assert engagement == plays


def test_users_dimension_takes_the_latest_consent(built):
    mismatches = query(
        built.warehouse,
        """
        with latest as (
            select user_id, is_marketing_opt_in,
                   row_number() over (partition by user_id
                                      order by occurred_at desc, event_id desc) as rn
            from staging.stg_account_events where event_type = 'consent_update'
        )
        select count(*)
        from latest join marts.users using (user_id)
        where latest.rn = 1 and latest.is_marketing_opt_in <> users.is_marketing_opt_in
    """,
    )[0][0]
    assert mismatches == 0
    deleted_in_crm_marts = query(
        built.warehouse,
        """
        select count(*) from marts.continue_watching join marts.users using (user_id)
        where users.is_deleted
    """,
    )[0][0]
    assert deleted_in_crm_marts == 0


def _mart_counts_duckdb(path: Path) -> dict[str, int]:
    tables = [
        t
        for (t,) in query(
            path,
            "select table_name from information_schema.tables "
            "where table_schema = 'marts' order by 1",
        )
    ]
    return {t: query(path, f'select count(*) from marts."{t}"')[0][0] for t in tables}


def test_every_mart_has_rows(built):
    counts = _mart_counts_duckdb(built.warehouse)
    assert len(counts) >= 16
    assert all(n > 0 for n in counts.values()), counts


@pytest.fixture(scope="session")
def postgres_database():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable on {PG['host']}:{PG['port']}: {exc}")
    admin.autocommit = True
    # A database of its own: nothing another run (or another test) keeps in
    # "test" is touched, and dropping it cleans everything.
    name = f"ottp_dbt_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


@dataclass
class PostgresBuilt:
    dsn: str
    copied_events: int


@pytest.fixture(scope="session")
def postgres_built(built, postgres_database, tmp_path_factory) -> PostgresBuilt:
    """The DuckDB fixture's steps on PostgreSQL: the incremental models built on the
    raw tables without the last landing day, run again once it arrives (late
    events included), kept aside in schema compare, then a full-refresh build."""
    import psycopg2

    from ottp.ingest.pg_mirror import mirror_raw_to_postgres

    dsn = " ".join(f"{k}={v}" for k, v in {**PG, "dbname": postgres_database}.items())
    env = dict(built.env, OTTP_DBT_TARGET="postgres", OTTP_PG_DATABASE=postgres_database)
    target = built.root / "target_pg"

    before_last_day = tmp_path_factory.mktemp("pg_days") / "warehouse.duckdb"
    shutil.copy(built.warehouse, before_last_day)
    con = duckdb.connect(str(before_last_day))
    try:
        con.execute(
            "delete from raw.events where landing_date = (select max(landing_date) from raw.events)"
        )
    finally:
        con.close()
    mirror_raw_to_postgres(before_last_day, dsn)
    run_dbt(BUILD_INCREMENTAL, env, target)

    # the mirror drops the raw tables with the staging views on them: the
    # selection recreates those and runs the incremental models incrementally
    copied = mirror_raw_to_postgres(built.warehouse, dsn)
    run_dbt(BUILD_INCREMENTAL, env, target)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("create schema compare")
            for model in INCREMENTAL_MODELS:
                cur.execute(f"create table compare.{model} as select * from intermediate.{model}")
    finally:
        conn.close()

    run_dbt(["build", "--full-refresh", *SCOPE], env, target)
    return PostgresBuilt(dsn, copied["events"])


def test_postgres_build_matches_duckdb(built, postgres_built):
    import psycopg2

    assert (
        postgres_built.copied_events
        == query(built.warehouse, "select count(*) from raw.events")[0][0]
    )
    expected = _mart_counts_duckdb(built.warehouse)
    conn = psycopg2.connect(postgres_built.dsn)
    try:
        with conn.cursor() as cur:
            actual = {}
            for table in expected:
                cur.execute(f'select count(*) from marts."{table}"')
                actual[table] = cur.fetchone()[0]
            cur.execute(
                "select round(sum(played_s)::numeric, 3), sum(backward_seek_count) from marts.plays"
            )
            pg_plays = tuple(float(x) for x in cur.fetchone())
    finally:
        conn.close()
    assert actual == expected
    duck_plays = query(
        built.warehouse, "select round(sum(played_s), 3), sum(backward_seek_count) from marts.plays"
    )[0]
    assert pg_plays == pytest.approx(tuple(float(x) for x in duck_plays))


@pytest.mark.parametrize("model", INCREMENTAL_MODELS)
def test_postgres_incremental_run_equals_full_refresh(postgres_built, model):
    import psycopg2

    conn = psycopg2.connect(postgres_built.dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f"select count(*) from intermediate.{model}")
            rows = cur.fetchone()[0]
            differences = []
            incremental, full = f"compare.{model}", f"intermediate.{model}"
            for a, b in ((incremental, full), (full, incremental)):
                cur.execute(
                    f"select count(*) from (select * from {a} except all select * from {b}) as d"
                )
                differences.append(cur.fetchone()[0])
    finally:
        conn.close()
    assert rows > 100
    assert differences == [0, 0], (
        f"{model}: rows only in (incremental, full refresh): {differences}"
    )


def test_a_daily_runs_staging_tests_look_at_its_landing_days_only(built, tmp_path):
    """A duplicate event_id on the first landing day: a run over the last day does
    not rescan it, a run over the first day and a build without vars both catch it."""
    warehouse = tmp_path / WAREHOUSE_FILE
    shutil.copy(built.warehouse, warehouse)
    env = built.env
    days = [
        d for (d,) in query(warehouse, "select distinct landing_date from raw.events order by 1")
    ]
    first, last = days[0], days[-1]
    con = duckdb.connect(str(warehouse))
    try:
        con.execute(
            "insert into raw.events select * from raw.events "
            "where landing_date = ? and event_type = 'play_start' limit 1",
            [first],
        )
    finally:
        con.close()
    target = tmp_path / "target"
    shutil.copytree(built.target_path, target, ignore=shutil.ignore_patterns("logs", "run"))
    selection = ["test", "--select", "source:raw.events", "stg_player_events"]

    def failing(window: tuple | None, via: str = "env") -> set[str]:
        args, run_env = list(selection), dict(env)
        if window and via == "env":  # as Dagster passes it
            run_env.update(OTTP_MIN_DATE=window[0].isoformat(), OTTP_MAX_DATE=window[1].isoformat())
        elif window:
            dates = {"min_date": window[0].isoformat(), "max_date": window[1].isoformat()}
            args += ["--vars", json.dumps(dates)]
        result = run_dbt(args, run_env, target, check=False, cwd=tmp_path)
        results = json.loads((target / "run_results.json").read_text())["results"]
        assert len(results) >= 6, result.stdout[-3000:]
        return {r["unique_id"].split(".")[2] for r in results if r["status"] == "fail"}

    duplicate_tests = {"source_unique_raw_events_event_id", "unique_stg_player_events_event_id"}
    # The calls without --vars come first: they all start from the copied target's
    # saved parse; each new --vars makes dbt parse the whole project again.
    assert failing((last, last + timedelta(days=1))) == set()
    assert failing((first, first + timedelta(days=1))) == duplicate_tests
    # a malformed window stops the run with a reason, not a silent full scan
    bad = run_dbt(
        selection,
        dict(env, OTTP_MIN_DATE="yesterday", OTTP_MAX_DATE="today"),
        target,
        check=False,
        cwd=tmp_path,
    )
    assert bad.returncode != 0
    assert "OTTP_MIN_DATE/OTTP_MAX_DATE (environment) must be YYYY-MM-DD; got yesterday" in (
        bad.stdout
    ), bad.stdout[-3000:]
    assert failing(None) == duplicate_tests
    assert failing((first, first + timedelta(days=1)), via="vars") == duplicate_tests
    assert failing((last, last + timedelta(days=1)), via="vars") == set()


def test_a_models_not_null_columns_are_checked_in_one_test_that_names_them(built, tmp_path):
    """Nulls in two columns of marts.sessions: the model's one not_null_columns test
    fails, counts every null cell and names both columns; the other tests pass."""
    warehouse = tmp_path / WAREHOUSE_FILE
    shutil.copy(built.warehouse, warehouse)
    env = built.env
    con = duckdb.connect(str(warehouse))
    try:
        ids = [r[0] for r in con.sql("select session_id from marts.sessions limit 3").fetchall()]
        # marts.sessions is a view over int_sessions
        con.execute(
            "update intermediate.int_sessions set device_id = null where session_id in (?, ?)",
            ids[:2],
        )
        con.execute(
            "update intermediate.int_sessions set ended_at = null where session_id = ?", ids[2:]
        )
    finally:
        con.close()
    target = tmp_path / "target"
    shutil.copytree(built.target_path, target, ignore=shutil.ignore_patterns("logs", "run"))
    # eager: also the tests sessions shares with plays and users, whatever an earlier
    # test in this process left in DBT_INDIRECT_SELECTION.
    run_dbt(
        ["test", "--select", "sessions", "--store-failures", "--indirect-selection", "eager"],
        env,
        target,
        check=False,
        cwd=tmp_path,
    )
    results = json.loads((target / "run_results.json").read_text())["results"]
    failed = {r["unique_id"].split(".")[2]: r for r in results if r["status"] == "fail"}
    assert len(results) >= 5
    assert [name.startswith("not_null_columns_sessions_") for name in failed] == [True], failed
    assert next(iter(failed.values()))["failures"] == 3
    stored = query(
        warehouse,
        "select table_schema, table_name from information_schema.tables "
        "where table_name like 'not_null_columns_sessions%'",
    )
    assert len(stored) == 1
    rows = query(
        warehouse,
        f'select null_column, null_rows from "{stored[0][0]}"."{stored[0][1]}" order by 1',
    )
    assert rows == [("device_id", 2), ("ended_at", 1)]


def test_title_engagement_daily_follows_changes_to_the_days_they_touch(built, tmp_path):
    """Two late changes whose old rows sit on other days than the new ones: a like
    replaced by a dislike given on a later day (the old day loses a like), and a
    session that late page views stretch past session_max_hours (its plays leave the
    plays mart as a bot's). The incremental run recomputes the days they touch and
    equals a full refresh."""
    warehouse = tmp_path / WAREHOUSE_FILE
    shutil.copy(built.warehouse, warehouse)
    loaded_at = datetime.now(UTC).replace(tzinfo=None)
    con = duckdb.connect(str(warehouse))
    try:
        user_id, title_id, liked_on = con.execute(
            "select user_id, title_id, cast(reacted_at as date) from marts.user_title_interests "
            "where reaction = 'like' order by reacted_at, user_id, title_id limit 1"
        ).fetchall()[0]
        latest, last_landing = con.execute(
            "select max(occurred_at), max(landing_date) from raw.events"
        ).fetchall()[0]
        con.execute(
            """
            insert into raw.events
            select * replace (
                uuid() as event_id, 'dislike' as event_type,
                $latest + interval 1 hour as occurred_at,
                $latest + interval 1 hour as received_at,
                $landing as landing_date, 'late_changes' as load_id,
                $loaded_at as loaded_at
            )
            from raw.events
            where event_type = 'like' and user_id = $user and title_id = $title
            order by occurred_at desc
            limit 1
            """,
            {
                "latest": latest,
                "landing": last_landing + timedelta(days=1),
                "loaded_at": loaded_at,
                "user": user_id,
                "title": title_id,
            },
        )
        # a recent session with valid plays, within the incremental lookback
        actor, started_at, play_day = con.execute(
            """
            select sessions.user_id, sessions.started_at, min(plays.play_date)
            from marts.sessions
            inner join marts.plays using (session_id)
            where plays.is_valid_play and sessions.user_id is not null
              and sessions.started_at >= $latest - interval 3 day
              and sessions.user_id in (
                  select user_id from raw.events where event_type = 'page_view'
              )
            group by all
            order by count(*) desc, sessions.user_id, sessions.started_at
            limit 1
            """,
            {"latest": latest},
        ).fetchall()[0]
        con.execute(
            """
            insert into raw.events
            select template.* replace (
                uuid() as event_id,
                $started + step * interval 25 minute as occurred_at,
                $started + step * interval 25 minute as received_at,
                $landing as landing_date, 'late_changes' as load_id,
                $loaded_at as loaded_at
            )
            from (
                select * from raw.events
                where event_type = 'page_view' and user_id = $user
                order by occurred_at
                limit 1
            ) as template
            cross join range(1, 60) as steps(step)
            """,
            {
                "started": started_at,
                "landing": last_landing + timedelta(days=1),
                "loaded_at": loaded_at,
                "user": actor,
            },
        )
        con.execute(
            "create table compare.title_days_before as select * from marts.title_engagement_daily"
        )
    finally:
        con.close()
    target = tmp_path / "target"
    shutil.copytree(built.target_path, target, ignore=shutil.ignore_patterns("logs", "run"))
    run_dbt(BUILD_INCREMENTAL, built.env, target, cwd=tmp_path)
    con = duckdb.connect(str(warehouse))
    try:
        con.execute(
            "create table compare.title_days_incremental as "
            "select * from intermediate.int_title_engagement_daily"
        )
    finally:
        con.close()
    run_dbt(
        [*BUILD_INCREMENTAL[:5], "--full-refresh", "--select", "int_title_engagement_daily"],
        built.env,
        target,
        cwd=tmp_path,
    )
    changes = query(
        warehouse,
        """
        select
            (select count(*) from (
                select * from compare.title_days_incremental
                except all select * from intermediate.int_title_engagement_daily)),
            (select count(*) from (
                select * from intermediate.int_title_engagement_daily
                except all select * from compare.title_days_incremental)),
            (select sum(like_count) from compare.title_days_before
                where title_id = $title and activity_date = $liked_on)
                - (select sum(like_count) from marts.title_engagement_daily
                   where title_id = $title and activity_date = $liked_on),
            (select sum(play_count) from compare.title_days_before where activity_date = $day)
                - (select sum(play_count) from marts.title_engagement_daily
                   where activity_date = $day)
        """,
        {"title": title_id, "liked_on": liked_on, "day": play_day},
    )[0]
    assert changes[:2] == (0, 0), f"rows only in (incremental, full refresh): {changes[:2]}"
    # the old day lost its like, the bot's day its plays
    assert changes[2] == 1
    assert changes[3] > 0


def test_heartbeats_give_play_time_back_when_play_starts_and_resumes_are_lost(built, tmp_path):
    """Heartbeats come only while playing: with every play_start and resume of the data
    lost, the heartbeats and end events still give (almost) every play its time: what
    follows a pause whose resume was lost counts, and a play loses at most the stretch
    before its first heartbeat (one heartbeat interval, 60 s)."""
    warehouse = tmp_path / WAREHOUSE_FILE
    shutil.copy(built.warehouse, warehouse)
    env = built.env
    con = duckdb.connect(str(warehouse))
    try:
        lost = con.execute(
            "delete from raw.events where event_type in ('play_start', 'resume')"
        ).fetchall()[0][0]
        con.execute("create table compare.int_plays_kept as select * from intermediate.int_plays")
    finally:
        con.close()
    assert lost > 1000
    target = tmp_path / "target"
    shutil.copytree(built.target_path, target, ignore=shutil.ignore_patterns("logs", "run"))
    run_dbt(["run", "--select", "int_plays", "--full-refresh"], env, target, cwd=tmp_path)
    plays, off_by_more, kept_s, left_s, kept_valid, left_valid = query(
        warehouse,
        """
        select
            count(*),
            count(*) filter (where abs(left_plays.played_s - kept.played_s) > 60.001),
            sum(kept.played_s),
            sum(left_plays.played_s),
            count(*) filter (where kept.is_valid_play),
            count(*) filter (where left_plays.is_valid_play)
        from intermediate.int_plays as left_plays
        inner join compare.int_plays_kept as kept using (playback_id)
        """,
    )[0]
    assert plays > 500
    # a play that lost other events too (a heartbeat, a seek) may be further off
    assert off_by_more <= plays * 0.005, (off_by_more, plays)
    assert kept_s - 60 * plays <= left_s <= kept_s
    assert left_valid >= kept_valid * 0.95


def test_title_transitions_count_every_viewing(built):
    """Each valid play followed by the user's next valid play of another title, in the
    same session or within 24 h of its end, is one transition: a rewatch of X that
    precedes Y counts from the rewatch, however long ago X was first played."""
    expected, rewatch_anchored = query(
        built.warehouse,
        """
        with pairs as (
            select
                user_id,
                title_id,
                session_id,
                ended_at,
                lag(title_id) over next_play as previous_title_id,
                lead(title_id) over next_play as next_title_id,
                lead(session_id) over next_play as next_session_id,
                lead(started_at) over next_play as next_started_at
            from marts.plays
            where is_valid_play
            window next_play as (partition by user_id order by started_at, playback_id)
        )
        select
            count(*),
            count(*) filter (where previous_title_id = title_id and session_id <> next_session_id)
        from pairs
        where next_title_id <> title_id
            and (session_id = next_session_id
                 or epoch(next_started_at) - epoch(ended_at) <= 24 * 3600)
        """,
    )[0]
    counted = query(built.warehouse, "select sum(transition_count) from marts.title_transitions")
    assert expected > 100
    assert rewatch_anchored > 0, "the data should hold a rewatch followed by another title"
    assert counted[0][0] == expected


def test_pauses_keep_each_position_and_the_most_paused_scene(built):
    """marts.pauses holds every pause event of the plays in marts.plays, at the position
    the player reported; title_engagement counts them and names the 60 s scene with
    the most pauses."""
    missing, extra, pauses, counted = query(
        built.warehouse,
        """
        with events as (
            select e.playback_id, e.position_s
            from staging.stg_player_events as e
            inner join marts.plays as p using (playback_id)
            where e.event_type = 'pause'
        ),
        kept as (select playback_id, position_s from marts.pauses)
        select
            (select count(*) from (select * from events except all select * from kept)),
            (select count(*) from (select * from kept except all select * from events)),
            (select count(*) from marts.pauses),
            (select sum(pause_count) from marts.title_engagement)
        """,
    )[0]
    assert pauses > 50
    assert missing == extra == 0
    assert counted == pauses
    wrong_scene = query(
        built.warehouse,
        """
        with scenes as (
            select title_id, floor(position_s / 60) * 60 as scene_start_s, count(*) as n
            from marts.pauses group by 1, 2
        ),
        best as (select title_id, max(n) as n from scenes group by 1)
        select count(*)
        from marts.title_engagement as t
        left join best using (title_id)
        left join scenes as s
            on s.title_id = t.title_id and s.scene_start_s = t.most_paused_scene_s
        where coalesce(t.most_paused_scene_pause_count, 0) <> coalesce(best.n, 0)
            or coalesce(s.n, 0) <> coalesce(best.n, 0)
        """,
    )[0][0]
    assert wrong_scene == 0
