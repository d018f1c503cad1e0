"""`ottp demo`'s path on a small generated data set: simulate, load, build, summarise."""

from __future__ import annotations

import pytest

from ottp import cli, pipeline
from ottp.ingest import landing, load
from tests.orchestration.conftest import DEMO_DAYS


@pytest.fixture(scope="module")
def small_run(demo_build, demo_checkout):
    """The session's demo build (tests/orchestration/conftest.py): simulate, then
    ``pipeline.run_all()``; its simulator summary and runs."""
    return demo_checkout, demo_build.details["sim"], demo_build.details["runs"]


def test_every_run_succeeds(small_run):
    _, _, runs = small_run
    assert [r.job for r in runs] == ["ingest", "build_warehouse"]
    assert all(r.success for r in runs)


def test_every_simulated_line_is_accounted_for(small_run):
    root, sim, _ = small_run
    totals = load.reconciliation(root / "warehouse.duckdb")
    assert totals["reconciles"]
    assert totals["lines_in"] == sim.lines_written
    assert totals["events_loaded"] == sim.events_written
    assert totals["duplicates"] == sim.duplicate_lines
    assert totals["rejected"] == sum(sim.malformed_lines.values())
    summary = pipeline.summary()
    expected = {k: v for k, v in sim.malformed_lines.items() if v}
    assert summary["rejected_by_reason"] == expected


def test_marts_are_built_and_not_empty(small_run):
    summary = pipeline.summary()
    assert summary["rows"], "no mart table was built"
    assert all(n > 0 for n in summary["rows"].values()), summary["rows"]
    # the marts kept as filters over incremental tables are views, and counted
    assert set(summary["views"]) == {
        "marts.pauses",
        "marts.plays",
        "marts.sessions",
        "marts.title_engagement_daily",
    }
    assert set(summary["views"]) <= set(summary["rows"])


def test_the_runs_are_on_the_instance_the_ui_reads(small_run):
    import dagster as dg

    root, _, runs = small_run
    with dg.DagsterInstance.get() as inst:
        assert str(root) in inst.root_directory
        for run in runs:
            assert inst.get_run_by_id(run.run_id).is_success
        events = inst.fetch_materializations(dg.AssetKey(["raw", "events"]), limit=5)
        assert events.records
        metadata = events.records[0].asset_materialization.metadata
        assert metadata["reconciles"].value is True


def test_a_second_demo_loads_nothing_new(small_run, capsys):
    root, sim, _ = small_run
    assert len(landing.partition_dates(root / "landing")) >= DEMO_DAYS
    assert cli.main(["load"]) == 0
    out = capsys.readouterr().out
    assert "already loaded" in out
    assert load.reconciliation(root / "warehouse.duckdb")["events_in_table"] == sim.events_written
