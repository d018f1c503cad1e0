"""The pipeline report: the quality and audience story of the latest build, in one page."""

import dagster as dg

from orchestration.defs.crm import assets as crm_assets
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.specs import WAREHOUSE_WRITER_POOL, Group, Kind, Owner, layer_tags
from ottp.bi import report


@dg.asset(
    key=["quality", "pipeline_report"],
    deps=[
        dg.AssetKey(["raw", "rejected_events"]),
        dg.AssetKey(["marts", "user_segments"]),
        dg.AssetKey(["marts", "user_category_segments"]),
        dg.AssetKey(["marts", "user_lifecycle"]),
        dg.AssetKey(["marts", "sessions"]),
        dg.AssetKey(["ml", "recommender_model"]),
        # after the gates and the sync: the page shows their latest results
        *[dg.AssetKey(["crm", t]) for t in crm_assets.SYNCED],
    ],
    group_name=Group.QUALITY,
    kinds={Kind.DUCKDB, Kind.HTML},
    owners=[Owner.DATA_PLATFORM],
    tags=layer_tags("report"),
    pool=WAREHOUSE_WRITER_POOL,
    description="An HTML page under $OTTP_DATA_DIR/reports/pipeline.html (ottp/bi/report.py): "
    "lines per landing day, rejected lines by reason, rows quarantined out of staging by "
    "reason (raw = staged + quarantined), fan segments and lifecycle stages, "
    "a retention curve, NDCG@10 of every trained model version, and the latest Great "
    "Expectations results of each CRM gate.",
)
def pipeline_report(warehouse: WarehouseResource) -> dg.MaterializeResult:
    built = report.build(warehouse_path=warehouse.warehouse, data_dir=warehouse.data_dir)
    f = built.figures
    retention = {d: r for d, r, _ in f["retention"]}
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(built.path)),
            "summary": dg.MetadataValue.md(built.markdown()),
            # numbers, so the asset's Plots tab draws them over time
            "events_loaded": f["load"]["events_loaded"],
            "rejected_lines": f["load"]["rejected"],
            "quarantined_events": f["quarantine"].get("quarantined_events", 0),
            "quarantined_titles": f["quarantine"].get("quarantined_titles", 0),
            "fans": sum(n for _, n, _ in f["fans_per_category"]),
            "hardcore_fans": sum(n for _, _, n in f["fans_per_category"]),
            **{f"users_{stage}": n for stage, n in f["lifecycle"].items()},
            **({"retention_day_7": retention[7]} if 7 in retention else {}),
            "gates_failed": sum(not g["success"] for g in f["gates"]),
            "segments": dg.MetadataValue.json(f["segments"]),
        }
    )
