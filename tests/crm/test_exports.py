"""The CRM export models end to end on simulated data: dbt, pseudonymisation, gates, sync.

One small warehouse is built once per test session (simulate, load, dbt:
tests/crm/conftest.py) and copied here; the recommender's
tables are stand-ins made in SQL so this test depends only on their columns.
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import duckdb
import psycopg2
import pytest
import yaml

from ottp import cli, config, privacy
from ottp.crm import contract, gates, sync
from ottp.crm.targets import PostgresTarget, SqliteTarget
from ottp.ingest import load
from tests.conftest import make_event, write_landing
from tests.crm.conftest import crm_dbt_run, crm_environment
from tests.crm.test_sync import PG, PG_URL, fingerprint, target_rows

EXPORTS_DIR = config.DBT_PROJECT_DIR / "models" / "exports"

STAND_IN_ML = """
create schema if not exists ml;
create or replace table ml.recommendations as
with watched as (
    select distinct user_id, title_id from marts.plays where is_valid_play
), candidates as (
    select users.user_id, titles.title_id,
        (hash(users.user_id, titles.title_id) % 1000) / 1000.0 as score
    from marts.users as users cross join marts.titles as titles
    where not users.is_deleted and titles.is_available
      and not exists (select 1 from watched as w
                      where w.user_id = users.user_id and w.title_id = titles.title_id)
)
select user_id,
    cast(row_number() over (partition by user_id order by score desc, title_id) as integer) as rank,
    title_id, cast(score as float) as score, 'Recommended for you' as reason,
    cast(null as varchar) as reason_title_id, 'model' as source, 'stand-in' as model_version
from candidates
qualify rank <= 8;
create or replace table ml.similar_titles as
select a.title_id,
    cast(row_number() over (partition by a.title_id order by b.title_id) as integer) as rank,
    b.title_id as similar_title_id, cast(0.5 as float) as score
from marts.titles as a join marts.titles as b
    on a.category = b.category and a.title_id <> b.title_id
where a.is_available and b.is_available
qualify rank <= 4;
create or replace table ml.user_taste_clusters as
select user_id, cast(hash(user_id) % 4 as integer) as cluster_id,
    'Cluster ' || (hash(user_id) % 4) as cluster_name from marts.users;
create or replace table ml.churn_risk as
select user_id, (hash(user_id) % 100) / 100.0 as churn_risk,
    case when hash(user_id) % 100 >= 50 then 'high'
         when hash(user_id) % 100 >= 25 then 'medium' else 'low' end as risk_band
from marts.users;
"""


def dbt(*args: str) -> None:
    cmd = [
        config.dbt_executable(),
        *args,
        "--quiet",
        "--project-dir",
        str(config.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(config.DBT_PROJECT_DIR),
        "--target-path",
        str(Path(config.settings().data_dir) / "dbt_target"),
    ]
    proc = subprocess.run(cmd, **crm_dbt_run(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def rebuild(warehouse: Path) -> None:
    """What a pipeline run does: marts, recommender, pseudonymisation, exports."""
    dbt(
        "build",
        "--exclude",
        "path:models/exports",
        "--exclude-resource-type",
        "test",
        "--exclude-resource-type",
        "unit_test",
    )
    con = duckdb.connect(str(warehouse))
    con.execute(STAND_IN_ML)
    con.close()
    privacy.pseudonymise_deleted_users(warehouse)
    dbt("build", "--select", "path:models/exports")


def query(warehouse: Path, sql: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def built(crm_build):
    """The session's CRM warehouse (tests/crm/conftest.py), a fresh copy: tests below change it."""
    root = crm_build.checkout()
    mp = pytest.MonkeyPatch()
    crm_environment(mp, root)
    yield root, root / "warehouse.duckdb"
    mp.undo()


@pytest.fixture(scope="module")
def targets(built):
    root, _ = built
    out = [SqliteTarget(root / "crm" / "crm.sqlite")]
    schema = f"test_exports_{uuid.uuid4().hex[:8]}"
    if PG:
        out.append(PostgresTarget(PG_URL, schema))
    yield out
    if PG:
        con = psycopg2.connect(PG_URL)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'drop schema if exists "{schema}" cascade')
        con.close()


def test_the_models_have_exactly_the_contract_columns():
    models = yaml.safe_load((EXPORTS_DIR / "_exports__models.yml").read_text())["models"]
    documented = {m["name"]: [c["name"] for c in m["columns"]] for m in models}
    for spec in contract.TABLES:
        assert documented[spec.name] == spec.column_names, spec.name
    for name in documented:
        assert (EXPORTS_DIR / f"{name}.sql").exists()


def test_the_built_exports_have_the_contract_types_in_contract_order(built):
    _, warehouse = built
    for spec in contract.TABLES:
        built_columns = query(
            warehouse,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'exports' and table_name = ? order by ordinal_position",
            [spec.name],
        )
        expected = [
            (
                c.name,
                str(duckdb.sql(f"select cast(null as {c.sql_type(contract.DUCKDB)})").types[0]),
            )
            for c in spec.columns
        ]
        assert built_columns == expected, spec.name


def test_exports_hold_only_contactable_users(built):
    _, warehouse = built
    contacts = query(warehouse, "select count(*) from exports.crm_contacts")[0][0]
    assert contacts > 0
    leaks = query(
        warehouse,
        """
        select 'contacts', count(*) from exports.crm_contacts as c
            join marts.users as u using (user_id) where not u.is_contactable
        union all select 'recommendations', count(*) from exports.crm_recommendations
            where user_id not in (select user_id from exports.crm_contacts)
        union all select 'triggers', count(*) from exports.crm_triggers
            where user_id not in (select user_id from exports.crm_contacts)
        union all select 'deleted', count(*) from exports.crm_contacts as c
            join marts.users as u using (user_id) where u.is_deleted
    """,
    )
    assert all(n == 0 for _, n in leaks), leaks
    scenarios = {
        r[0] for r in query(warehouse, "select distinct scenario from exports.crm_trigger_log")
    }
    assert {"became_fan", "at_risk"} <= scenarios


def test_gates_pass_and_both_targets_receive_the_exports(built, targets):
    _, warehouse = built
    verdicts = gates.validate(warehouse_path=warehouse, last_sync=None)
    assert all(g.success for g in verdicts.values()), {
        t: g.summary_markdown() for t, g in verdicts.items() if not g.success
    }
    for target in targets:
        result = sync.sync(target, warehouse_path=warehouse)
        assert result.status == "success" and result.total("rejected") == 0
        assert sync.sync(target, warehouse_path=warehouse).status == "unchanged"


def test_the_command_line_checks_then_syncs(built, targets, capsys):
    # the default target is the SQLite file under OTTP_DATA_DIR: targets[0]
    assert cli.main(["sync", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "quality gate crm_recommendations: passed" in out
    assert ": dry_run in" in out
    assert cli.main(["sync"]) == 0
    assert ": unchanged in" in capsys.readouterr().out


def test_a_failed_gate_blocks_the_dagster_sync_and_the_target_keeps_its_state(built, targets):
    import dagster as dg
    from dagster_dbt import DbtCliResource

    from orchestration.defs.crm.assets import crm_sync, export_models
    from orchestration.defs.crm.checks import crm_quality_gates
    from orchestration.defs.resources import WarehouseResource
    from orchestration.lib.dbt.project import dbt_project

    root, warehouse = built
    sqlite_target = targets[0]
    before = fingerprint(sqlite_target)
    con = duckdb.connect(str(warehouse))
    # A recommender bug: a contact is recommended a title they already watched.
    con.execute("""
        create or replace table ml.recommendations_backup as select * from ml.recommendations;
        insert into ml.recommendations
        select p.user_id, 9, p.title_id, 0.1, 'bug', null, 'model', 'stand-in'
        from marts.plays as p join exports.crm_contacts as c using (user_id)
        where p.is_valid_play limit 1
    """)
    con.close()
    try:
        s = config.settings()
        result = dg.materialize(
            [export_models, crm_quality_gates, crm_sync],
            resources={
                "warehouse": WarehouseResource(
                    data_dir=str(s.data_dir),
                    landing_dir=str(s.landing_dir),
                    warehouse_path=str(s.warehouse_path),
                ),
                "dbt": DbtCliResource(
                    project_dir=dbt_project,
                    target="duckdb",
                    dbt_executable=config.dbt_executable(),
                ),
            },
            raise_on_error=False,
        )
        checks = {
            e.asset_check_evaluation_data.asset_key.path[-1]: e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        assert checks["crm_recommendations"].passed is False
        summary = checks["crm_recommendations"].metadata["summary"].value
        assert "none already watched" in summary
        assert checks["crm_contacts"].passed is True
        synced = {
            e.asset_key.path[0]
            for e in result.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION"
        }
        assert "crm" not in synced
        assert fingerprint(sqlite_target) == before
    finally:
        con = duckdb.connect(str(warehouse))
        con.execute(
            "create or replace table ml.recommendations as "
            "select * from ml.recommendations_backup; "
            "drop table ml.recommendations_backup"
        )
        con.close()
        dbt("build", "--select", "path:models/exports")


def test_opt_out_and_a_late_deletion_flow_through_to_the_crm(built, targets):
    root, warehouse = built
    log_before = dict(query(warehouse, "select trigger_id, fired_at from exports.crm_trigger_log"))
    # two exported contacts with recommendations: one opts out, one asks for deletion
    opted_out, deleted = [
        r[0]
        for r in query(
            warehouse,
            """
        select user_id from exports.crm_contacts where recommendation_count > 0
        order by user_id limit 2""",
        )
    ]
    assert all(opted_out in {r[0] for r in target_rows(t, "crm_contacts")} for t in targets)
    deleted_rows = query(warehouse, "select count(*) from raw.events where user_id = ?", [deleted])
    last = query(warehouse, "select max(received_at) from raw.events")[0][0]
    at = (last + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    write_landing(
        root / "landing",
        [
            make_event(
                event_type="consent_update",
                user_id=opted_out,
                occurred_at=at,
                received_at=at,
                properties={"marketing_opt_in": False},
            ),
            make_event(
                event_type="deletion_request",
                user_id=deleted,
                occurred_at=at,
                received_at=at,
                properties=None,
            ),
        ],
        day=last.date(),
        name="part-crm-consent.ndjson.gz",
    )
    load.load_landing(warehouse, root / "landing")
    rebuild(warehouse)

    # the warehouse keeps the deleted user's id only in the deletion request
    assert query(warehouse, "select event_type from raw.events where user_id = ?", [deleted]) == [
        ("deletion_request",)
    ]
    pseudonyms = query(
        warehouse, "select pseudonym from raw.deleted_users where deletion_requested_at > ?", [last]
    )
    assert len(pseudonyms) == 1
    assert (
        query(warehouse, "select count(*) from raw.events where user_id = ?", [pseudonyms[0][0]])[
            0
        ][0]
        == deleted_rows[0][0]
    )
    for table in ("plays", "sessions", "user_segments"):
        assert (
            query(warehouse, f"select count(*) from marts.{table} where user_id = ?", [deleted])[0][
                0
            ]
            == 0
        )
    assert load.reconciliation(warehouse)["reconciles"]

    # triggers: nothing re-fired, earlier ones keep their first firing time
    log_after = dict(query(warehouse, "select trigger_id, fired_at from exports.crm_trigger_log"))
    assert {k: log_after[k] for k in log_before if k in log_after} == {
        k: v for k, v in log_before.items() if k in log_after
    }
    assert len(log_after) == len(
        query(warehouse, "select distinct trigger_id from exports.crm_trigger_log")
    )

    verdicts = gates.validate(warehouse_path=warehouse, target=targets[0])
    assert all(g.success for g in verdicts.values())
    for target in targets:
        result = sync.sync(target, warehouse_path=warehouse)
        assert result.status == "success"
        contacts = {t.table: t for t in result.tables}["crm_contacts"]
        assert contacts.deleted >= 2
        for spec in contract.TABLES:
            if "user_id" in spec.column_names:
                i = spec.column_names.index("user_id")
                users = {r[i] for r in target_rows(target, spec.name)}
                assert not users & {opted_out, deleted}, spec.name

    # a second build on the same data fires nothing new and syncs nothing
    dbt("build", "--select", "path:models/exports")
    assert dict(query(warehouse, "select trigger_id, fired_at from exports.crm_trigger_log")) == (
        log_after
    )
    for target in targets:
        assert sync.sync(target, warehouse_path=warehouse).status == "unchanged"
