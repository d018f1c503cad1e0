"""The CRM gates: a blocking Great Expectations suite on each synced export table
(ottp/crm/gates.py); a failed gate stops the sync."""

import dagster as dg

from orchestration.defs.crm import assets
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.specs import WAREHOUSE_WRITER_POOL
from ottp.crm import gates


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "crm_quality_gate",
            asset=assets.EXPORT_KEYS[table],
            blocking=True,
            description="Great Expectations suite of the export table (ottp/crm/gates.py): "
            "keys, allowed values, consent, recommendations, circuit breaker, freshness.",
        )
        for table in assets.SYNCED
    ],
    # automation may rebuild only some export tables; their gates run, the others stand
    can_subset=True,
    pool=WAREHOUSE_WRITER_POOL,
)
def crm_quality_gates(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    selected = {key.asset_key.path[-1] for key in context.selected_asset_check_keys}
    tables = [t for t in assets.SYNCED if t in selected]
    results = gates.validate(tables, warehouse_path=warehouse.warehouse)
    for table, result in results.items():
        yield dg.AssetCheckResult(
            asset_key=assets.EXPORT_KEYS[table],
            check_name="crm_quality_gate",
            passed=result.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "summary": dg.MetadataValue.md(result.summary_markdown()),
                "failed_expectations": len(result.failures),
                "evaluated_expectations": result.evaluated,
                "rows": result.row_count,
                "last_sync_rows": result.last_sync_rows or 0,
                "results": dg.MetadataValue.path(str(result.results_path)),
                "seconds": result.seconds,
            },
        )
