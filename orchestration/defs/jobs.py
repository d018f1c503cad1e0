import dagster as dg

from orchestration.defs.dbt import assets as dbt_assets
from orchestration.defs.partitions import landing_days

# Everything partitioned by landing day: the raw loader, the staging views and the
# incremental models. The rest follows by automation (orchestration/policies.py)
# or through build_warehouse.
DAILY_ASSETS = dg.AssetSelection.groups("ingestion") | dg.AssetSelection.assets(
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

build_warehouse = dg.define_asset_job(
    "build_warehouse",
    selection=dg.AssetSelection.all() - DAILY_ASSETS,
    description="Build every model, check and downstream asset after the daily layer: "
    "marts, the recommender, the CRM exports, their gates and the sync.",
)
