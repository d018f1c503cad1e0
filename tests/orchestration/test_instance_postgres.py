"""The Dagster instance on the local PostgreSQL server: runs, event logs, schedules, pools."""

from __future__ import annotations

import os
import uuid

import psycopg2
import pytest

from ottp import instance
from tests.conftest import make_event, write_landing

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _server_up() -> bool:
    try:
        psycopg2.connect(ADMIN_URL, connect_timeout=3).close()
        return True
    except psycopg2.Error:
        return False


if not _server_up():
    if os.environ.get("CI"):
        pytest.fail("PostgreSQL must run on 127.0.0.1:5432 in CI (.ci/run starts it)")
    pytest.skip("no PostgreSQL at 127.0.0.1:5432", allow_module_level=True)


@pytest.fixture
def pg_instance_db(data_dir, monkeypatch):
    name = f"ottp_dagster_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    monkeypatch.setenv(instance.POSTGRES_URL_VAR, url)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    yield url
    with admin.cursor() as cur:
        cur.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [name]
        )
        cur.execute(f'drop database if exists "{name}"')
    admin.close()


def test_runs_event_logs_schedules_and_pools_live_in_postgres(pg_instance_db, data_dir):
    import dagster as dg

    from orchestration.definitions import defs

    day = "2026-08-01"
    write_landing(
        data_dir / "landing",
        [make_event(), make_event(event_type="search", properties={"query": "x"})],
    )
    instance.prepare_dagster_home()
    with dg.DagsterInstance.get() as inst:
        assert type(inst.run_storage).__name__ == "PostgresRunStorage"
        assert type(inst.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(inst.schedule_storage).__name__ == "PostgresScheduleStorage"
        result = (
            defs()
            .resolve_job_def("ingest")
            .execute_in_process(instance=inst, partition_key=day, raise_on_error=False)
        )
        assert result.success
        run_id = result.run_id

    con = psycopg2.connect(pg_instance_db)
    try:
        with con.cursor() as cur:
            cur.execute("select status from runs where run_id = %s", [run_id])
            assert cur.fetchone() == ("SUCCESS",)
            cur.execute(
                "select count(*) from event_logs where run_id = %s "
                "and dagster_event_type = 'ASSET_MATERIALIZATION'",
                [run_id],
            )
            assert cur.fetchone()[0] >= 4  # the four raw tables, then staging and int models
            cur.execute(
                "select partition, count(*) from event_logs where asset_key = %s "
                "and dagster_event_type = 'ASSET_MATERIALIZATION' group by 1",
                ['["raw", "events"]'],
            )
            assert cur.fetchall() == [(day, 1)]
            # schedule storage: its tables are in this database
            cur.execute(
                "select count(*) from information_schema.tables "
                "where table_name in ('instigators', 'job_ticks')"
            )
            assert cur.fetchone()[0] == 2
            # pools: the DuckDB writer pool allows one step at a time
            cur.execute(
                "select concurrency_key, count(*) from concurrency_slots group by 1 order by 1"
            )
            slots = dict(cur.fetchall())
            assert slots[instance.WRITER_POOL] == 1
    finally:
        con.close()
