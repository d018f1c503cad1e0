import json
import re
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from orchestration.defs.dbt.project import dbt_project
from orchestration.defs.partitions import landing_days
from ottp import config, instance
from ottp.warehouse import connect

# Model folder -> asset group shown in the UI.
_GROUPS = {"staging": "staging", "intermediate": "marts", "marts": "marts", "exports": "exports"}
_RELATION = re.compile(r'^"[A-Za-z0-9_]+"\."[A-Za-z0-9_]+"\."[A-Za-z0-9_]+"$')


class OttpTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "staging"
        fqn = dbt_resource_props.get("fqn", [])
        folder = fqn[1] if len(fqn) > 2 else "marts"
        return _GROUPS.get(folder, folder)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]):
        return ["team:analytics-engineering"]

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        tags = dict(super().get_tags(dbt_resource_props))
        fqn = dbt_resource_props.get("fqn", [])
        if len(fqn) > 2:
            tags["layer"] = fqn[1]
        return tags


translator = OttpTranslator(settings=DagsterDbtTranslatorSettings(enable_code_references=True))


def _table_relations() -> dict[dg.AssetKey, str]:
    manifest = json.loads(dbt_project.manifest_path.read_text())
    return {
        translator.get_asset_key(node): node["relation_name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "seed")
        and node["config"].get("materialized") != "view"
        and _RELATION.match(node.get("relation_name") or "")
    }


def _row_counts(relations: dict[dg.AssetKey, str]) -> dict[dg.AssetKey, int]:
    # Counted after dbt exits: DuckDB lets one process open the file for writing.
    if config.settings().dbt_target != "duckdb" or not relations:
        return {}
    con = connect(config.settings().warehouse_path)
    try:
        return {
            key: con.execute(f"select count(*) from {relation}").fetchone()[0]
            for key, relation in relations.items()
        }
    finally:
        con.close()


# CRM export models read the recommender's tables, which read the marts: they are a
# separate dbt asset set so the op graph has no cycle.
EXPORTS_SELECTION = "path:models/exports"
# The per-day layer: seeds (the staging tests check codes against them), the staging
# views and the incremental intermediate models, partitioned by landing day like the
# raw loader they read.
DAILY_SELECTION = (
    "resource_type:seed path:models/staging "
    "config.materialized:incremental,path:models/intermediate"
)


# On a DuckDB file a 90-day backfill is one dbt invocation whose window spans it;
# engines that take several writers backfill a week per run, in parallel.
DAILY_BACKFILL = (
    dg.BackfillPolicy.single_run()
    if config.settings().warehouse_writers == 1
    else dg.BackfillPolicy.multi_run(max_partitions_per_run=7)
)

# The window reaches dbt as environment variables, read at execution time
# (macros/partition_window.sql): --vars would make dbt re-parse the whole project
# on every new day.
WINDOW_ENV = ("OTTP_MIN_DATE", "OTTP_MAX_DATE")
# Unit tests check SQL logic on fixed inputs, not the day's data: they run in the
# test suite and CI (`dbt build` without this), not in production builds.
PRODUCTION_BUILD = ["build", "--exclude-resource-type", "unit_test"]


def partition_window_env(context: dg.AssetExecutionContext) -> dict[str, str]:
    """OTTP_MIN_DATE/OTTP_MAX_DATE (max exclusive) of the selected landing days."""
    window = context.partition_time_window
    bounds = (window.start.date().isoformat(), window.end.date().isoformat())
    return dict(zip(WINDOW_ENV, bounds, strict=True))


def build_with_row_counts(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, window: dict[str, str] | None = None
):
    """`dbt build` of the selected assets, with row counts read once dbt has exited."""
    # dagster-dbt passes os.environ on to dbt; an unpartitioned build unsets the
    # window, so a stray shell variable cannot narrow it.
    with config.environment({name: (window or {}).get(name) for name in WINDOW_ENV}):
        invocation = dbt.cli(PRODUCTION_BUILD, context=context, raise_on_error=False)
    events = list(invocation.stream())
    relations = _table_relations()
    built = {
        context.asset_key_for_output(e.output_name) for e in events if isinstance(e, dg.Output)
    }
    counts = _row_counts({k: v for k, v in relations.items() if k in built})
    for event in events:
        if isinstance(event, dg.Output):
            key = context.asset_key_for_output(event.output_name)
            if key in counts:
                event = event.with_metadata({**event.metadata, "dagster/row_count": counts[key]})
        yield event
    if not invocation.is_successful():
        raise dg.Failure(
            "dbt build failed; see the dbt log above.",
            metadata={"failed_nodes": str(invocation.get_error())},
        )


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    select=DAILY_SELECTION,
    partitions_def=landing_days,
    backfill_policy=DAILY_BACKFILL,
    pool=instance.dbt_pool(),
)
def daily_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """dbt build of staging and the incremental models for the selected landing days."""
    window = partition_window_env(context)
    context.log.info(
        "Landing window: " + ", ".join(f"{name}={value}" for name, value in window.items())
    )
    yield from build_with_row_counts(context, dbt, window)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    exclude=f"{EXPORTS_SELECTION} {DAILY_SELECTION}",
    pool=instance.dbt_pool(),
)
def warehouse_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """dbt build: seeds, the other intermediate models and the marts, with their tests."""
    yield from build_with_row_counts(context, dbt)
