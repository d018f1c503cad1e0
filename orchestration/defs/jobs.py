import dagster as dg

from orchestration.defs.partitions import landing_days

ingest = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups("ingestion"),
    partitions_def=landing_days,
    description="Load landing files of the selected days into the raw tables.",
)

build_warehouse = dg.define_asset_job(
    "build_warehouse",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("ingestion"),
    description="Build every model, check and downstream asset from the raw tables.",
)
