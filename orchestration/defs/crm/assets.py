"""CRM exports: the export dbt models, the deletion pass and the sync to the CRM.

Order within a run: the recommender's tables and the pseudonymisation of
deleted users -> export models (dbt) -> blocking GX checks (checks.py) -> sync.
A failed check stops the sync, so the CRM target keeps its previous state.
"""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.defs.resources import WarehouseResource
from orchestration.lib.dbt.build import build_with_row_counts
from orchestration.lib.dbt.project import EXPORTS_SELECTION, dbt_project
from orchestration.lib.dbt.translator import translator
from orchestration.lib.specs import WAREHOUSE_WRITER_POOL, Group, Kind, Owner, layer_tags
from ottp import instance, privacy
from ottp.crm import contract, gates, sync

# The export tables the CRM receives (crm_trigger_log stays in the warehouse).
SYNCED = [t.name for t in contract.TABLES]


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    select=EXPORTS_SELECTION,
    pool=instance.dbt_pool(),
)
def export_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """dbt build of the CRM export models (models/exports/) with their dbt tests."""
    yield from build_with_row_counts(context, dbt)


EXPORT_KEYS = {key.path[-1]: key for key in export_models.keys}


@dg.asset(
    key=["raw", "deleted_users"],
    deps=[dg.AssetKey(["raw", "events"])],
    group_name=Group.EXPORTS,
    kinds={Kind.DUCKDB, Kind.PYTHON},
    owners=[Owner.DATA_PLATFORM],
    tags=layer_tags("raw"),
    pool=WAREHOUSE_WRITER_POOL,
    description="One row per pseudonym that replaced a deleted user's id: every row of a "
    "user who asked for deletion, except the deletion request itself, is pseudonymised "
    "across raw, intermediate, marts, ml and exports (docs/crm-exports.md).",
)
def deleted_users(warehouse: WarehouseResource) -> dg.MaterializeResult:
    report = privacy.pseudonymise_deleted_users(warehouse.warehouse)
    return dg.MaterializeResult(
        metadata={
            "users_pseudonymised": report.users,
            "rows_pseudonymised": sum(report.rows.values()),
            "rows_by_table": dg.MetadataValue.json(report.rows),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["crm", table],
            # one transaction over every export table (a contact's consent decides the
            # rows of the others too), so each CRM table follows all of them
            deps=[EXPORT_KEYS[t] for t in SYNCED],
            group_name=Group.EXPORTS,
            kinds={Kind.PYTHON, Kind.SQLITE, Kind.POSTGRES},
            owners=[Owner.DATA_PLATFORM],
            tags=layer_tags("crm"),
            description=f"The CRM target's {table} table: a mirror of exports.{table}, "
            "synced by primary key (ottp/crm/sync.py).",
        )
        for table in SYNCED
    ],
    pool=WAREHOUSE_WRITER_POOL,
)
def crm_sync(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Mirror the checked export tables into the CRM target in one transaction."""
    # The gates again, in this step: automation starts the sync in runs of its own,
    # where the blocking checks of an earlier run no longer stand in the way.
    verdicts = gates.validate(SYNCED, warehouse_path=warehouse.warehouse)
    failed = sorted(t for t, r in verdicts.items() if not r.success)
    if failed:
        raise dg.Failure(
            f"CRM sync stopped: the quality gates of {', '.join(failed)} fail; "
            "the target keeps its previous state.",
            metadata={t: dg.MetadataValue.md(verdicts[t].summary_markdown()) for t in failed},
        )
    try:
        result = sync.sync(warehouse_path=warehouse.warehouse)
    except sync.SyncError as e:
        raise dg.Failure(f"CRM sync failed; the target keeps its previous state: {e}") from e
    context.log.info(result.format_table())
    rejected = {}
    for r in result.rejections:
        rejected.setdefault(r.table, []).append({"key": r.key, "reason": r.reason})
    for t in result.tables:
        yield dg.MaterializeResult(
            asset_key=["crm", t.table],
            metadata={
                "target": result.target,
                "sync_run_id": result.run_id,
                "status": result.status,
                "inserted": t.inserted,
                "updated": t.updated,
                "deleted": t.deleted,
                "unchanged": t.unchanged,
                "rejected": t.rejected,
                "rejected_rows": dg.MetadataValue.json(rejected.get(t.table, [])[:20]),
                "dagster/row_count": t.row_count,
                "seconds": result.seconds,
            },
        )
