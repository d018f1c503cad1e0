"""Run the Dagster jobs in this process on the configured instance (the demo, the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from ottp import config, instance
from ottp.bi import report
from ottp.ingest import landing, load
from ottp.warehouse import connect


@dataclass
class PipelineRun:
    job: str
    run_id: str
    success: bool


def run_all(
    days: list[date] | None = None, log_level: str = "WARNING", build: bool = True
) -> list[PipelineRun]:
    """Load the given landing days (default: all present), then build everything downstream.

    Runs are recorded on the configured instance, so the UI shows them afterwards.
    """
    import dagster as dg

    from orchestration.definitions import defs as load_defs

    s = config.settings()
    instance.prepare_dagster_home(s)
    days = days or landing.partition_dates(s.landing_dir)
    defs = load_defs()
    runs = []
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    with dg.DagsterInstance.get() as inst:
        if days:
            tags = {
                "dagster/asset_partition_range_start": days[0].isoformat(),
                "dagster/asset_partition_range_end": days[-1].isoformat(),
            }
            print(f"Loading landing days {days[0]} .. {days[-1]} ...", flush=True)
            result = defs.resolve_job_def("ingest").execute_in_process(
                instance=inst, tags=tags, run_config=run_config
            )
            runs.append(PipelineRun("ingest", result.run_id, result.success))
            if not result.success or not build:
                return runs
        print("Building the warehouse (dbt build and downstream assets) ...", flush=True)
        result = defs.resolve_job_def("build_warehouse").execute_in_process(
            instance=inst, run_config=run_config
        )
        runs.append(PipelineRun("build_warehouse", result.run_id, result.success))
    return runs


def backfill(
    first: date, last: date, build: bool = True, log_level: str = "WARNING"
) -> list[PipelineRun]:
    """Re-run the daily layer for first..last (inclusive) in one run, then (by default) the rest.

    The raw loader skips files it already loaded; dbt rebuilds every session and play
    with activity on those days, even past the incremental lookback.
    """
    if last < first:
        raise ValueError(f"the backfill ends ({last}) before it starts ({first})")
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    runs = run_all(days, log_level=log_level, build=build)
    return runs


def summary(s: config.Settings | None = None) -> dict:
    """What was built: events loaded and rejected, rows quarantined out of staging
    by reason (with raw = staged + quarantined), and rows per mart."""
    s = s or config.settings()
    totals = load.reconciliation(s.warehouse_path)
    con = connect(s.warehouse_path)
    try:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('marts', 'exports', 'ml') and table_type = 'BASE TABLE' "
            "order by 1, 2"
        ).fetchall()
        rows = {
            f"{schema}.{name}": con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[
                0
            ]
            for schema, name in tables
        }
        rejected = dict(
            con.execute(
                "select reason_code, count(*) from raw.rejected_events group by 1 order by 1"
            ).fetchall()
        )
        quarantine = report.quarantine(con)
    finally:
        con.close()
    return {
        "load": totals,
        "rejected_by_reason": rejected,
        "quarantine": quarantine,
        "rows": rows,
    }
