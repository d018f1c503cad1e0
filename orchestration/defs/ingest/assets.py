"""The raw loader: landing files of the selected days into the raw tables, exactly once."""

from datetime import date, timedelta

import dagster as dg

from orchestration.defs.ingest.partitions import landing_days
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.specs import WAREHOUSE_WRITER_POOL, Group, Kind, Owner, layer_tags
from ottp.ingest import identities, landing, live_triggers, load

RAW_TABLES = {
    "events": "One row per distinct event, deduplicated on event_id across files and days.",
    "titles": "One row per title per catalog snapshot.",
    "rejected_events": (
        "One row per landing line that was rejected, with the raw line and the reason."
    ),
    "load_manifest": "One row per landing file: size, checksum and line counts.",
}


def _days(context: dg.AssetExecutionContext) -> list[date]:
    window = context.partition_time_window
    first, end = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((end - first).days)]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["raw", table],
            description=description,
            group_name=Group.INGESTION,
            kinds={Kind.DUCKDB, Kind.PYTHON},
            owners=[Owner.DATA_PLATFORM],
            tags=layer_tags("raw"),
        )
        for table, description in RAW_TABLES.items()
    ],
    partitions_def=landing_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
    pool=WAREHOUSE_WRITER_POOL,
)
def raw_landing_files(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Load the landing files of the selected days, exactly once, in one transaction.

    Files already in the load manifest are skipped; each line is loaded, counted
    as a duplicate, or rejected with a reason.
    """
    days = _days(context)
    files = [f for day in days for f in landing.discover(warehouse.landing, day)]
    report = load.load_files(warehouse.warehouse, files)
    totals = load.reconciliation(warehouse.warehouse)
    context.log.info("Loaded %s day(s):\n%s", len(days), report.format_table())
    # The triggers the real-time server fired (every day's files not loaded yet):
    # raw.live_triggers, appended to the trigger ledger by the next build.
    fired = live_triggers.load_live_triggers(warehouse.warehouse, warehouse.landing)
    if fired.files_loaded:
        context.log.info(
            "Live triggers: %s file(s), %s line(s): %s loaded, %s duplicate(s), %s rejected %s",
            fired.files_loaded,
            fired.lines,
            fired.loaded,
            fired.duplicates,
            fired.rejected,
            fired.rejected_by_reason or "",
        )
    # The identify calls the real-time server stored: raw.identities (model device_users).
    identified = identities.load_identities(warehouse.warehouse, warehouse.landing)
    if identified.files_loaded:
        context.log.info(
            "Identities: %s file(s), %s line(s): %s loaded, %s duplicate(s), %s rejected %s",
            identified.files_loaded,
            identified.lines,
            identified.loaded,
            identified.duplicates,
            identified.rejected,
            identified.rejected_by_reason or "",
        )

    per_reason = "\n".join(
        f"| {reason} | {n:,} |" for reason, n in sorted(report.rejected_by_reason.items())
    )
    summary = dg.MetadataValue.md(
        "| lines in | loaded | duplicates | rejected |\n|---:|---:|---:|---:|\n"
        f"| {report.lines_in:,} | {report.loaded:,} | {report.duplicates:,} "
        f"| {report.rejected:,} |\n\n"
        + ("| reason | lines |\n|---|---:|\n" + per_reason if per_reason else "No line rejected.")
    )
    common = {
        "days": f"{days[0]} .. {days[-1]}" if days else "none",
        "load_id": report.load_id,
        "files_loaded": report.count("loaded"),
        "files_skipped": report.count("already_loaded") + report.count("duplicate_file"),
        "files_unreadable": report.count("unreadable"),
        "seconds": report.seconds,
    }
    yield dg.MaterializeResult(
        asset_key=["raw", "events"],
        metadata={
            **common,
            "lines_in": report.lines_in,
            "events_loaded": report.events_loaded,
            "duplicates": report.duplicates,
            "rejected": report.rejected,
            "reconciles": report.reconciles,
            "reconciliation": summary,
            "live_triggers_loaded": fired.loaded,
            "live_triggers_duplicates": fired.duplicates,
            "live_triggers_rejected": fired.rejected,
            "live_triggers_reconcile": fired.reconciles,
            "identities_loaded": identified.loaded,
            "identities_duplicates": identified.duplicates,
            "identities_rejected": identified.rejected,
            "identities_reconcile": identified.reconciles,
            "dagster/row_count": totals["events_in_table"],
        },
    )
    yield dg.MaterializeResult(asset_key=["raw", "titles"], metadata=common)
    yield dg.MaterializeResult(
        asset_key=["raw", "rejected_events"],
        metadata={**common, "dagster/row_count": totals["rejected_in_table"]},
    )
    yield dg.MaterializeResult(
        asset_key=["raw", "load_manifest"],
        metadata={**common, "event_files_total": totals["event_files"]},
    )
