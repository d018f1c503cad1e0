"""Run the Dagster jobs in this process on the configured instance (the demo, the CLI)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
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


# The demo's stages after generate and load, in the order build_warehouse runs
# them, told apart by step keys (first match wins). A step that matches none (the
# deleted-users list, the BI snapshot, a freshness check) belongs to the stage
# under way, and a stage is reported only after the ones before it.
BUILD_STAGES = (
    ("dbt build", ("warehouse_models",)),
    ("ML", ("ml__", "taste_clusters")),
    ("exports + gates", ("export", "gate")),
    ("sync", ("crm_sync",)),
    ("report", ("report",)),
)


def _print_progress(line: str) -> None:
    print(line, flush=True)


def stage_of(step_key: str) -> str | None:
    """The demo stage a step of build_warehouse belongs to (None: not one of them)."""
    for stage, markers in BUILD_STAGES:
        if any(marker in step_key for marker in markers):
            return stage
    return None


def run_all(
    days: list[date] | None = None,
    log_level: str = "WARNING",
    build: bool = True,
    progress: Callable[[str], None] = _print_progress,
) -> list[PipelineRun]:
    """Load the given landing days (default: all present), then build everything downstream.

    Runs are recorded on the configured instance, so the UI shows them afterwards.
    ``progress`` gets a line when the load starts and when each stage of the
    build (BUILD_STAGES) starts its first step.
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
            progress(f"load: landing days {days[0]} .. {days[-1]}")
            result = defs.resolve_job_def("ingest").execute_in_process(
                instance=inst, tags=tags, run_config=run_config
            )
            runs.append(PipelineRun("ingest", result.run_id, result.success))
            if not result.success or not build:
                return runs
        run_id = str(uuid.uuid4())
        inst.add_event_listener(run_id, _stage_listener(progress))
        result = defs.resolve_job_def("build_warehouse").execute_in_process(
            instance=inst, run_config=run_config, run_id=run_id
        )
        runs.append(PipelineRun("build_warehouse", result.run_id, result.success))
    return runs


def _stage_listener(progress: Callable[[str], None]) -> Callable:
    """An event listener that reports each build stage once, when its first step starts."""
    order = [stage for stage, _ in BUILD_STAGES]
    reached = -1

    def on_event(entry) -> None:
        nonlocal reached
        event = entry.dagster_event
        if event is None or event.event_type_value != "STEP_START":
            return
        stage = stage_of(entry.step_key or "")
        if stage is not None and order.index(stage) > reached:
            reached = order.index(stage)
            progress(stage)

    return on_event


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
    by reason (with raw = staged + quarantined), rows per mart (tables and views) and
    which of them are views."""
    s = s or config.settings()
    totals = load.reconciliation(s.warehouse_path)
    con = connect(s.warehouse_path)
    try:
        tables = con.execute(
            "select table_schema, table_name, table_type from information_schema.tables "
            "where table_schema in ('marts', 'exports', 'ml') "
            "and table_type in ('BASE TABLE', 'VIEW') "
            "order by 1, 2"
        ).fetchall()
        rows = {
            f"{schema}.{name}": con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[
                0
            ]
            for schema, name, _ in tables
        }
        views = [f"{schema}.{name}" for schema, name, kind in tables if kind == "VIEW"]
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
        "views": views,
    }
