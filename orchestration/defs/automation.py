"""The sensors that evaluate automation conditions and freshness checks."""

from datetime import timedelta

import dagster as dg

from orchestration.defs.dbt import assets as dbt_assets
from orchestration.defs.exports import assets as export_assets

# How stale a mart or an export may get: landing files arrive daily, so a table not
# rebuilt for more than a day and a bit means ingestion or automation has stopped.
MAX_STALENESS = timedelta(hours=26)


def _freshness_targets() -> list[dg.AssetKey]:
    marts = [key for key in dbt_assets.warehouse_models.keys if key.path[0] == "marts"]
    exports = list(export_assets.export_models.keys)
    synced = [dg.AssetKey(["crm", t]) for t in export_assets.SYNCED]
    return marts + exports + synced


@dg.definitions
def automation() -> dg.Definitions:
    freshness_checks = dg.build_last_update_freshness_checks(
        assets=_freshness_targets(),
        lower_bound_delta=MAX_STALENESS,
        severity=dg.AssetCheckSeverity.WARN,
    )
    return dg.Definitions(
        asset_checks=freshness_checks,
        sensors=[
            dg.AutomationConditionSensorDefinition(
                "warehouse_automation",
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=15,
                description="Materializes every asset after the daily layer when what it "
                "reads has changed (conditions in orchestration/policies.py).",
            ),
            dg.build_sensor_for_freshness_checks(
                freshness_checks=freshness_checks,
                name="freshness_checks",
                minimum_interval_seconds=300,
                default_status=dg.DefaultSensorStatus.RUNNING,
            ),
        ],
    )
