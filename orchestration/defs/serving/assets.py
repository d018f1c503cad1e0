"""The serving bundle: the marts the live profile needs and the live recommendations'
serving model, published for the server after each build.

The asset follows what it reads like every other asset after the daily layer (the
automation policy of defs/automation/ applies to it): the marts, and the ML assets
the serving model is written from, so a newly trained (and, past the gate,
promoted) model or new batch recommendations publish a new bundle, which the
servers hot-reload. Each materialization records the bundle version and the model
version it published, so the asset's history in the UI lists the versions the
servers have picked up.
"""

import dagster as dg

from orchestration.defs.ml.tables import ml_key, registry
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
    # the serving model (ottp.realtime.rerank.write_serving_model): the promoted model,
    # the training values, the batch recommendations, the title transitions
    dg.AssetKey(["marts", "title_transitions"]),
    ml_key("recommender_model"),
    ml_key("training_interactions"),
    ml_key("recommendations"),
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
    "as Parquet, and the live recommendations' serving model (from the promoted model), "
    "in $OTTP_BUNDLE_DIR/bundles/<version>/ with a manifest of checksums; the CURRENT "
    "pointer is replaced atomically and the server swaps to the new version without "
    "dropping a request (ottp/realtime/bundle.py).",
)
def serving_bundle(warehouse: WarehouseResource) -> dg.MaterializeResult:
    info = bundle.publish_bundle(
        warehouse_path=warehouse.warehouse,
        bundle_dir=config.realtime_settings().bundle_dir,
        models_dir=registry(warehouse).root,
    )
    return dg.MaterializeResult(
        metadata={
            "bundle_version": info.version,
            "model_version": info.model_version or f"none: {info.model_reason}",
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
