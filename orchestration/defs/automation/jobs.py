"""build_warehouse: by hand, what automation materializes after the daily layer."""

import dagster as dg

from orchestration.defs.ingest.jobs import DAILY_ASSETS

build_warehouse = dg.define_asset_job(
    "build_warehouse",
    selection=dg.AssetSelection.all() - DAILY_ASSETS,
    description="Build every model, check and downstream asset after the daily layer: "
    "marts, the recommender, the CRM exports, their gates and the sync.",
)
