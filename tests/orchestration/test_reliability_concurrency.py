"""Concurrency: two runs started at once never corrupt the warehouse or the CRM target;
one waits for the other or fails cleanly. Each run is a real child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import duckdb
import psycopg2
import pytest

from ottp import config
from ottp.crm import contract, sync
from ottp.crm.targets import PostgresTarget, SqliteTarget, Target
from ottp.ingest import landing, load
from ottp.warehouse import WarehouseBusy
from tests.crm.test_sync import PG, PG_URL, build_exports, source_rows, target_rows
from tests.orchestration.test_reliability_faults import _raw_difference

needs_pg = pytest.mark.skipif(not PG, reason="no PostgreSQL at 127.0.0.1:5432")
PRELUDE = (
    "import json, logging, sys\n"
    "logging.basicConfig(stream=sys.stderr, level=logging.INFO,\n"
    "                    format='%(name)s %(message)s')\n"
)


def start(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=config.REPO_ROOT,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    """Exit code, the last line of stdout (DuckDB may draw a progress bar before it), stderr."""
    out, err = proc.communicate(timeout=600)
    lines = out.strip().splitlines()
    return proc.returncode, lines[-1] if lines else "", err


@pytest.fixture(scope="module")
def simulated(reliability_landing) -> Path:
    """Landing files of 16 days with dirty data, simulated once per session
    (tests/orchestration/conftest.py); read only."""
    return reliability_landing


def test_two_loaders_at_once_load_each_file_once(simulated, tmp_path):
    clean = tmp_path / "clean" / "warehouse.duckdb"
    reference = load.load_landing(clean, simulated)
    shared = tmp_path / "shared" / "warehouse.duckdb"
    code = f"""
        from ottp.ingest import load
        from ottp.warehouse import WarehouseBusy
        report = load.load_landing({str(shared)!r}, {str(simulated)!r})
        print(json.dumps(report.to_dict()))
    """
    procs = [start(code), start(code)]
    results = [finish(p) for p in procs]
    assert [rc for rc, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    reports = [json.loads(out) for _, out, _ in results]
    # One loaded every file; the other waited for the file, then found them loaded.
    files = len(landing.discover(simulated))
    assert sorted(r["files_loaded"] for r in reports) == [0, files]
    assert sorted(r["files_already_loaded"] for r in reports) == [0, files]
    assert sum("held by another process; waiting" in err for _, _, err in results) == 1
    assert sum(r["events_loaded"] for r in reports) == reference.events_loaded
    assert set(_raw_difference(clean, shared).values()) == {0}
    assert load.reconciliation(shared)["reconciles"]


def test_a_loader_that_cannot_get_the_warehouse_in_time_fails_cleanly(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    holder = start(f"""
        import duckdb, time
        con = duckdb.connect({str(warehouse)!r})
        con.execute("create table keep as select 1 as x")
        print("holding", flush=True)
        time.sleep(60)
    """)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with pytest.raises(WarehouseBusy, match="held by another process after waiting 1 s"):
            load.load_files(warehouse, [], lock_wait_s=1)
        assert 1 <= time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select * from keep").fetchall() == [(1,)]
    con.close()


def test_a_sync_waits_for_a_run_writing_the_warehouse(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    build_exports(warehouse)
    holder = start(f"""
        import duckdb, time
        con = duckdb.connect({str(warehouse)!r})
        print("holding", flush=True)
        time.sleep(2)
    """)
    target = SqliteTarget(tmp_path / "crm" / "crm.sqlite")
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        result = sync.sync(target, warehouse_path=warehouse, state_dir=tmp_path / "s")
    finally:
        holder.wait()
    assert result.status == "success" and time.monotonic() - started >= 1
    for spec in contract.TABLES:
        assert target_rows(target, spec.name) == source_rows(warehouse, spec.name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_pg)])
def target(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteTarget(tmp_path / "crm" / "crm.sqlite")
        return
    schema = f"test_conc_{uuid.uuid4().hex[:10]}"
    yield PostgresTarget(PG_URL, schema)
    con = psycopg2.connect(PG_URL)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'drop schema if exists "{schema}" cascade')
    con.close()


def _make(target: Target) -> str:
    if isinstance(target, SqliteTarget):
        return f"SqliteTarget({str(target.path)!r})"
    return f"PostgresTarget({PG_URL!r}, {target.schema!r})"


def _history(target: Target) -> list[tuple[str, int]]:
    query = "select status, inserted + updated + deleted from {} order by started_at"
    if isinstance(target, SqliteTarget):
        import sqlite3

        con = sqlite3.connect(target.path)
        rows = con.execute(query.format("sync_history")).fetchall()
        con.close()
        return rows
    con = psycopg2.connect(PG_URL)
    with con.cursor() as cur:
        cur.execute(query.format(f'"{target.schema}".sync_history'))
        rows = cur.fetchall()
    con.close()
    return rows


CHANGES = """
    update exports.crm_recommendations set score = score + 1;
    delete from exports.crm_contacts where user_id = 'u_0003';
    delete from exports.crm_recommendations where user_id = 'u_0003';
    delete from exports.crm_triggers where user_id = 'u_0003';
"""


def _two_syncs(target, warehouse, state_dirs) -> list[tuple[int, str, str]]:
    procs = [
        start(f"""
            from ottp.crm import sync
            from ottp.crm.targets import PostgresTarget, SqliteTarget
            try:
                result = sync.sync({_make(target)}, warehouse_path={str(warehouse)!r},
                                   state_dir={str(state)!r})
            except sync.SyncError as e:
                print(json.dumps({{"error": str(e)}}))
                sys.exit(1)
            print(json.dumps({{"status": result.status, "changes": result.changes}}))
        """)
        for state in state_dirs
    ]
    return [finish(p) for p in procs]


def test_two_syncs_from_one_machine_run_one_after_the_other(target, tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    build_exports(warehouse, users=5000, recs=20)
    state = tmp_path / "state"
    sync.sync(target, warehouse_path=warehouse, state_dir=state)
    build_exports(warehouse, users=5000, recs=20, changes=CHANGES)

    results = _two_syncs(target, warehouse, [state, state])
    assert [rc for rc, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    outcomes = sorted(json.loads(out)["status"] for _, out, _ in results)
    # The second waited for the first's local snapshot, then found nothing to do.
    assert outcomes == ["success", "unchanged"]
    assert any("held by another process; waiting" in err for _, _, err in results)
    assert [s for s, _ in _history(target)] == ["success", "success"]
    for spec in contract.TABLES:
        assert target_rows(target, spec.name) == source_rows(warehouse, spec.name)


def test_two_syncs_from_two_machines_never_interleave(target, tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    build_exports(warehouse, users=5000, recs=20)
    sync.sync(target, warehouse_path=warehouse, state_dir=tmp_path / "a")
    sync.sync(target, warehouse_path=warehouse, state_dir=tmp_path / "b")  # b's snapshot
    build_exports(warehouse, users=5000, recs=20, changes=CHANGES)

    results = _two_syncs(target, warehouse, [tmp_path / "a", tmp_path / "b"])
    outcomes = []
    for rc, out, err in results:
        answer = json.loads(out)
        if rc == 0:
            outcomes.append(answer["status"])
        else:
            # The one that lost the race stops before writing anything.
            assert "another sync committed meanwhile; run again" in answer["error"], err[-2000:]
            outcomes.append("failed")
    assert outcomes.count("success") == 1, outcomes
    assert set(outcomes) <= {"success", "failed", "unchanged"}
    history = _history(target)
    assert [s for s, n in history if s == "success" and n] == ["success", "success"]
    for spec in contract.TABLES:
        assert target_rows(target, spec.name) == source_rows(warehouse, spec.name)
    # Whoever lost sees the other's result and has nothing left to apply.
    for state in ("a", "b"):
        assert sync.sync(target, warehouse_path=warehouse, state_dir=tmp_path / state).status == (
            "unchanged"
        )
