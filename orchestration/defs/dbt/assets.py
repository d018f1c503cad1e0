"""The warehouse's dbt models as assets: the daily layer (partitioned by landing day) and
everything after it up to the marts. The CRM export models are defs/crm/'s."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.defs.ingest.partitions import landing_days
from orchestration.lib.dbt.build import build_with_row_counts, partition_window_env
from orchestration.lib.dbt.project import DAILY_SELECTION, EXPORTS_SELECTION, dbt_project
from orchestration.lib.dbt.translator import translator
from ottp import config, instance

# On a DuckDB file a 90-day backfill is one dbt invocation whose window spans it;
# engines that take several writers backfill a week per run, in parallel.
DAILY_BACKFILL = (
    dg.BackfillPolicy.single_run()
    if config.settings().warehouse_writers == 1
    else dg.BackfillPolicy.multi_run(max_partitions_per_run=7)
)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    select=DAILY_SELECTION,
    partitions_def=landing_days,
    backfill_policy=DAILY_BACKFILL,
    pool=instance.dbt_pool(),
)
def daily_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """dbt build of staging and the incremental models for the selected landing days."""
    window = partition_window_env(context)
    context.log.info(
        "Landing window: " + ", ".join(f"{name}={value}" for name, value in window.items())
    )
    yield from build_with_row_counts(context, dbt, window)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    exclude=f"{EXPORTS_SELECTION} {DAILY_SELECTION}",
    pool=instance.dbt_pool(),
)
def warehouse_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """dbt build: the intermediate models that are not incremental and the marts, tested."""
    yield from build_with_row_counts(context, dbt)
