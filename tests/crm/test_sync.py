"""The CRM sync engine against both targets: the SQLite file and the real PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg2
import pytest

from ottp import config
from ottp.crm import appliers, contract, sync
from ottp.crm.targets import PostgresTarget, SqliteTarget, target_from_url

PG_URL = os.environ.get("OTTP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        psycopg2.connect(PG_URL, connect_timeout=3).close()
        return True
    except psycopg2.Error:
        return False


PG = _pg_available()
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def build_exports(path: Path, users: int = 50, recs: int = 5, *, changes: str = "") -> None:
    """A warehouse file holding the four export tables (and the as_of they come from)."""
    con = duckdb.connect(str(path))
    con.execute("create schema if not exists exports; create schema if not exists marts")
    con.execute(
        "create or replace table marts.user_lifecycle as "
        "select timestamp '2026-09-30 12:00:00' as as_of_at"
    )
    con.execute(
        f"""
        create or replace table exports.crm_contacts as
        select 'u_' || lpad(i::varchar, 4, '0') as user_id, 'active' as lifecycle_stage,
            'active' as subscription_status, 'fan' as highest_segment,
            'drama' as fan_categories, null::varchar as hardcore_fan_categories,
            'drama' as top_category, 'drama,kids' as top_categories,
            (i % 3)::integer as taste_cluster_id, 'Drama & Kids' as taste_cluster_name,
            0.25 as churn_risk, 'medium' as churn_risk_band, 't_1' as favourite_title_id,
            'Film ''quoted'', with "commas"' as favourite_title_name, 7 as titles_watched,
            9 as valid_play_count, 1 as fan_category_count, 0 as hardcore_fan_category_count,
            {recs} as recommendation_count, 1.5 as pauses_per_hour_watched,
            timestamp '2026-08-01 10:00:00' as signed_up_at,
            timestamp '2026-09-29 21:14:03.25' as last_active_at
        from range({users}) as t(i)
        """
    )
    con.execute(
        f"""
        create or replace table exports.crm_recommendations as
        select c.user_id, r::integer as rank, 't_' || (r * 7) as title_id,
            'Title ' || r as title_name, 1.0 / r as score,
            'Because you watched Film' as reason, 't_1' as reason_title_id
        from exports.crm_contacts as c, range(1, {recs + 1}) as t(r)
        """
    )
    con.execute(
        """
        create or replace table exports.crm_similar_titles as
        select 't_' || i as title_id, r::integer as rank, 't_' || (i + r) as similar_title_id,
            'Title ' || (i + r) as similar_title_name, 0.5 as score
        from range(20) as a(i), range(1, 4) as b(r)
        """
    )
    con.execute(
        """
        create or replace table exports.crm_triggers as
        select md5(user_id) as trigger_id, user_id, 'became_fan' as scenario,
            'category' as subject_type, 'drama' as subject_id, 'Drama' as subject_name,
            'drama' as category, null::varchar as cancel_reason,
            null::varchar as cancel_reason_description,
            null::boolean as is_cancel_reason_addressable,
            timestamp '2026-09-28 10:00:00' as occurred_at,
            timestamp '2026-09-30 12:00:00' as fired_at
        from exports.crm_contacts
        where user_id < 'u_0010'
        """
    )
    if changes:
        con.execute(changes)
    add_row_hashes(con)
    con.close()


def add_row_hashes(con) -> None:
    """Each export table's _row_hash, as the export models compute it (last column)."""
    for spec in contract.TABLES:
        table = f"exports.{spec.name}"
        columns = {r[0] for r in con.execute(f"describe {table}").fetchall()}
        rest = "* exclude (_row_hash)" if contract.ROW_HASH in columns else "*"
        con.execute(
            f"create or replace table {table} as "
            f"select {rest}, {contract.row_hash_sql(spec)} as _row_hash from {table}"
        )


# One insert, one update and one delete in each user-level table.
CHANGE_SET = """
    delete from exports.crm_contacts where user_id = 'u_0003';
    delete from exports.crm_recommendations where user_id = 'u_0003';
    delete from exports.crm_triggers where user_id = 'u_0003';
    update exports.crm_contacts set lifecycle_stage = 'at_risk', churn_risk = 0.75,
        churn_risk_band = 'high' where user_id = 'u_0004';
    update exports.crm_recommendations set title_id = 't_999', title_name = null
        where user_id = 'u_0004' and rank = 2;
    insert into exports.crm_contacts
        select * replace ('u_9000' as user_id) from exports.crm_contacts where user_id = 'u_0001';
    insert into exports.crm_recommendations
        select * replace ('u_9000' as user_id) from exports.crm_recommendations
        where user_id = 'u_0001';
"""


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql", marks=pytest.mark.skipif(not PG, reason="no PostgreSQL at 127.0.0.1:5432")
        ),
    ]
)
def target(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteTarget(tmp_path / "crm" / "crm.sqlite")
        return
    schema = f"test_crm_{uuid.uuid4().hex[:10]}"
    yield PostgresTarget(PG_URL, schema)
    con = psycopg2.connect(PG_URL)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'drop schema if exists "{schema}" cascade')
    con.close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("OTTP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(config.CRM_DATABASE_URL_VAR, raising=False)
    warehouse = tmp_path / "warehouse.duckdb"
    build_exports(warehouse)
    return warehouse


def run(target, warehouse, **kwargs) -> sync.SyncResult:
    return sync.sync(target, warehouse_path=warehouse, **kwargs)


def target_rows(target, table: str) -> list[tuple]:
    """Every row of a CRM table (contract columns, key order), as plain values."""
    spec = contract.TABLES_BY_NAME[table]
    cols = ", ".join(f'"{c}"' for c in spec.column_names)
    keys = ", ".join(f'"{k}"' for k in spec.key)
    if isinstance(target, SqliteTarget):
        con = sqlite3.connect(target.path)
        rows = con.execute(f"select {cols} from {table} order by {keys}").fetchall()
        con.close()
        return [tuple(_norm(v) for v in r) for r in rows]
    con = psycopg2.connect(PG_URL)
    with con.cursor() as cur:
        cur.execute(f'select {cols} from "{target.schema}"."{table}" order by {keys}')
        rows = cur.fetchall()
    con.close()
    return [tuple(_norm(v) for v in r) for r in rows]


def source_rows(warehouse: Path, table: str) -> list[tuple]:
    spec = contract.TABLES_BY_NAME[table]
    cols = ", ".join(f'"{c}"' for c in spec.column_names)
    keys = ", ".join(f'"{k}"' for k in spec.key)
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute(f"select {cols} from exports.{table} order by {keys}").fetchall()
    con.close()
    return [tuple(_norm(v) for v in r) for r in rows]


def _norm(v):
    # Empty text is sent as null. SQLite keeps timestamps as ISO text and booleans as 0/1.
    if v == "":
        return None
    if isinstance(v, str) and TIMESTAMP.match(v):
        v = datetime.fromisoformat(v)
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, float | Decimal):
        return round(float(v), 9)
    return v


def history(target) -> list[tuple]:
    query = "select run_id, status, inserted, updated, deleted, unchanged, rejected, error"
    if isinstance(target, SqliteTarget):
        con = sqlite3.connect(target.path)
        rows = con.execute(f"{query} from sync_history order by started_at").fetchall()
        con.close()
        return rows
    con = psycopg2.connect(PG_URL)
    with con.cursor() as cur:
        cur.execute(f'{query} from "{target.schema}".sync_history order by started_at')
        rows = cur.fetchall()
    con.close()
    return rows


def fingerprint(target) -> str:
    """Changes whenever anything is written to the target."""
    if isinstance(target, SqliteTarget):
        parts = [p for p in (target.path, Path(f"{target.path}-wal")) if p.exists()]
        return hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    con = psycopg2.connect(PG_URL)
    with con.cursor() as cur:
        cur.execute(
            "select string_agg(relname || ':' || xmins, ',' order by relname) from ("
            "  select 'h' as relname, string_agg(xmin::text, ',' order by run_id) as xmins "
            f'  from "{target.schema}".sync_history'
            "  union all select 'c', string_agg(xmin::text, ',' order by user_id) "
            f'  from "{target.schema}".crm_contacts'
            "  union all select 'r', string_agg(xmin::text, ',' order by user_id, rank) "
            f'  from "{target.schema}".crm_recommendations) as x'
        )
        value = cur.fetchone()[0]
    con.close()
    return value


def assert_mirrors_source(target, warehouse) -> None:
    for spec in contract.TABLES:
        assert target_rows(target, spec.name) == source_rows(warehouse, spec.name), spec.name


def test_first_sync_copies_every_row_and_records_history(target, env):
    result = run(target, env)
    assert result.status == "success"
    counts = {t.table: (t.inserted, t.updated, t.deleted, t.unchanged) for t in result.tables}
    assert counts == {
        "crm_contacts": (50, 0, 0, 0),
        "crm_recommendations": (250, 0, 0, 0),
        "crm_similar_titles": (60, 0, 0, 0),
        "crm_triggers": (10, 0, 0, 0),
    }
    assert_mirrors_source(target, env)
    assert history(target) == [(result.run_id, "success", 370, 0, 0, 0, 0, None)]
    last = appliers.last_successful_sync(target)
    assert last.run_id == result.run_id
    assert last.row_counts["crm_recommendations"] == 250
    assert str(last.source_as_of) == "2026-09-30 12:00:00"


def test_resync_of_unchanged_data_writes_nothing(target, env):
    run(target, env)
    before = fingerprint(target)
    again = run(target, env)
    assert again.status == "unchanged"
    assert again.changes == 0 and again.total("unchanged") == 370
    assert fingerprint(target) == before
    assert len(history(target)) == 1


def test_change_set_is_applied_as_inserts_updates_and_deletes(target, env):
    run(target, env)
    build_exports(env, changes=CHANGE_SET)
    preview = run(target, env, dry_run=True)
    assert preview.status == "dry_run"
    before = fingerprint(target)
    assert fingerprint(target) == before  # a dry run writes nothing
    result = run(target, env)
    counts = {t.table: (t.inserted, t.updated, t.deleted, t.unchanged) for t in result.tables}
    assert counts == {
        "crm_contacts": (1, 1, 1, 48),
        "crm_recommendations": (5, 1, 5, 244),
        "crm_similar_titles": (0, 0, 0, 60),
        "crm_triggers": (0, 0, 1, 9),
    }
    assert [(t.inserted, t.updated, t.deleted) for t in preview.tables] == [
        (t.inserted, t.updated, t.deleted) for t in result.tables
    ]
    assert result.tables[0].sample_keys == {
        "insert": [{"user_id": "u_9000"}],
        "update": [{"user_id": "u_0004"}],
        "delete": [{"user_id": "u_0003"}],
    }
    assert_mirrors_source(target, env)
    assert run(target, env).status == "unchanged"


def test_rejected_rows_are_reported_with_key_and_reason_and_keep_their_old_version(target, env):
    run(target, env)
    old_u5 = [r for r in target_rows(target, "crm_contacts") if r[0] == "u_0005"]
    build_exports(
        env,
        changes="""
        update exports.crm_contacts set churn_risk = 7 where user_id = 'u_0005';
        update exports.crm_recommendations set title_id = null
            where user_id = 'u_0006' and rank = 1;
        update exports.crm_recommendations set title_name = 'bad' || chr(0)
            where user_id = 'u_0007' and rank = 2;
        insert into exports.crm_similar_titles values ('t_1', 1, 't_5', 'dup', 0.1);
        update exports.crm_similar_titles set rank = 0 where title_id = 't_2' and rank = 3;
        update exports.crm_contacts set lifecycle_stage = 'new' where user_id = 'u_0008';
    """,
    )
    result = run(target, env)
    reasons = {(r.table, tuple(r.key.values()), r.reason) for r in result.rejections}
    assert reasons == {
        ("crm_contacts", ("u_0005",), "churn_risk outside 0..1"),
        ("crm_recommendations", ("u_0006", 1), "null value in title_id"),
        ("crm_recommendations", ("u_0007", 2), "NUL character in title_name"),
        ("crm_similar_titles", ("t_1", 1), "duplicate key"),
        ("crm_similar_titles", ("t_1", 1), "duplicate key"),
        ("crm_similar_titles", ("t_2", 0), "rank must be 1 or more"),
    }
    assert result.total("rejected") == 6
    contacts = {r[0]: r for r in target_rows(target, "crm_contacts")}
    assert [contacts["u_0005"]] == old_u5  # previous version kept, not deleted
    assert contacts["u_0008"][1] == "new"  # the valid change went through
    # the rejected (t_2, 0) is new; the old (t_2, 3) is no longer in the source
    similar = {(r[0], r[1]) for r in target_rows(target, "crm_similar_titles")}
    assert ("t_1", 1) in similar and ("t_2", 0) not in similar and ("t_2", 3) not in similar
    assert history(target)[-1][6] == 6


def test_a_failed_apply_rolls_back_and_is_recorded(target, env):
    run(target, env)
    before = {s.name: target_rows(target, s.name) for s in contract.TABLES}
    build_exports(env, changes=CHANGE_SET)

    def crash(table: str) -> None:
        if table == "crm_recommendations":
            raise RuntimeError("simulated crash after two tables")

    with pytest.raises(sync.SyncError, match="simulated crash"):
        run(target, env, on_table_applied=crash)
    assert {s.name: target_rows(target, s.name) for s in contract.TABLES} == before
    statuses = [(h[1], h[7]) for h in history(target)]
    assert statuses[-1] == ("failed", "RuntimeError: simulated crash after two tables")
    # the next sync applies the whole change set
    result = run(target, env)
    assert result.status == "success" and result.reconciled
    assert_mirrors_source(target, env)


def test_a_killed_process_leaves_the_previous_sync(target, env, tmp_path):
    run(target, env)
    before = {s.name: target_rows(target, s.name) for s in contract.TABLES}
    build_exports(env, changes=CHANGE_SET)
    if isinstance(target, SqliteTarget):
        make = f"SqliteTarget({str(target.path)!r})"
    else:
        make = f"PostgresTarget({PG_URL!r}, {target.schema!r})"
    script = textwrap.dedent(f"""
        import os
        from ottp.crm import sync
        from ottp.crm.targets import PostgresTarget, SqliteTarget
        def die(table):
            if table == "crm_similar_titles":
                os._exit(9)  # no rollback, no cleanup: like a killed process
        sync.sync({make}, warehouse_path={str(env)!r}, on_table_applied=die)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=os.environ.copy())
    assert proc.returncode == 9
    assert {s.name: target_rows(target, s.name) for s in contract.TABLES} == before
    result = run(target, env)
    assert result.status == "success"
    assert_mirrors_source(target, env)


def test_a_lost_local_snapshot_is_rebuilt_from_the_target(target, env, tmp_path):
    run(target, env)
    for f in (tmp_path / "crm" / "state").glob("*.duckdb"):
        f.unlink()
    result = run(target, env)
    assert result.status == "unchanged" and result.reconciled
    assert run(target, env).reconciled is False


def test_a_user_removed_from_the_exports_is_mirror_deleted(target, env):
    # What an opt-out or a deletion looks like to the sync: the rows disappear.
    run(target, env)
    build_exports(
        env,
        changes="""
        delete from exports.crm_contacts where user_id in ('u_0001', 'u_0002');
        delete from exports.crm_recommendations where user_id in ('u_0001', 'u_0002');
        delete from exports.crm_triggers where user_id in ('u_0001', 'u_0002');
    """,
    )
    result = run(target, env)
    assert [t.deleted for t in result.tables] == [2, 10, 0, 2]
    for spec in contract.TABLES:
        if "user_id" in spec.column_names:
            users = {r[spec.column_names.index("user_id")] for r in target_rows(target, spec.name)}
            assert not users & {"u_0001", "u_0002"}


def test_dry_run_on_a_new_target_creates_nothing(tmp_path, env):
    target = SqliteTarget(tmp_path / "new" / "crm.sqlite")
    result = run(target, env, dry_run=True)
    assert result.status == "dry_run" and result.total("inserted") == 370
    assert not target.path.exists()


def test_the_target_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OTTP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(config.CRM_DATABASE_URL_VAR, raising=False)
    default = target_from_url()
    assert isinstance(default, SqliteTarget)
    assert default.path == tmp_path.resolve() / "crm" / "crm.sqlite"
    monkeypatch.setenv(config.CRM_DATABASE_URL_VAR, "postgresql://crm:s3cret@db.example:6543/crm")
    monkeypatch.setenv(config.CRM_DATABASE_SCHEMA_VAR, "marketing")
    pg = target_from_url()
    assert isinstance(pg, PostgresTarget) and pg.schema == "marketing"
    assert "s3cret" not in pg.describe() and "crm:" not in pg.describe()
    with pytest.raises(ValueError):
        target_from_url("mysql://x")
    with pytest.raises(ValueError):
        PostgresTarget("postgresql://x/y", 'crm"; drop table x; --')


def test_connection_errors_never_show_the_password():
    target = PostgresTarget("postgresql://postgres:s3cret@127.0.0.1:1/test?connect_timeout=2")
    with pytest.raises(sync.SyncError) as info:
        appliers.last_successful_sync(target)
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


def changed_rows(target, table: str, before: dict) -> set:
    """Keys of the rows of ``table`` written since ``before`` (row_versions)."""
    after = row_versions(target, table)
    return {k for k, v in after.items() if before.get(k) != v} | (set(before) - set(after))


def row_versions(target, table: str) -> dict:
    """Key -> what changes when the row is written: PostgreSQL's xmin, SQLite's values."""
    spec = contract.TABLES_BY_NAME[table]
    if isinstance(target, SqliteTarget):
        rows = target_rows(target, table)
        return {r[: len(spec.key)]: r for r in rows}
    keys = ", ".join(f'"{k}"' for k in spec.key)
    con = psycopg2.connect(PG_URL)
    with con.cursor() as cur:
        cur.execute(f'select {keys}, xmin::text from "{target.schema}"."{table}"')
        rows = cur.fetchall()
    con.close()
    return {tuple(r[:-1]): r[-1] for r in rows}


def test_a_change_to_one_row_resends_exactly_that_row(target, env):
    run(target, env)
    before = {s.name: row_versions(target, s.name) for s in contract.TABLES}
    build_exports(
        env,
        changes="update exports.crm_contacts set titles_watched = 8 where user_id = 'u_0007'",
    )
    result = run(target, env)
    assert [(t.inserted, t.updated, t.deleted) for t in result.tables] == [
        (0, 1, 0),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
    ]
    assert result.tables[0].sample_keys == {"update": [{"user_id": "u_0007"}]}
    assert {s.name: changed_rows(target, s.name, before[s.name]) for s in contract.TABLES} == {
        "crm_contacts": {("u_0007",)},
        "crm_recommendations": set(),
        "crm_similar_titles": set(),
        "crm_triggers": set(),
    }
    assert_mirrors_source(target, env)


def test_a_deleted_row_is_deleted_and_nothing_else_is_written(target, env):
    run(target, env)
    before = row_versions(target, "crm_recommendations")
    build_exports(
        env,
        changes="delete from exports.crm_recommendations where user_id = 'u_0002' and rank = 3",
    )
    result = run(target, env)
    assert result.changes == 1 and result.tables[1].deleted == 1
    assert changed_rows(target, "crm_recommendations", before) == {("u_0002", 3)}
    assert ("u_0002", 3) not in row_versions(target, "crm_recommendations")
    assert_mirrors_source(target, env)


@pytest.mark.parametrize(
    ("change", "updated"),
    [
        # '' and null are one value to the CRM (empty text is sent as null)
        ("hardcore_fan_categories = ''", 0),
        ("hardcore_fan_categories = 'NULL'", 1),
        ("hardcore_fan_categories = 'null'", 1),
        ("hardcore_fan_categories = ' '", 1),
        # text moved between neighbouring columns
        ("top_category = 'drama,kids', top_categories = 'drama'", 1),
        ("top_category = null, hardcore_fan_categories = 'drama'", 1),
        ("taste_cluster_id = null", 1),
        ("churn_risk = null", 1),
        ("last_active_at = null", 1),
    ],
)
def test_null_empty_text_and_null_as_text_are_told_apart(change, updated, target, env):
    run(target, env)
    build_exports(env, changes=f"update exports.crm_contacts set {change} where user_id = 'u_0001'")
    result = run(target, env)
    assert [t.updated for t in result.tables] == [updated, 0, 0, 0]
    assert result.changes == updated
    assert_mirrors_source(target, env)


def test_the_row_hash_tells_nulls_empty_text_and_moved_values_apart():
    spec = contract.TABLES_BY_NAME["crm_similar_titles"]
    rows = [
        ("t_1", 1, "t_2", None, 0.5),
        ("t_1", 1, "t_2", "NULL", 0.5),
        ("t_1", 1, "t_2", "null", 0.5),
        ("t_1", 1, "t_2", " ", 0.5),
        ("t_1", 1, "t_2", "0", 0.5),
        ("t_1", 1, "t_2", "t_2", 0.5),
        ("t_1", 1, "t_2", "t_2", None),
        ("t_1", 1, "t_2", None, None),
        ("t_1", 1, "t_2", None, 0.0),
        ("t_1", 1, "t_2", "0.5", None),
        ("t_1", 1, "t_2t_2", None, 0.5),
        ("t_1", 1, None, "t_2", 0.5),
        ("t_1", 2, "t_2", None, 0.5),
        ("t_2", 1, "t_1", None, 0.5),
        ("t_1,1", None, "t_2", None, 0.5),
    ]
    con = duckdb.connect()
    con.execute(
        "create table t (title_id varchar, rank bigint, similar_title_id varchar, "
        "similar_title_name varchar, score double)"
    )
    con.executemany("insert into t values (?, ?, ?, ?, ?)", rows)
    con.execute("insert into t values ('t_1', 1, 't_2', '', 0.5)")  # '' is sent as null
    hashes = con.execute(f"select {contract.row_hash_sql(spec)} from t").fetchall()
    assert len({h for (h,) in hashes[:-1]}) == len(rows)
    assert hashes[-1] == hashes[0]
    assert all(h is not None and h >= 0 for (h,) in hashes)


def test_a_first_sync_with_a_duplicate_key_rejects_every_copy(target, env):
    build_exports(
        env,
        changes="""
        insert into exports.crm_recommendations
            select * replace ('Other' as title_name) from exports.crm_recommendations
            where user_id = 'u_0004' and rank = 2;
        update exports.crm_contacts set churn_risk = -1 where user_id = 'u_0005';
        """,
    )
    result = run(target, env)
    reasons = sorted((r.table, tuple(r.key.values()), r.reason) for r in result.rejections)
    assert reasons == [
        ("crm_contacts", ("u_0005",), "churn_risk outside 0..1"),
        ("crm_recommendations", ("u_0004", 2), "duplicate key"),
        ("crm_recommendations", ("u_0004", 2), "duplicate key"),
    ]
    assert [t.inserted for t in result.tables] == [49, 249, 60, 10]
    assert ("u_0004", 2) not in row_versions(target, "crm_recommendations")


def test_an_export_without_row_hashes_is_refused_with_the_reason(tmp_path, env):
    con = duckdb.connect(str(env))
    con.execute("alter table exports.crm_triggers drop column _row_hash")
    con.close()
    with pytest.raises(sync.SyncError, match=r"lacks contract columns \['_row_hash'\].*dbt build"):
        run(SqliteTarget(tmp_path / "crm.sqlite"), env)


def test_a_null_row_hash_is_rejected_not_dropped(target, env):
    run(target, env)
    con = duckdb.connect(str(env))
    con.execute("insert into exports.crm_similar_titles values ('t_1', 9, 't_2', 'x', 0.1, null)")
    con.close()
    result = run(target, env)
    assert [(r.table, r.key, r.reason) for r in result.rejections] == [
        ("crm_similar_titles", {"title_id": "t_1", "rank": 9}, "null value in _row_hash")
    ]
    assert result.changes == 0
