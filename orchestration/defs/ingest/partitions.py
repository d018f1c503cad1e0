"""Landing days: the partitions of the raw loader, the daily dbt layer and the ingest job."""

import dagster as dg

from ottp import config

# The first day is configurable so a platform's history fits; the demo data starts
# on the default.
landing_days = dg.DailyPartitionsDefinition(start_date=config.first_landing_day(), end_offset=1)
