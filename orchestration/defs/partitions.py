import os

import dagster as dg

# Landing days. The first day is configurable so a platform's history fits;
# the demo data starts on the default.
landing_days = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("OTTP_FIRST_LANDING_DAY", "2026-08-01"),
    end_offset=1,
)
