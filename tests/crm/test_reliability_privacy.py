"""Privacy and security end to end: simulated events -> warehouse -> exports -> gates ->
both CRM targets, over three deliveries.

1. the first delivery is built and synced: the users below are contacts;
2. one contact opts out, two ask for deletion (after they were exported), and a
   fourth receives events full of personal data the contract does not list;
3. events of the opted-out user and of a deleted user arrive late, after the
   deletion was processed.

After each sync, neither target holds the opted-out or deleted users anywhere
(any table, any column, and for SQLite not even in the file's bytes), nor any
personal value beyond the contract; the PostgreSQL password never shows in the
output, the logs, the results or the target.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import duckdb
import psycopg2
import pytest

from ottp import cli, config, privacy
from ottp.crm import contract, sync
from ottp.crm.targets import PostgresTarget, SqliteTarget, Target, target_from_url
from ottp.ingest import load
from tests.conftest import make_event, write_landing
from tests.crm.conftest import crm_dbt_run, crm_environment
from tests.crm.test_exports import STAND_IN_ML
from tests.crm.test_sync import PG, PG_URL

PASSWORD = "canary-pw-5e1f"
CANARIES = {
    "device_id": "canary-device-7d3a",
    # the contract allows ISO-style codes only (^[A-Z]{2}$): QZ is user-assigned, never real
    "country": "QZ",
    "app_version": "canary-app-9.9",
    "email": "canary.person@example.invalid",
    "query": "canary search for my own name",
}


def _dbt(*args: str) -> None:
    cmd = [
        config.dbt_executable(),
        *args,
        "--quiet",
        "--project-dir", str(config.DBT_PROJECT_DIR),
        "--profiles-dir", str(config.DBT_PROJECT_DIR),
        "--target-path", str(config.settings().data_dir / "dbt_target"),
        "--log-path", str(config.settings().data_dir / "dbt_logs"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, **crm_dbt_run(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _rebuild(warehouse: Path) -> None:
    """A pipeline run: marts, recommender (stand-in), pseudonymisation, exports."""
    _dbt(
        "build", "--exclude", "path:models/exports",
        "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test",
    )  # fmt: skip
    con = duckdb.connect(str(warehouse))
    con.execute(STAND_IN_ML)
    con.close()
    privacy.pseudonymise_deleted_users(warehouse)
    _dbt("build", "--select", "path:models/exports")


def _query(warehouse: Path, sql: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _stamp(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _target_text(target: Target) -> dict[str, list[str]]:
    """Every value of every table of the target, as text, per table."""
    out: dict[str, list[str]] = {}
    if isinstance(target, SqliteTarget):
        con = sqlite3.connect(target.path)
        tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
        for t in tables:
            out[t] = [str(v) for row in con.execute(f'select * from "{t}"') for v in row]
        con.close()
        return out
    con = psycopg2.connect(PG_URL)
    with con.cursor() as cur:
        cur.execute(
            "select table_name from information_schema.tables where table_schema = %s",
            [target.schema],
        )
        for (t,) in cur.fetchall():
            cur.execute(f'select * from "{target.schema}"."{t}"')
            out[t] = [str(v) for row in cur.fetchall() for v in row]
    con.close()
    return out


def _target_columns(target: Target) -> dict[str, list[str]]:
    if isinstance(target, SqliteTarget):
        con = sqlite3.connect(target.path)
        cols = {
            spec.name: [r[1] for r in con.execute(f'pragma table_info("{spec.name}")')]
            for spec in contract.TABLES
        }
        con.close()
        return cols
    con = psycopg2.connect(PG_URL)
    cols = {}
    with con.cursor() as cur:
        for spec in contract.TABLES:
            cur.execute(
                "select column_name from information_schema.columns "
                "where table_schema = %s and table_name = %s order by ordinal_position",
                [target.schema, spec.name],
            )
            cols[spec.name] = [r[0] for r in cur.fetchall()]
    con.close()
    return cols


@pytest.fixture(scope="module")
def world(crm_build):
    # the first delivery: the session's CRM warehouse (tests/crm/conftest.py), a fresh copy
    root = crm_build.checkout()
    mp = pytest.MonkeyPatch()
    crm_environment(mp, root)
    warehouse = root / "warehouse.duckdb"
    schema = f"test_privacy_{uuid.uuid4().hex[:8]}"
    targets = [SqliteTarget(root / "crm" / "crm.sqlite")]
    if PG:
        targets.append(PostgresTarget(PG_URL, schema))
    yield root, warehouse, targets, schema, mp
    mp.undo()
    if PG:
        con = psycopg2.connect(PG_URL)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'drop schema if exists "{schema}" cascade')
        con.close()


def _sync_all(world, capsys, caplog) -> str:
    """Sync the SQLite target in process and the PostgreSQL one through ``ottp sync``
    with a password in CRM_DATABASE_URL; return everything printed and logged."""
    root, warehouse, targets, schema, mp = world
    result = sync.sync(targets[0], warehouse_path=warehouse)
    assert result.status in ("success", "unchanged")
    printed = result.format_table() + str(result.to_dict())
    if PG:
        url = PG_URL.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
        assert PASSWORD in url
        mp.setenv(config.CRM_DATABASE_URL_VAR, url)
        mp.setenv(config.CRM_DATABASE_SCHEMA_VAR, schema)
        with caplog.at_level(logging.DEBUG):
            code = cli.main(["sync"])
        out = capsys.readouterr()
        mp.delenv(config.CRM_DATABASE_URL_VAR)
        mp.delenv(config.CRM_DATABASE_SCHEMA_VAR)
        printed += out.out + out.err + caplog.text
        assert code == 0, printed[-3000:]
        assert "quality gate crm_contacts: passed" in out.out
    return printed


def _assert_nobody_leaks(world, users: list[str], printed: str) -> None:
    root, warehouse, targets, _, _ = world
    for target in targets:
        text = _target_text(target)
        assert set(contract.TABLES_BY_NAME) <= set(text)
        for table, values in text.items():
            joined = "\x00".join(values)
            for user in users:
                assert user not in joined, (target.kind, table, user)
            for field, canary in CANARIES.items():
                assert canary not in joined, (target.kind, table, field)
            assert PASSWORD not in joined
        # Exactly the contract's columns (the last is the row hash the sync compares).
        assert _target_columns(target) == {spec.name: spec.column_names for spec in contract.TABLES}
    # Not in the file's bytes either: deleted rows are overwritten, the WAL emptied.
    sqlite_path = targets[0].path
    raw = b"".join(p.read_bytes() for p in (sqlite_path, Path(f"{sqlite_path}-wal")) if p.exists())
    # two letters are no canary among a binary file's bytes: the country is checked in
    # the tables' text above, and no export has a country column (checked too)
    canaries = [v for k, v in CANARIES.items() if k != "country"]
    for value in [*users, *canaries]:
        assert value.encode() not in raw, value
    assert PASSWORD not in printed
    for f in (root / "crm" / "state").glob("*"):
        assert PASSWORD not in f.name


def test_opt_outs_deletions_and_late_events_never_reach_the_crm(world, capsys, caplog):
    root, warehouse, targets, _, _ = world
    assert _sync_all(world, capsys, caplog)
    contacts = [
        r[0]
        for r in _query(
            warehouse,
            "select user_id from exports.crm_contacts where recommendation_count > 0 "
            "and user_id in (select user_id from exports.crm_triggers) order by user_id",
        )
    ]
    assert len(contacts) >= 4
    opted_out, deleted, deleted_late, personal = contacts[:4]
    for target in targets:
        text = "\x00".join(_target_text(target)["crm_contacts"])
        assert all(u in text for u in (opted_out, deleted, deleted_late, personal))

    # Delivery 2: an opt-out, two deletions of exported users, personal data.
    last = _query(warehouse, "select max(received_at) from raw.events")[0][0]
    at = _stamp(last + timedelta(minutes=5))
    personal_events = [
        make_event(
            event_type=event_type, user_id=personal, occurred_at=at, received_at=at,
            device_id=CANARIES["device_id"], country=CANARIES["country"],
            app_version=CANARIES["app_version"], properties=properties,
        )
        for event_type, properties in [
            ("page_view", {"page": "account", "email": CANARIES["email"]}),
            ("search", {"query": CANARIES["query"]}),
        ]
    ]  # fmt: skip
    write_landing(
        root / "landing",
        [
            make_event(
                event_type="consent_update", user_id=opted_out, occurred_at=at, received_at=at,
                properties={"marketing_opt_in": False},
            ),
            make_event(event_type="deletion_request", user_id=deleted, occurred_at=at,
                       received_at=at, properties=None),
            make_event(event_type="deletion_request", user_id=deleted_late, occurred_at=at,
                       received_at=at, properties=None),
            *personal_events,
        ],
        day=last.date(),
        name="part-privacy-2.ndjson.gz",
    )  # fmt: skip
    assert load.load_landing(warehouse, root / "landing").loaded == 5
    _rebuild(warehouse)
    # The personal values are in the warehouse; the CRM must not receive them.
    assert _query(
        warehouse,
        "select count(*) from raw.events where user_id = ? and device_id = ? and country = ?",
        [personal, CANARIES["device_id"], CANARIES["country"]],
    ) == [(2,)]
    printed = _sync_all(world, capsys, caplog)
    _assert_nobody_leaks(world, [opted_out, deleted, deleted_late], printed)
    assert _query(warehouse, "select count(*) from exports.crm_contacts where user_id = ?",
                  [personal]) == [(1,)]  # fmt: skip
    # The deleted users' real ids remain only on their deletion requests.
    assert _query(
        warehouse,
        "select distinct event_type from raw.events where user_id in (?, ?)",
        [deleted, deleted_late],
    ) == [("deletion_request",)]

    # Delivery 3: activity of the opted-out user and of a deleted user, arriving late.
    later = _stamp(last + timedelta(hours=2))
    late = [
        make_event(
            event_type=event_type, user_id=user, occurred_at=later, received_at=later,
            playback_id=f"p_late_{user}", title_id=title, position_s=60.0, duration_s=5400.0,
        )
        for user in (opted_out, deleted_late)
        for event_type in ("play_start", "heartbeat")
        for title in [_query(warehouse, "select min(title_id) from marts.titles")[0][0]]
    ]  # fmt: skip
    write_landing(root / "landing", late, day=last.date(), name="part-privacy-3.ndjson.gz")
    assert load.load_landing(warehouse, root / "landing").loaded == len(late)
    # Before the next pseudonymisation pass the late events carry the real id, and
    # the deletion request alone keeps the user out of the exports.
    assert _query(warehouse, "select count(*) from raw.events where user_id = ?",
                  [deleted_late])[0][0] == 3  # fmt: skip
    _rebuild(warehouse)
    printed = _sync_all(world, capsys, caplog)
    _assert_nobody_leaks(world, [opted_out, deleted, deleted_late], printed)
    assert _query(warehouse, "select count(*) from raw.events where user_id = ?",
                  [deleted_late])[0][0] == 1  # fmt: skip
    assert load.reconciliation(warehouse)["reconciles"]


def test_the_warehouse_exports_hold_exactly_the_contract_columns(world):
    _, warehouse, _, _, _ = world
    for spec in contract.TABLES:
        columns = [
            r[0]
            for r in _query(
                warehouse,
                "select column_name from information_schema.columns "
                "where table_schema = 'exports' and table_name = ? order by ordinal_position",
                [spec.name],
            )
        ]
        assert columns == spec.column_names, spec.name


def test_a_rejected_row_of_a_user_who_later_leaves_does_not_stay_in_the_target(tmp_path):
    """sync_rejections holds the latest sync's rejections, not a departed user's key."""
    from tests.crm.test_sync import build_exports

    warehouse = tmp_path / "warehouse.duckdb"
    build_exports(warehouse)
    target = SqliteTarget(tmp_path / "crm.sqlite")
    state = tmp_path / "s"
    sync.sync(target, warehouse_path=warehouse, state_dir=state)
    # A new contact whose row the target refuses: it is never inserted.
    build_exports(
        warehouse,
        changes="""
        insert into exports.crm_contacts
        select * replace ('u_9001' as user_id, 7.0 as churn_risk)
        from exports.crm_contacts where user_id = 'u_0001'
        """,
    )
    first = sync.sync(target, warehouse_path=warehouse, state_dir=state)
    assert [(r.key, r.reason) for r in first.rejections] == [
        ({"user_id": "u_9001"}, "churn_risk outside 0..1")
    ]
    assert "u_9001" in "\x00".join(_target_text(target)["sync_rejections"])
    # Same data, same rejection: nothing is written.
    assert sync.sync(target, warehouse_path=warehouse, state_dir=state).status == "unchanged"
    # The user opts out: no row changes, but the stored rejection must go.
    build_exports(warehouse)
    result = sync.sync(target, warehouse_path=warehouse, state_dir=state)
    assert (result.status, result.changes, result.rejections) == ("success", 0, [])
    text = "\x00".join(v for values in _target_text(target).values() for v in values)
    assert "u_9001" not in text
    raw = b"".join(p.read_bytes() for p in (target.path, Path(f"{target.path}-wal")) if p.exists())
    assert b"u_9001" not in raw


SQL_LOOKING = [
    "'; drop table crm_contacts; --",
    '"; delete from sync_history; --',
    "' or '1'='1",
    "%s %(x)s ? $1 {0}",
    'back\\slash, comma; "quote"\nnew line',
    "😀 ünïcödé",
]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG, reason="no PostgreSQL at 127.0.0.1:5432"))])  # fmt: skip
def test_sql_looking_values_reach_the_target_as_data(kind, tmp_path):
    from tests.crm.test_sync import build_exports, source_rows, target_rows

    values = ", ".join("(?)" for _ in SQL_LOOKING)
    warehouse = tmp_path / "warehouse.duckdb"
    build_exports(warehouse, users=len(SQL_LOOKING))
    con = duckdb.connect(str(warehouse))
    con.execute(f"create temp table v as select * from (values {values}) as t(s)", SQL_LOOKING)
    for table, column in [  # value columns first: the user id is the join key
        ("crm_contacts", "favourite_title_name"), ("crm_recommendations", "reason"),
        ("crm_contacts", "user_id"), ("crm_recommendations", "user_id"),
        ("crm_triggers", "user_id"),
    ]:  # fmt: skip
        con.execute(
            f"update exports.{table} as x set {column} = v.s from (select s, "
            "'u_' || lpad((row_number() over () - 1)::varchar, 4, '0') as user_id from v) as v "
            "where x.user_id = v.user_id"
        )
    con.close()
    schema = f"test_sqlish_{uuid.uuid4().hex[:8]}"
    target = (
        SqliteTarget(tmp_path / "crm.sqlite")
        if kind == "sqlite"
        else PostgresTarget(PG_URL, schema)
    )
    try:
        result = sync.sync(target, warehouse_path=warehouse, state_dir=tmp_path / "s")
        assert result.status == "success" and result.total("rejected") == 0
        for spec in contract.TABLES:
            assert target_rows(target, spec.name) == source_rows(warehouse, spec.name)
        contacts = target_rows(target, "crm_contacts")
        assert {r[0] for r in contacts} == set(SQL_LOOKING)
        assert {r[13] for r in contacts} == set(SQL_LOOKING)  # favourite_title_name
        assert {r[5] for r in target_rows(target, "crm_recommendations")} == set(SQL_LOOKING)
        assert sync.sync(target, warehouse_path=warehouse, state_dir=tmp_path / "s").status == (
            "unchanged"
        )
    finally:
        if kind == "postgresql":
            con = psycopg2.connect(PG_URL)
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'drop schema if exists "{schema}" cascade')
            con.close()


def test_identifiers_from_configuration_are_validated(monkeypatch, tmp_path):
    from ottp.ingest import pg_mirror

    for bad in ['crm"; drop schema public; --', "CRM", "crm schema", "1crm", ""]:
        monkeypatch.setenv(config.CRM_DATABASE_URL_VAR, "postgresql://crm@127.0.0.1:5432/test")
        monkeypatch.setenv(config.CRM_DATABASE_SCHEMA_VAR, bad)
        with pytest.raises(ValueError, match="not a plain lowercase SQL identifier"):
            target_from_url()
        with pytest.raises(ValueError, match="not a plain lowercase SQL identifier"):
            pg_mirror.mirror_raw_to_postgres(tmp_path / "w.duckdb", PG_URL, schema=bad)
        with pytest.raises(ValueError, match="not a plain lowercase SQL identifier"):
            sync.sync(SqliteTarget(tmp_path / "c.sqlite"), source_schema=bad,
                      warehouse_path=tmp_path / "w.duckdb", state_dir=tmp_path / "s")  # fmt: skip
    assert not (tmp_path / "c.sqlite").exists()


def test_a_deleted_users_rejected_lines_are_dropped_wherever_their_id_is_quoted(tmp_path):
    """A rejected raw line goes when it holds a deleted user's id in quotes, however
    malformed the line is around it; a line with the id unquoted, inside a longer
    string or only as a user who did not leave stays. Ids with a quote in them too."""
    from ottp.ingest.manifest import ensure_raw_schema

    gone, gone_quoted, stays = "u_gone", 'u_"q"', "u_stays"
    lines = [
        '{"user_id":"u_gone","event_type":"play_start"',  # cut
        'not json at all "u_gone" trailing',
        '"u_gone"',
        'x"a"u_gone"b"',  # its quotes belong to two pairs
        '""u_gone""',
        '{"user_id":"u_gone_2"}',  # another id that starts like it
        "{'user_id':'u_gone'}",  # single quotes
        "u_gone without quotes",
        '{"user_id":"u_stays"}',
        '{"user_id":"u_"q""}',
        '{"note":"u_\\"q\\""}',  # escaped: not the id in quotes
        '"',
        "",
    ]
    warehouse = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    try:
        ensure_raw_schema(con)
        for user, kind in (
            (gone, "deletion_request"),
            (gone, "page_view"),
            (gone_quoted, "deletion_request"),
            (gone_quoted, "page_view"),
            (stays, "page_view"),
        ):
            con.execute(
                "insert into raw.events (event_id, event_type, schema_version, occurred_at, "
                "received_at, user_id, device_id, platform, landing_date, source_file, "
                "load_id, loaded_at) values (uuid(), ?, '1', timestamp '2026-08-01 10:00:00', "
                "timestamp '2026-08-01 10:00:01', ?, 'd1', 'web', date '2026-08-01', 'f', "
                "'l', timestamp '2026-08-01 11:00:00')",
                [kind, user],
            )
        for number, line in enumerate(lines):
            con.execute(
                "insert into raw.rejected_events values ('f', ?, ?, 'invalid_json', 'r', "
                "date '2026-08-01', 'l', timestamp '2026-08-01 11:00:00')",
                [number, line],
            )
    finally:
        con.close()

    privacy.pseudonymise_deleted_users(warehouse)

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        kept = dict(con.execute("select line_number, raw_line from raw.rejected_events").fetchall())
    finally:
        con.close()
    expected = {
        number: None if any(f'"{user}"' in line for user in (gone, gone_quoted)) else line
        for number, line in enumerate(lines)
    }
    assert kept == expected
    # the rule is not vacuous: some lines go, some stay
    assert sum(v is None for v in expected.values()) == 6
