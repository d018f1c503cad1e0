"""The daily schedule of the ingest job."""

import dagster as dg

from orchestration.defs.ingest import jobs

# Every morning, load yesterday's landing partition (late files of earlier days
# are picked up by the new_landing_files sensor).
daily_ingest = dg.build_schedule_from_partitioned_job(
    jobs.ingest,
    name="daily_ingest",
    hour_of_day=2,
    minute_of_hour=0,
    description="Load the previous landing day at 02:00 UTC.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
