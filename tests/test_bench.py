"""`ottp bench` on a tiny data set: every stage measured, the peers' results equal.

Not a timed test: speed targets are what the benchmark measures, never asserted here.
The slow peers (bare read_json, pandas loading, dbt on PostgreSQL) are left out and
the dbt tests are skipped to keep this short; the equality checks run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ottp import bench, config

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
        sys.executable, "-m", "ottp.cli", "bench",
        "--events", "20000", "--days", "20",
        "--workdir", str(root / "work"), "--json", str(out),
        "--skip", "read-json", "pandas-load", "dbt-postgres",
        "--no-dbt-tests",
        "--pg-url", bench.DEFAULT_PG_URL,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=config.REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text()), proc


def test_every_stage_has_positive_measurements(report):
    data, _ = report
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
    data, _ = report
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
    _, proc = report
    assert "dbt_full_build: started" in proc.stderr
    assert "end to end (landing -> CRM)" in proc.stdout
