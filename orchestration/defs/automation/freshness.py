"""Freshness checks on the marts, the exports and the CRM tables, and their sensor."""

from datetime import timedelta

import dagster as dg

from orchestration.defs.crm import assets as crm_assets
from orchestration.defs.dbt import assets as dbt_assets

# How stale a mart or an export may get: landing files arrive daily, so a table not
# rebuilt for more than a day and a bit means ingestion or automation has stopped.
MAX_STALENESS = timedelta(hours=26)


def _freshness_targets() -> list[dg.AssetKey]:
    marts = [key for key in dbt_assets.warehouse_models.keys if key.path[0] == "marts"]
    exports = list(crm_assets.export_models.keys)
    synced = [dg.AssetKey(["crm", t]) for t in crm_assets.SYNCED]
    return marts + exports + synced


@dg.definitions
def freshness() -> dg.Definitions:
    checks = dg.build_last_update_freshness_checks(
        assets=_freshness_targets(),
        lower_bound_delta=MAX_STALENESS,
        severity=dg.AssetCheckSeverity.WARN,
    )
    return dg.Definitions(
        asset_checks=checks,
        sensors=[
            dg.build_sensor_for_freshness_checks(
                freshness_checks=checks,
                name="freshness_checks",
                minimum_interval_seconds=300,
                default_status=dg.DefaultSensorStatus.RUNNING,
            )
        ],
    )
