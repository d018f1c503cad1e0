import hashlib
import json

import dagster as dg

from ottp import config, landing
from orchestration.defs.jobs import ingest
from orchestration.defs.partitions import landing_days

# Every morning, load yesterday's landing partition (late files of earlier days
# are picked up by the sensor below).
daily_ingest = dg.build_schedule_from_partitioned_job(
    ingest,
    name="daily_ingest",
    hour_of_day=2,
    minute_of_hour=0,
    description="Load the previous landing day at 02:00 UTC.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.sensor(
    job=ingest,
    minimum_interval_seconds=30,
    description="Start an ingest run for every landing day that received a new or changed file.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_landing_files(context: dg.SensorEvaluationContext):
    # The cursor remembers (size, mtime) per file seen, so the sensor never opens
    # the warehouse (a run may hold DuckDB's write lock) and a re-written file
    # is noticed too. The loader itself skips files it already loaded.
    seen: dict[str, list[int]] = json.loads(context.cursor) if context.cursor else {}
    current: dict[str, list[int]] = {}
    changed_days: dict[str, list[str]] = {}
    for f in landing.discover(config.settings().landing_dir):
        stat = f.path.stat()
        signature = [stat.st_size, stat.st_mtime_ns]
        current[str(f.path)] = signature
        if seen.get(str(f.path)) != signature:
            changed_days.setdefault(f.partition_date.isoformat(), []).append(f.path.name)
    if not changed_days:
        return dg.SkipReason("No new landing file.")
    context.update_cursor(json.dumps(current))
    first_day = landing_days.start.date().isoformat()
    for day, names in sorted(changed_days.items()):
        if day < first_day:
            context.log.warning("Landing day %s is before the first partition %s", day, first_day)
            continue
        digest = hashlib.sha256(json.dumps([current[n] for n in sorted(current)]).encode())
        yield dg.RunRequest(
            run_key=f"{day}:{digest.hexdigest()[:16]}",
            partition_key=day,
            tags={"ottp/trigger": "new_landing_files", "ottp/files": str(len(names))},
        )
