"""Faults: SIGKILL at a meaningful moment of the loader, dbt and the CRM sync, then a
rerun that must equal a clean run; an unreachable or failing PostgreSQL target;
corrupt landing files.

The killed runs are the real code in a child process; the moment comes from the
child's own progress output (the loader's and the sync's log lines, dbt's model
lines), not from a hook in the product.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import psycopg2
import pytest

from ottp import config
from ottp.crm import contract, sync
from ottp.crm.targets import PostgresTarget, RetryPolicy, SqliteTarget, Target, retry_policy
from ottp.ingest import landing, load
from tests.conftest import DAY, dbt_folder_env, make_event, write_landing
from tests.crm.test_sync import CHANGE_SET, PG, PG_URL, build_exports, target_rows

needs_pg = pytest.mark.skipif(not PG, reason="no PostgreSQL at 127.0.0.1:5432")
FAST_RETRY = RetryPolicy(attempts=3, first_delay_s=0.2, max_delay_s=1.0)


def kill_when(
    cmd: list[str],
    seen: Callable[[str], bool],
    env: dict | None = None,
    timeout: float = 300,
    cwd: Path = config.REPO_ROOT,
) -> tuple[int, list[str]]:
    """Run ``cmd``; SIGKILL its process group at the first output line ``seen`` accepts."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**(env or os.environ), "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
        cwd=cwd,
    )
    guard = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGTERM))
    guard.start()
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if seen(line):
                os.killpg(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        guard.cancel()
        proc.stdout.close()
    return proc.returncode, lines


def python_child(code: str) -> list[str]:
    """A child interpreter that logs the library's progress to stdout."""
    prelude = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO,\n"
        "                    format='%(name)s %(message)s')\n"
    )
    return [sys.executable, "-c", prelude + textwrap.dedent(code)]


# ------------------------------------------------------------------ raw loading


@pytest.fixture(scope="module")
def simulated(reliability_landing) -> Path:
    """Landing files of 16 days with dirty data, simulated once per session
    (tests/orchestration/conftest.py); read only."""
    return reliability_landing


def _raw_difference(a: Path, b: Path) -> dict[str, int]:
    """Rows of each raw table in one warehouse and not the other (load ids and times aside)."""
    con = duckdb.connect()
    con.execute(f"attach '{a}' as a (read_only)")
    con.execute(f"attach '{b}' as b (read_only)")
    tables = {
        "events": "* exclude (load_id, loaded_at)",
        "titles": "* exclude (load_id, loaded_at)",
        "rejected_events": "* exclude (load_id, rejected_at)",
        "rejected_titles": "* exclude (load_id, rejected_at)",
        "load_manifest": "* exclude (load_id, loaded_at)",
    }
    out = {}
    for table, cols in tables.items():
        out[table] = con.execute(
            f"select (select count(*) from (select {cols} from a.raw.{table} except all "
            f"select {cols} from b.raw.{table})) + (select count(*) from (select {cols} "
            f"from b.raw.{table} except all select {cols} from a.raw.{table}))"
        ).fetchall()[0][0]
    con.close()
    return out


def test_sigkill_during_raw_loading_then_a_rerun_equals_a_clean_load(simulated, tmp_path):
    clean = tmp_path / "clean.duckdb"
    reference = load.load_landing(clean, simulated, chunk_bytes=1)
    files = len(landing.discover(simulated))
    assert reference.count("loaded") == files and reference.duplicates > 0

    killed = tmp_path / "killed.duckdb"
    committed: list[str] = []
    rc, lines = kill_when(
        python_child(f"""
            from ottp.ingest import load
            load.load_landing({str(killed)!r}, {str(simulated)!r}, chunk_bytes=1)
        """),
        # one file per chunk: killed once the second chunk committed, in the third
        lambda line: (
            line.startswith("ottp.ingest.load committed")
            and len(committed.append(line) or committed) == 2
        ),
    )
    assert rc == -signal.SIGKILL, "".join(lines)
    con = duckdb.connect(str(killed), read_only=True)
    landed = con.execute("select count(*) from raw.load_manifest").fetchall()[0][0]
    con.close()
    assert 2 <= landed < files  # killed mid-load

    again = load.load_landing(killed, simulated, chunk_bytes=1)
    assert again.count("already_loaded") == landed
    assert _raw_difference(clean, killed) == dict.fromkeys(
        ["events", "titles", "rejected_events", "rejected_titles", "load_manifest"], 0
    )
    totals = load.reconciliation(killed)
    assert totals["reconciles"] and totals["events_in_table"] == reference.events_loaded


# ------------------------------------------------------------------ dbt build


def _dbt_build(data_dir: Path) -> list[str]:
    # One target path for the three builds of the test, seeded with the session's saved
    # parse (tests/conftest.py dbt_saved_parse): dbt reuses it only for the same profile,
    # the DuckDB path included, so each build runs in its data folder (cwd) with the
    # same relative path (_dbt_env).
    return [
        config.dbt_executable(),
        "build",
        "--exclude", "path:models/exports",
        "--exclude-resource-type", "test",
        "--exclude-resource-type", "unit_test",
        "--project-dir", str(config.DBT_PROJECT_DIR),
        "--profiles-dir", str(config.DBT_PROJECT_DIR),
        "--target-path", str(data_dir.parent / "dbt_target"),
        "--log-path", str(data_dir.parent / "dbt_logs"),
    ]  # fmt: skip


def _dbt_env(data_dir: Path) -> dict[str, str]:
    """dbt's environment for a build of data_dir/warehouse.duckdb, run with cwd=data_dir."""
    return dbt_folder_env(OTTP_DATA_DIR=str(data_dir))


def _relations(path: Path) -> dict[str, str]:
    """Every relation dbt built, with a digest of its rows (order-free).

    Floating-point columns are rounded: a parallel sum adds in no fixed order,
    so two clean builds may differ in the last bits.
    """
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns: dict[tuple[str, str], list[str]] = {}
        for schema, name, column, type_ in con.execute(
            "select table_schema, table_name, column_name, data_type "
            "from information_schema.columns "
            "where table_schema in ('reference', 'staging', 'intermediate', 'marts') "
            "order by table_schema, table_name, ordinal_position"
        ).fetchall():
            exact = type_ not in ("DOUBLE", "FLOAT", "REAL")
            columns.setdefault((schema, name), []).append(
                f'"{column}"' if exact else f'round("{column}", 6)'
            )
        return {
            f"{schema}.{name}": con.execute(
                f"select count(*) || ':' || "
                f"coalesce(sum(hash(row({', '.join(cols)})::varchar)), 0) "
                f'from "{schema}"."{name}"'
            ).fetchall()[0][0]
            for (schema, name), cols in columns.items()
        }
    finally:
        con.close()


def test_sigkill_during_the_dbt_build_then_a_rerun_equals_a_clean_build(
    simulated, tmp_path, dbt_saved_parse
):
    dbt_saved_parse(tmp_path / "dbt_target")  # _dbt_build's target path
    raw = tmp_path / "loaded" / "warehouse.duckdb"
    load.load_landing(raw, simulated)
    dirs = {}
    for name in ("clean", "killed"):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        shutil.copy(raw, dirs[name] / "warehouse.duckdb")

    clean = subprocess.run(
        _dbt_build(dirs["clean"]),
        env=_dbt_env(dirs["clean"]),
        cwd=dirs["clean"],
        capture_output=True,
        text=True,
    )
    assert clean.returncode == 0, clean.stdout[-3000:]

    # Killed once both incremental models have committed, with the marts to come.
    incremental = []
    rc, lines = kill_when(
        _dbt_build(dirs["killed"]),
        lambda line: (
            "OK created sql incremental model" in line
            and len(incremental.append(line) or incremental) == 2
        ),
        env=_dbt_env(dirs["killed"]),
        cwd=dirs["killed"],
    )
    assert rc == -signal.SIGKILL, "".join(lines[-30:])
    assert not any("Completed successfully" in line for line in lines)
    half = _relations(dirs["killed"] / "warehouse.duckdb")
    assert half != _relations(dirs["clean"] / "warehouse.duckdb")  # the kill left work undone

    rerun = subprocess.run(
        _dbt_build(dirs["killed"]),
        env=_dbt_env(dirs["killed"]),
        cwd=dirs["killed"],
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    # Same relations (no leftover __dbt_tmp or backup), same rows.
    assert _relations(dirs["killed"] / "warehouse.duckdb") == _relations(
        dirs["clean"] / "warehouse.duckdb"
    )


# ------------------------------------------------------------------ CRM sync


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=needs_pg)],
)
def crm_targets(request, tmp_path):
    """Two targets of one kind: the one under test and a clean reference."""
    if request.param == "sqlite":
        yield [SqliteTarget(tmp_path / n / "crm.sqlite") for n in ("crm", "clean")]
        return
    schemas = [f"test_rel_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    yield [PostgresTarget(PG_URL, s) for s in schemas]
    con = psycopg2.connect(PG_URL)
    con.autocommit = True
    with con.cursor() as cur:
        for s in schemas:
            cur.execute(f'drop schema if exists "{s}" cascade')
    con.close()


def _make(target: Target) -> str:
    if isinstance(target, SqliteTarget):
        return f"SqliteTarget({str(target.path)!r})"
    return f"PostgresTarget({PG_URL!r}, {target.schema!r})"


def full_state(target: Target) -> dict[str, list[tuple]]:
    """Every row of the four tables, their row hashes included."""
    out = {}
    for spec in contract.TABLES:
        cols = ", ".join(f'"{c}"' for c in [*spec.column_names, "_row_hash"])
        keys = ", ".join(f'"{k}"' for k in spec.key)
        if isinstance(target, SqliteTarget):
            import sqlite3

            con = sqlite3.connect(target.path)
            out[spec.name] = con.execute(
                f"select {cols} from {spec.name} order by {keys}"
            ).fetchall()
            con.close()
        else:
            con = psycopg2.connect(PG_URL)
            with con.cursor() as cur:
                cur.execute(f'select {cols} from "{target.schema}"."{spec.name}" order by {keys}')
                out[spec.name] = cur.fetchall()
            con.close()
    return out


BIG_CHANGE = (
    CHANGE_SET
    + """
    update exports.crm_recommendations set score = score + 1, reason = 'Top pick';
    update exports.crm_similar_titles set score = 0.75;
"""
)


def test_sigkill_during_the_crm_sync_then_a_rerun_equals_a_clean_sync(crm_targets, tmp_path):
    target, clean = crm_targets
    warehouse = tmp_path / "warehouse.duckdb"
    build_exports(warehouse, users=9_000, recs=20)
    state = tmp_path / "state"
    sync.sync(target, warehouse_path=warehouse, state_dir=state)
    before = full_state(target)
    build_exports(warehouse, users=9_000, recs=20, changes=BIG_CHANGE)

    # Killed inside the transaction: contacts applied, 180k recommendation updates to go.
    rc, lines = kill_when(
        python_child(f"""
            from ottp.crm import sync
            from ottp.crm.targets import PostgresTarget, SqliteTarget
            sync.sync({_make(target)}, warehouse_path={str(warehouse)!r},
                      state_dir={str(state)!r})
        """),
        lambda line: line.startswith("ottp.crm.sync") and "applied crm_contacts" in line,
    )
    assert rc == -signal.SIGKILL, "".join(lines)
    assert full_state(target) == before  # nothing of the killed sync is visible

    result = sync.sync(target, warehouse_path=warehouse, state_dir=state)
    assert result.status == "success"
    assert result.total("updated") > 179_000
    reference = sync.sync(clean, warehouse_path=warehouse, state_dir=tmp_path / "clean-state")
    assert reference.status == "success"
    assert full_state(target) == full_state(clean)
    assert sync.sync(target, warehouse_path=warehouse, state_dir=state).status == "unchanged"


@needs_pg
def test_an_unreachable_postgresql_target_is_retried_with_backoff_then_fails_clearly(
    tmp_path, caplog
):
    warehouse = tmp_path / "warehouse.duckdb"
    build_exports(warehouse)
    target = PostgresTarget("postgresql://crm:pa55-secret@127.0.0.1:1/test?connect_timeout=2")
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="ottp"):
        with pytest.raises(sync.SyncError) as info:
            sync.sync(target, warehouse_path=warehouse, state_dir=tmp_path / "s", retry=FAST_RETRY)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "unavailable after 3 attempts" in message and "127.0.0.1:1" in message
    assert "target is unchanged" in message
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert [m.split("retrying in ")[1] for m in retries] == ["0.2 s", "0.4 s"]
    assert elapsed >= 0.6
    assert "pa55-secret" not in message + caplog.text


def test_the_retry_policy_comes_from_one_place(monkeypatch):
    monkeypatch.delenv(config.CRM_SYNC_ATTEMPTS_VAR, raising=False)
    monkeypatch.delenv(config.CRM_SYNC_RETRY_DELAY_VAR, raising=False)
    monkeypatch.delenv(config.CRM_SYNC_RETRY_MAX_DELAY_VAR, raising=False)
    default = retry_policy()
    assert default == RetryPolicy()
    assert [default.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    monkeypatch.setenv(config.CRM_SYNC_ATTEMPTS_VAR, "2")
    monkeypatch.setenv(config.CRM_SYNC_RETRY_DELAY_VAR, "0.5")
    monkeypatch.setenv(config.CRM_SYNC_RETRY_MAX_DELAY_VAR, "1")
    assert retry_policy() == RetryPolicy(attempts=2, first_delay_s=0.5, max_delay_s=1)


def _terminate_sync_backend(schema: str) -> int:
    """What a server restart or failover does to the sync's connection."""
    con = psycopg2.connect(PG_URL)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity "
            "where pid <> pg_backend_pid() and query like %s",
            [f'%"{schema}"%'],
        )
        n = cur.fetchone()[0]
    con.close()
    return n


@needs_pg
def test_a_connection_lost_mid_sync_is_retried_and_applied_once(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    build_exports(warehouse)
    schema = f"test_rel_{uuid.uuid4().hex[:10]}"
    target = PostgresTarget(PG_URL, schema)
    try:
        sync.sync(target, warehouse_path=warehouse, state_dir=tmp_path / "s")
        build_exports(warehouse, changes=CHANGE_SET)
        killed = []

        def drop_once(table: str) -> None:
            if table == "crm_recommendations" and not killed:
                killed.append(_terminate_sync_backend(schema))

        result = sync.sync(
            target, warehouse_path=warehouse, state_dir=tmp_path / "s",
            on_table_applied=drop_once, retry=FAST_RETRY,
        )  # fmt: skip
        assert killed == [1]
        assert (result.status, result.attempts, result.retry_waits) == ("success", 2, [0.2])
        for spec in contract.TABLES:
            assert target_rows(target, spec.name) == _source(warehouse, spec.name), spec.name
        con = psycopg2.connect(PG_URL)
        with con.cursor() as cur:
            cur.execute(f'select status, count(*) from "{schema}".sync_history group by 1')
            assert dict(cur.fetchall()) == {"success": 2}
        con.close()
    finally:
        _drop_schema(schema)


@needs_pg
def test_a_target_failing_on_every_attempt_is_left_unchanged(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    build_exports(warehouse)
    schema = f"test_rel_{uuid.uuid4().hex[:10]}"
    target = PostgresTarget(PG_URL, schema)
    try:
        sync.sync(target, warehouse_path=warehouse, state_dir=tmp_path / "s")
        before = full_state(target)
        build_exports(warehouse, changes=CHANGE_SET)
        drops = []
        with pytest.raises(sync.SyncError, match="unavailable after 3 attempts"):
            sync.sync(
                target, warehouse_path=warehouse, state_dir=tmp_path / "s",
                on_table_applied=lambda t: drops.append(_terminate_sync_backend(schema)),
                retry=FAST_RETRY,
            )  # fmt: skip
        assert drops == [1, 1, 1]
        assert full_state(target) == before
        # A data error is not an availability problem: no retry.
        started = time.monotonic()
        with pytest.raises(sync.SyncError, match="simulated"):
            sync.sync(
                target, warehouse_path=warehouse, state_dir=tmp_path / "s",
                on_table_applied=_raise_simulated,
                retry=RetryPolicy(attempts=3, first_delay_s=30),
            )  # fmt: skip
        assert time.monotonic() - started < 30
        assert full_state(target) == before
        assert sync.sync(target, warehouse_path=warehouse, state_dir=tmp_path / "s").status == (
            "success"
        )
    finally:
        _drop_schema(schema)


def _raise_simulated(table: str) -> None:
    raise RuntimeError("simulated data error")


def _source(warehouse: Path, table: str) -> list[tuple]:
    from tests.crm.test_sync import source_rows

    return source_rows(warehouse, table)


def _drop_schema(schema: str) -> None:
    con = psycopg2.connect(PG_URL)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'drop schema if exists "{schema}" cascade')
    con.close()


# ------------------------------------------------------------------ corrupt landing files


def test_corrupt_gzip_files_are_rejected_with_a_reason_and_a_redelivery_loads(tmp_path):
    folder = landing.partition_dir(tmp_path / "landing", "events", DAY)
    good = write_landing(tmp_path / "landing", [make_event() for _ in range(5)])
    bodies = {
        name: b"\n".join(json.dumps(make_event()).encode() for _ in range(50)) + b"\n"
        for name in ("truncated", "crc", "length", "flipped", "not-gzip", "empty", "trailing")
    }
    whole = {name: gzip.compress(body, mtime=0) for name, body in bodies.items()}

    def flip(data: bytes, at: int) -> bytes:
        return data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1 :]

    corrupt = {
        "truncated": whole["truncated"][: len(whole["truncated"]) // 2],
        "crc": flip(whole["crc"], len(whole["crc"]) - 8),
        "length": flip(whole["length"], len(whole["length"]) - 2),
        "flipped": flip(whole["flipped"], len(whole["flipped"]) // 2),
        "not-gzip": bodies["not-gzip"],
        "empty": b"",
        "trailing": whole["trailing"] + b"not gzip",
    }
    for name, data in corrupt.items():
        (folder / f"part-{name}.ndjson.gz").write_bytes(data)

    report = load.load_landing(tmp_path / "warehouse.duckdb", tmp_path / "landing")
    results = {Path(r.path).name: r for r in report.files}
    assert results[good.name].status == "loaded" and results[good.name].loaded == 5
    reasons = {
        name: results[f"part-{name}.ndjson.gz"].error
        for name in corrupt
        if results[f"part-{name}.ndjson.gz"].status == "unreadable"
    }
    assert reasons == {
        "truncated": "corrupt gzip: truncated (unexpected end of stream)",
        "crc": "corrupt gzip: incorrect data check (CRC-32 mismatch)",
        "length": "corrupt gzip: incorrect length check (length mismatch)",
        "flipped": reasons["flipped"],
        "not-gzip": "corrupt gzip: incorrect header check (not gzip data)",
        "empty": "corrupt gzip: empty file",
        "trailing": "corrupt gzip: incorrect header check (not gzip data)",
    }
    assert reasons["flipped"].startswith("corrupt gzip: ")
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from raw.events").fetchall() == [(5,)]
        assert con.execute("select file_path from raw.load_manifest").fetchall() == [(str(good),)]
        recorded = dict(con.execute("select file_path, reason from raw.rejected_files").fetchall())
    finally:
        con.close()
    assert recorded == {str(folder / f"part-{n}.ndjson.gz"): r for n, r in reasons.items()}

    # Run again: still rejected, recorded once; then the intact files arrive.
    again = load.load_landing(tmp_path / "warehouse.duckdb", tmp_path / "landing")
    assert again.count("unreadable") == len(corrupt) and again.count("already_loaded") == 1
    for name in corrupt:
        (folder / f"part-{name}.ndjson.gz").write_bytes(whole[name])
    fixed = load.load_landing(tmp_path / "warehouse.duckdb", tmp_path / "landing")
    assert fixed.count("loaded") == len(corrupt) and fixed.loaded == 50 * len(corrupt)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from raw.events").fetchall() == [
            (5 + 50 * len(corrupt),)
        ]
        assert con.execute("select count(*) from raw.rejected_files").fetchall() == [
            (len(corrupt),)
        ]
    finally:
        con.close()
    assert load.reconciliation(tmp_path / "warehouse.duckdb")["reconciles"]
