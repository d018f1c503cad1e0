"""The sensor that starts an ingest run when landing files arrive or change."""

import hashlib
import json

import dagster as dg

from orchestration.defs.ingest import jobs
from orchestration.defs.ingest.partitions import landing_days
from ottp import config
from ottp.ingest import landing


@dg.sensor(
    job=jobs.ingest,
    minimum_interval_seconds=30,
    description="Start one ingest run over the landing days that received a new or changed "
    "file since the last tick.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_landing_files(context: dg.SensorEvaluationContext):
    # The cursor remembers (size, mtime) per file seen, so the sensor never opens
    # the warehouse (a run may hold DuckDB's write lock) and a re-written file
    # is noticed too. The loader itself skips files it already loaded.
    seen: dict[str, list[int]] = json.loads(context.cursor) if context.cursor else {}
    current: dict[str, list[int]] = {}
    changed: dict[str, list[int]] = {}
    days: set[str] = set()
    for f in landing.discover(config.settings().landing_dir):
        stat = f.path.stat()
        signature = [stat.st_size, stat.st_mtime_ns]
        current[str(f.path)] = signature
        if seen.get(str(f.path)) != signature:
            changed[str(f.path)] = signature
            days.add(f.partition_date.isoformat())
    if not changed:
        return dg.SkipReason("No new landing file.")
    context.update_cursor(json.dumps(current))
    first_day = landing_days.start.date().isoformat()
    early = sorted(d for d in days if d < first_day)
    if early:
        context.log.warning(
            "Landing days %s are before the first partition %s; set OTTP_FIRST_LANDING_DAY",
            ", ".join(early),
            first_day,
        )
    days = {d for d in days if d >= first_day}
    if not days:
        return dg.SkipReason("Only files of days before the first partition changed.")
    # One run for every changed day (a first tick after a deployment sees them all):
    # the loader and the daily dbt models take the range in one invocation.
    start, end = min(days), max(days)
    digest = hashlib.sha256(json.dumps(sorted(changed.items())).encode()).hexdigest()[:16]
    tags = {"ottp/trigger": "new_landing_files", "ottp/files": str(len(changed))}
    if start == end:
        return dg.RunRequest(run_key=f"{start}:{digest}", partition_key=start, tags=tags)
    return dg.RunRequest(
        run_key=f"{start}..{end}:{digest}",
        tags={
            **tags,
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
    )
