"""The daily layer and the job that loads landing days into it."""

import dagster as dg

from orchestration.defs.dbt import assets as dbt_assets
from orchestration.defs.ingest.partitions import landing_days
from orchestration.lib.specs import Group

# Everything partitioned by landing day: the raw loader, the staging views and the
# incremental models. The rest follows by automation (defs/automation/policies.py)
# or through build_warehouse.
DAILY_ASSETS = dg.AssetSelection.groups(Group.INGESTION) | dg.AssetSelection.assets(
    *dbt_assets.daily_models.keys
)

ingest = dg.define_asset_job(
    "ingest",
    selection=DAILY_ASSETS,
    partitions_def=landing_days,
    description="Load the landing files of the selected days into the raw tables, then "
    "build staging and the incremental models for those days (the window reaches dbt as "
    "OTTP_MIN_DATE/OTTP_MAX_DATE).",
)
