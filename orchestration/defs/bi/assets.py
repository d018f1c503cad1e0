"""The BI snapshot: what BI tools read while runs write the warehouse."""

import dagster as dg

from orchestration.defs.dbt import assets as dbt_assets
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.specs import WAREHOUSE_WRITER_POOL, Group, Kind, Owner, layer_tags
from ottp import config
from ottp.bi import snapshot

MART_KEYS = [key for key in dbt_assets.warehouse_models.keys if key.path[0] == "marts"]


@dg.asset(
    key=["bi", "marts_snapshot"],
    deps=MART_KEYS,
    group_name=Group.MARTS,
    kinds={Kind.DUCKDB},
    owners=[Owner.DATA_PLATFORM],
    tags=layer_tags("bi"),
    pool=WAREHOUSE_WRITER_POOL,
    description="A read-only copy of every mart in $OTTP_DATA_DIR/bi/marts_snapshot.duckdb, "
    "written "
    "under a temporary name and renamed into place after each build, so BI tools read a "
    "complete, consistent set of marts while runs hold the warehouse's write lock "
    "(ottp/bi/snapshot.py).",
)
def marts_snapshot(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    report = snapshot.publish(
        warehouse_path=warehouse.warehouse,
        snapshot_path=config.settings().bi_snapshot_path,
        run_id=context.run_id,
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(report.path)),
            "published_at": report.published_at.isoformat(),
            "tables": len(report.rows),
            "rows": sum(report.rows.values()),
            "size_mib": round(report.bytes / 2**20, 2),
            "seconds": report.seconds,
            "contents": dg.MetadataValue.md(report.markdown()),
            "connect": dg.MetadataValue.md(
                f"`duckdb -readonly {report.path}`, then `select * from marts.users limit 10`"
            ),
        }
    )
