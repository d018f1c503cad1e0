"""One production `dbt build` of the selected assets, with row counts; shared by every dbt
asset set (defs/dbt/, defs/crm/)."""

import json
import re

import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.lib.dbt.project import dbt_project
from orchestration.lib.dbt.translator import translator
from ottp import config
from ottp.warehouse import connect

_RELATION = re.compile(r'^"[A-Za-z0-9_]+"\."[A-Za-z0-9_]+"\."[A-Za-z0-9_]+"$')

# The window reaches dbt as environment variables, read at execution time
# (macros/partition_window.sql): --vars would make dbt re-parse the whole project
# on every new day.
WINDOW_ENV = ("OTTP_MIN_DATE", "OTTP_MAX_DATE")
# Unit tests check SQL logic on fixed inputs, not the day's data: they run in the
# test suite and CI (`dbt build` without this), not in production builds.
PRODUCTION_BUILD = ["build", "--exclude-resource-type", "unit_test"]


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
