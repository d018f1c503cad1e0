"""The serving bundle: the marts the live profile needs, published for the server after each build.

The asset follows the marts it reads like every other asset after the daily layer
(the automation policy of defs/automation/ applies to it); each materialization
records the version it published, so the asset's history in the UI lists the
bundle versions the servers have picked up.
"""

import dagster as dg

from orchestration.defs.resources import WarehouseResource
from orchestration.lib.specs import WAREHOUSE_WRITER_POOL, Group, Kind, Owner, layer_tags
from ottp import config
from ottp.realtime import bundle

# What publish_bundle reads (bundle.TABLES).
READS = [
    dg.AssetKey(["reference", "segment_thresholds"]),
    dg.AssetKey(["marts", "titles"]),
    dg.AssetKey(["marts", "plays"]),
    dg.AssetKey(["marts", "user_lifecycle"]),
    dg.AssetKey(["marts", "user_category_segments"]),
    dg.AssetKey(["marts", "continue_watching"]),
    dg.AssetKey(["exports", "crm_trigger_log"]),
    # the categories' names and who a live trigger may concern
    dg.AssetKey(["reference", "categories"]),
    dg.AssetKey(["marts", "users"]),
    dg.AssetKey(["exports", "crm_contacts"]),
    dg.AssetKey(["raw", "deleted_users"]),
]


@dg.asset(
    key=["serving", "bundle"],
    deps=READS,
    group_name=Group.SERVING,
    kinds={Kind.DUCKDB, Kind.PYTHON},
    owners=[Owner.PERSONALISATION],
    tags=layer_tags("serving"),
    # it opens the DuckDB file (read-only), which a writer holding it would refuse
    pool=WAREHOUSE_WRITER_POOL,
    description="The serving bundle the real-time server (`ottp serve`) reads: segment "
    "thresholds, the dbt rule values, titles, and per user the lifecycle, segments per "
    "category, validly played titles per category, continue-watching and fired triggers, "
    "as Parquet in $OTTP_BUNDLE_DIR/bundles/<version>/ with a manifest; the CURRENT "
    "pointer is replaced atomically and the server swaps to the new version without "
    "dropping a request (ottp/realtime/bundle.py).",
)
def serving_bundle(warehouse: WarehouseResource) -> dg.MaterializeResult:
    info = bundle.publish_bundle(
        warehouse_path=warehouse.warehouse,
        bundle_dir=config.realtime_settings().bundle_dir,
    )
    return dg.MaterializeResult(
        metadata={
            "bundle_version": info.version,
            "path": dg.MetadataValue.path(str(info.path)),
            "as_of": info.as_of or "",
            "created_at": info.created_at,
            "users": info.rows["lifecycle"],
            "titles": info.rows["titles"],
            "dagster/row_count": sum(info.rows.values()),
            "size_kib": round(info.bytes / 1024, 1),
            "seconds": info.seconds,
            "contents": dg.MetadataValue.md(info.markdown()),
            "rows": dg.MetadataValue.json(info.rows),
        }
    )
