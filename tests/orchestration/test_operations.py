"""Operating the platform: daily partitions and their dbt window, automation, pools, the
BI snapshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from ottp import config, instance
from ottp.bi import snapshot
from tests.conftest import make_event, write_landing
from tests.orchestration.conftest import DEMO_DAYS, DEMO_FIRST_DAY

FIRST_DAY = DEMO_FIRST_DAY
DAYS = DEMO_DAYS


@pytest.fixture(scope="module")
def built(demo_build, demo_checkout):
    """A small warehouse built by the demo path: ingest of every day, then the rest (the
    session's demo build, tests/orchestration/conftest.py; a fresh copy, changed here)."""
    runs = demo_build.details["runs"]
    assert [r.success for r in runs] == [True, True], runs
    return demo_checkout, runs


def _defs():
    from orchestration.definitions import defs

    return defs()


def test_the_ingest_run_covers_every_landing_day_in_one_run(built):
    root, runs = built
    ingest_run = runs[0]
    with dg.DagsterInstance.get() as inst:
        for key in (
            ["raw", "events"],
            ["intermediate", "int_sessions"],
            ["staging", "stg_player_events"],
        ):
            partitions = inst.get_materialized_partitions(dg.AssetKey(key))
            expected = {(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(DAYS)}
            assert expected <= partitions, (key, sorted(partitions))
        # one dbt invocation for the whole range: the window spans it, passed as
        # environment variables, not --vars (which would force a full re-parse)
        messages = [e.user_message or "" for e in inst.all_logs(ingest_run.run_id)]
        commands = [m for m in messages if "Running dbt command" in m]
        assert len(commands) == 1, commands
        assert "--vars" not in commands[0]
        assert "unit_test" in commands[0]  # production builds leave unit tests to CI
        last = (FIRST_DAY + timedelta(days=DAYS)).isoformat()
        windows = [m for m in messages if m.startswith("Landing window:")]
        assert windows == [
            f"Landing window: OTTP_MIN_DATE={FIRST_DAY.isoformat()}, OTTP_MAX_DATE={last}"
        ]


def test_a_new_landing_file_is_followed_by_automation_up_to_the_crm(built):
    root, _ = built
    defs = _defs()
    with dg.DagsterInstance.get() as inst:
        first = dg.evaluate_automation_conditions(defs=defs, instance=inst)
        # everything is up to date: nothing to do
        assert first.total_requested == 0, first.total_requested

        new_day = FIRST_DAY + timedelta(days=DAYS)
        write_landing(
            root / "landing",
            [
                make_event(
                    occurred_at=f"{new_day}T09:00:00.000Z",
                    received_at=f"{new_day}T09:00:01.000Z",
                )
            ],
            day=new_day,
        )
        result = defs.resolve_job_def("ingest").execute_in_process(
            instance=inst, partition_key=new_day.isoformat(), raise_on_error=False
        )
        assert result.success

        after = dg.evaluate_automation_conditions(defs=defs, instance=inst, cursor=first.cursor)
        requested = {
            key
            for key in defs.resolve_asset_graph().get_all_asset_keys()
            if after.get_num_requested(key)
        }
        for key in (
            ["marts", "sessions"],
            ["marts", "user_segments"],
            ["ml", "recommendations"],
            ["exports", "crm_contacts"],
            ["crm", "crm_contacts"],
            ["bi", "marts_snapshot"],
            ["quality", "pipeline_report"],
        ):
            assert dg.AssetKey(key) in requested, key
        # retraining waits for its daily cron tick
        assert dg.AssetKey(["ml", "model_evaluation"]) not in requested
        assert dg.AssetKey(["ml", "recommender_model"]) not in requested
        # the daily layer is started by the sensor and the schedule, not by automation
        assert dg.AssetKey(["raw", "events"]) not in requested


def test_automation_waits_for_a_running_ingest_then_requests_everything_at_once(built):
    # A range ingest still running holds everything after the daily layer back; once
    # it has ended, the whole graph after it is requested in one tick (one run).
    root, _ = built
    defs = _defs()
    with dg.DagsterInstance.get() as inst:
        first = dg.evaluate_automation_conditions(defs=defs, instance=inst)
        new_day = FIRST_DAY + timedelta(days=DAYS + 1)
        write_landing(
            root / "landing",
            [
                make_event(
                    occurred_at=f"{new_day}T10:00:00.000Z",
                    received_at=f"{new_day}T10:00:01.000Z",
                )
            ],
            day=new_day,
        )
        result = defs.resolve_job_def("ingest").execute_in_process(
            instance=inst, partition_key=new_day.isoformat(), raise_on_error=False
        )
        assert result.success
        graph = defs.resolve_asset_graph()

        def requested(evaluation) -> set[str]:
            return {
                k.to_user_string()
                for k in graph.get_all_asset_keys()
                if evaluation.get_num_requested(k)
            }

        # another ingest (the sensor's next range) is queued: nothing starts yet
        pending = inst.create_run_for_job(
            job_def=defs.resolve_job_def("ingest"), tags={"dagster/partition": str(new_day)}
        )
        held = dg.evaluate_automation_conditions(defs=defs, instance=inst, cursor=first.cursor)
        assert held.total_requested == 0, requested(held)

        inst.report_run_canceled(pending)
        after = dg.evaluate_automation_conditions(defs=defs, instance=inst, cursor=held.cursor)
        assert {
            "raw/deleted_users",
            "marts/sessions",
            "ml/recommendations",
            "exports/crm_contacts",
            "crm/crm_contacts",
        } <= requested(after)


def test_freshness_checks_cover_marts_exports_and_the_crm():
    defs = _defs()
    checks = {key for key in defs.resolve_asset_graph().asset_check_keys if "freshness" in key.name}
    checked = {key.asset_key.path[0] for key in checks}
    assert {"marts", "exports", "crm"} <= checked
    sensors = {s.name for s in defs.sensors}
    assert {"freshness_checks", "warehouse_automation", "new_landing_files"} <= sensors


def test_writer_pools_follow_the_engine(monkeypatch, data_dir):
    monkeypatch.setenv("OTTP_DBT_TARGET", "duckdb")
    assert instance.dbt_pool() == instance.WRITER_POOL
    assert instance.pool_limits()[instance.WRITER_POOL] == 1
    monkeypatch.setenv("OTTP_DBT_TARGET", "postgres")
    monkeypatch.setenv("OTTP_WAREHOUSE_WRITERS", "3")
    assert instance.dbt_pool() == instance.ENGINE_POOL
    assert instance.pool_limits() == {instance.WRITER_POOL: 1, instance.ENGINE_POOL: 3}
    monkeypatch.setenv("OTTP_WAREHOUSE_WRITERS", "zero")
    with pytest.raises(ValueError, match="OTTP_WAREHOUSE_WRITERS"):
        config.settings()


def test_every_step_that_opens_the_duckdb_file_shares_one_pool(built):
    defs = _defs()
    pools = {}
    for assets_def in defs.resolve_asset_graph().assets_defs:
        if assets_def.is_executable:
            for key in assets_def.keys:
                pools[key] = assets_def.op.pool
    with dg.DagsterInstance.get() as inst:
        info = inst.event_log_storage.get_concurrency_info(instance.WRITER_POOL)
        assert info.slot_count == 1
    # every asset opens the DuckDB file (dbt does on the duckdb target)
    outside = [k.to_user_string() for k, p in pools.items() if p != instance.WRITER_POOL]
    assert not outside, f"assets outside the writer pool: {outside}"


def test_the_snapshot_holds_every_mart_with_its_row_count(built):
    root, _ = built
    con = snapshot.open_snapshot()
    try:
        listed = dict(con.execute("select table_name, row_count from _snapshot.tables").fetchall())
        info = con.execute("select published_at, run_id from _snapshot.info").fetchone()
        stored = {
            name: con.execute(f"select count(*) from {name}").fetchone()[0] for name in listed
        }
    finally:
        con.close()
    warehouse = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        kinds = dict(
            warehouse.execute(
                "select 'marts.' || table_name, table_type from information_schema.tables "
                "where table_schema = 'marts' and table_type in ('BASE TABLE', 'VIEW')"
            ).fetchall()
        )
        live = {
            name: warehouse.execute(f"select count(*) from {name}").fetchone()[0] for name in kinds
        }
    finally:
        warehouse.close()
    # every mart, views included (their rows are stored as tables), as counted
    assert set(listed) == set(kinds)
    assert stored == listed
    assert any(kind == "VIEW" for kind in kinds.values())
    # The tables change only when the marts are rebuilt, and the snapshot is published
    # after them; the views (plays, sessions, pauses) follow the daily layer at once, so
    # an ingest since (an earlier test of this module runs one) may have added rows.
    tables = {name for name, kind in kinds.items() if kind == "BASE TABLE"}
    assert {n: listed[n] for n in tables} == {n: live[n] for n in tables}
    assert all(live[n] >= listed[n] for n in kinds.keys() - tables)
    assert info[1], "the snapshot records the run that published it"


_READER = """
import pathlib, sys, time, duckdb
path, stop = sys.argv[1], pathlib.Path(sys.argv[2])
reads, stamps, errors = 0, set(), []
while not stop.exists():
    try:
        con = duckdb.connect(path, read_only=True)
        try:
            stamps.add(str(con.execute("select published_at from _snapshot.info").fetchone()[0]))
            for name, expected in con.execute(
                "select table_name, row_count from _snapshot.tables"
            ).fetchall():
                actual = con.execute(f"select count(*) from {name}").fetchone()[0]
                if actual != expected:
                    errors.append(f"{name}: {actual} rows, the snapshot lists {expected}")
        finally:
            con.close()
        reads += 1
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    time.sleep(0.25)  # reads of every mart: a faster pace takes CPU from the build
print(reads, len(stamps), len(errors))
for e in errors[:5]:
    print(e)
"""


def test_a_bi_reader_gets_consistent_marts_while_a_build_runs(built, tmp_path):
    before = snapshot.open_snapshot()
    first_stamp = before.execute("select published_at from _snapshot.info").fetchone()[0]
    before.close()
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(config.settings().bi_snapshot_path), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # the demo's build: it holds the warehouse's write lock most of the time
        build = subprocess.run(
            [sys.executable, "-m", "ottp.cli", "demo"],
            cwd=config.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        time.sleep(1)  # a few reads of the new snapshot
    finally:
        stop.touch()
    out, _ = reader.communicate(timeout=120)
    lines = out.splitlines()
    reads, snapshots_seen, errors = (int(x) for x in lines[0].split())
    assert errors == 0, lines
    assert reads > 10, lines
    # the reader saw the snapshot before the build and the one it published
    assert snapshots_seen >= 2, lines
    after = snapshot.open_snapshot()
    last_stamp = after.execute("select published_at from _snapshot.info").fetchone()[0]
    after.close()
    assert last_stamp > first_stamp


def test_the_sensor_starts_one_run_for_every_changed_day(data_dir):
    from orchestration.defs.ingest.sensors import new_landing_files

    landing_dir = data_dir / "landing"
    write_landing(landing_dir, [make_event()], day=FIRST_DAY)
    write_landing(landing_dir, [make_event()], day=FIRST_DAY + timedelta(days=2))
    with dg.instance_for_test() as inst:
        context = dg.build_sensor_context(instance=inst)
        first = new_landing_files(context)
        assert isinstance(first, dg.RunRequest)
        assert first.partition_key_range == dg.PartitionKeyRange("2026-08-01", "2026-08-03")
        cursor = context.cursor

        context = dg.build_sensor_context(instance=inst, cursor=cursor)
        assert isinstance(new_landing_files(context), dg.SkipReason)

        # a re-delivered (changed) file of one day: a run of that day alone
        write_landing(landing_dir, [make_event(), make_event()], day=FIRST_DAY + timedelta(days=2))
        context = dg.build_sensor_context(instance=inst, cursor=cursor)
        again = new_landing_files(context)
        assert again.partition_key == "2026-08-03"
        assert again.run_key != first.run_key


def test_a_backfill_is_one_run_and_leaves_the_sessions_as_they_were(built):
    from ottp import cli

    root, _ = built
    query = "select * from intermediate.int_sessions order by session_id"
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    before = con.execute(query).fetchall()
    con.close()
    with dg.DagsterInstance.get() as inst:
        runs_before = len(inst.get_run_records())
    assert cli.main(["backfill", "--from", "2026-08-01", "--to", "2026-08-03", "--daily-only"]) == 0
    with dg.DagsterInstance.get() as inst:
        records = inst.get_run_records()
        assert len(records) == runs_before + 1
        tags = records[0].dagster_run.tags
        assert tags["dagster/asset_partition_range_start"] == "2026-08-01"
        assert tags["dagster/asset_partition_range_end"] == "2026-08-03"
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    after = con.execute(query).fetchall()
    con.close()
    # the same events: rebuilding three days gives back the same sessions, ids included
    assert after == before


def test_engines_with_several_writers_backfill_a_week_per_run(tmp_path):
    # a fresh interpreter: the backfill policy and the pool are read when definitions load
    code = (
        "from orchestration.defs.dbt.assets import daily_models, warehouse_models\n"
        "p = daily_models.backfill_policy\n"
        "print(p.policy_type.value, p.max_partitions_per_run, daily_models.op.pool, "
        "warehouse_models.op.pool)\n"
    )
    script = tmp_path / "policy.py"
    script.write_text(code)
    env = {
        **os.environ,
        "OTTP_DATA_DIR": str(tmp_path),
        "OTTP_DBT_TARGET": "postgres",
        "OTTP_WAREHOUSE_WRITERS": "3",
    }
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=config.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["MULTI_RUN", "7", instance.ENGINE_POOL, instance.ENGINE_POOL]
    env["OTTP_DBT_TARGET"] = "duckdb"
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=config.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.stdout.split() == ["SINGLE_RUN", "None", instance.WRITER_POOL, instance.WRITER_POOL]


def test_dbt_docs_are_generated_from_the_built_warehouse(built):
    from orchestration.lib.dbt.build import saved_parse_path

    root, _ = built
    target = root / "dbt-docs"
    # from the warehouse's saved parse (its builds' --target included): no full parse
    target.mkdir()
    shutil.copyfile(saved_parse_path(), target / saved_parse_path().name)
    out = subprocess.run(
        [
            config.dbt_executable(),
            "docs",
            "generate",
            "--target",
            config.settings().dbt_target,
            "--profiles-dir",
            str(config.DBT_PROJECT_DIR),
            "--project-dir",
            str(config.DBT_PROJECT_DIR),
            "--target-path",
            str(target),
        ],
        cwd=config.DBT_PROJECT_DIR,
        env=config.dbt_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    catalog = json.loads((target / "catalog.json").read_text())
    assert "model.ottp.user_segments" in catalog["nodes"]
    assert (target / "index.html").exists()


def test_automation_never_has_to_split_an_unsplittable_asset():
    # Automation requests assets one by one; a multi-asset that cannot run a subset
    # must have keys that always change together (the same inputs), or its tick fails.
    graph = _defs().resolve_asset_graph()
    for assets_def in graph.assets_defs:
        if assets_def.is_executable and len(assets_def.keys) > 1 and not assets_def.can_subset:
            parents = {frozenset(graph.get(key).parent_keys) for key in assets_def.keys}
            assert len(parents) == 1, f"{assets_def.node_def.name}: keys with different inputs"


def test_after_the_first_ingest_automation_reaches_the_crm_in_one_run(data_dir, monkeypatch):
    from ottp.simulator import simulate

    # a new instance of its own, not the module's built one
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    simulate(data_dir / "landing", users=30, titles=20, days=2, seed=4, dirty_rate=0.0)
    instance.prepare_dagster_home()
    defs = _defs()
    graph = defs.resolve_asset_graph()

    def requested(result) -> set[str]:
        return {
            k.to_user_string() for k in graph.get_all_asset_keys() if result.get_num_requested(k)
        }

    with dg.DagsterInstance.get() as inst:
        before = dg.evaluate_automation_conditions(defs=defs, instance=inst)
        assert before.total_requested == 0, "nothing runs before the first file is loaded"
        result = defs.resolve_job_def("ingest").execute_in_process(
            instance=inst,
            tags={
                "dagster/asset_partition_range_start": "2026-08-01",
                "dagster/asset_partition_range_end": "2026-08-02",
            },
        )
        assert result.success

        # first tick: marts, the snapshot, the first model (no 04:00 wait on a new
        # install), scoring, the exports, the sync (which runs the gates itself) and
        # the report: one run from the first file to the CRM
        first = dg.evaluate_automation_conditions(defs=defs, instance=inst, cursor=before.cursor)
        first_keys = requested(first)
        assert {
            "marts/sessions",
            "bi/marts_snapshot",
            "ml/model_evaluation",
            "ml/recommender_model",
            "ml/recommendations",
            "exports/crm_contacts",
            "crm/crm_contacts",
            "quality/pipeline_report",
        } <= first_keys
        run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=inst,
            asset_selection=[dg.AssetKey.from_user_string(k) for k in first_keys],
            raise_on_error=False,
        )
        assert run.success
        # and then nothing more until new data arrives
        second = dg.evaluate_automation_conditions(defs=defs, instance=inst, cursor=first.cursor)
        assert not {"marts/sessions", "crm/crm_contacts"} & requested(second)
