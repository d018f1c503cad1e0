"""The benchmark suite (`python benchmarks/suite.py`) on a tiny data set: every stage
measured, the peers' results equal.

Not a timed test: speed targets are what the benchmark measures, never asserted here.
The slow peers (bare read_json, pandas loading, dbt on PostgreSQL) are left out and
the dbt tests are skipped to keep this short; the equality checks run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import suite
from ottp import config

STAGES = (
    "generate",
    "load",
    "dbt_full_build",
    "train",
    "recommend",
    "exports",
    "quality",
    "sync_sqlite",
    "load_day",
    "dbt_incremental_day",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    out = root / "bench.json"
    cmd = [
        sys.executable, str(config.REPO_ROOT / "benchmarks" / "suite.py"),
        "--events", "20000", "--days", "20",
        "--workdir", str(root / "work"), "--json", str(out), "--keep",
        "--skip", "read-json", "pandas-load", "dbt-postgres",
        "--no-dbt-tests",
        "--pg-url", suite.DEFAULT_PG_URL,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=config.REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text()), proc, root / "work" / "events-20000"


def test_every_stage_has_positive_measurements(report):
    data, _, _ = report
    (run,) = data["runs"]
    stages = run["stages"]
    expected = list(STAGES) + (["sync_postgres"] if "postgresql" in data else [])
    for name in expected:
        m = stages[name]
        assert m["wall_s"] > 0 and m["cpu_s"] > 0, name
        assert m["peak_rss_mib"] > 0 and m["items"] > 0 and m["per_s"] > 0, name
    assert stages["load"]["reconciles"]
    assert stages["quality"]["success"]
    assert run["summary"]["end_to_end_s"] > 0
    assert data["machine"]["cpus"] and data["load_avg_start"]


def test_peer_results_are_equal(report):
    data, _, _ = report
    (run,) = data["runs"]
    sessions = run["peers"]["pandas_sessions"]
    assert sessions["equal"] and sessions["sessions_dbt"] > 0
    assert sessions["only_in_dbt"] == 0 and sessions["only_in_pandas"] == 0
    sync = run["peers"]["sync_delete_insert"]
    assert sync["equal"] and sync["changed_rows"] > 0
    assert run["summary"]["sessions_equal"] and run["summary"]["sync_equal"]
    train = run["stages"]["train"]
    assert train["als"]["users"] > 0 and train["popularity"]["users"] > 0


def test_progress_goes_to_stderr_and_the_table_to_stdout(report):
    _, proc, _ = report
    assert "dbt_full_build: started" in proc.stderr
    assert "end to end (landing -> CRM)" in proc.stdout


def test_the_no_data_floor_runs_the_daily_build_and_puts_the_warehouse_back(report):
    import duckdb

    data, _, work = report
    (run,) = data["runs"]
    floor, day = run["peers"]["dbt_no_data"], run["stages"]["dbt_incremental_day"]
    # the same nodes as the day, all passing, on a warehouse without rows
    assert floor["nodes"] == day["nodes"] > 0 and not floor.get("failed_nodes")
    assert floor["wall_s"] > 0 and floor["items"] == floor["nodes"]
    summary = run["summary"]
    assert summary["dbt_no_data_vs_full"] == round(
        floor["wall_s"] / run["stages"]["dbt_full_build"]["wall_s"], 4
    )
    assert summary["incremental_above_no_data_s"] == round(day["wall_s"] - floor["wall_s"], 2)
    # the loaded warehouse is back in its place, the empty one gone
    assert not (work / "warehouse-aside").exists()
    con = duckdb.connect(str(work / "data" / "warehouse.duckdb"), read_only=True)
    try:
        events = con.execute("select count(*) from raw.events").fetchone()[0]
    finally:
        con.close()
    assert (
        events
        == run["stages"]["load"]["events_loaded"] + run["stages"]["load_day"]["events_loaded"]
    )
