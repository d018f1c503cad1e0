"""The raw loader's reconciliation, a blocking check on raw.events."""

import dagster as dg

from orchestration.defs.resources import WarehouseResource
from ottp.ingest import load


@dg.asset_check(
    asset=dg.AssetKey(["raw", "events"]),
    description="Over every file ever loaded: lines_in = loaded + duplicates + rejected "
    "+ skipped (Segment export calls that map to no contract event), and the tables hold "
    "exactly the rows the manifest says were written.",
    blocking=True,
)
def load_reconciliation(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    totals = load.reconciliation(warehouse.warehouse)
    return dg.AssetCheckResult(
        passed=bool(totals["reconciles"]),
        metadata={k: v for k, v in totals.items() if k != "reconciles"},
    )
