"""One production `dbt build` of the selected assets, with row counts; shared by every dbt
asset set (defs/dbt/, defs/crm/)."""

import json
import os
import re
import shutil
import uuid
from pathlib import Path

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


# dbt parses the project again unless the target path holds a saved parse
# (partial_parse.msgpack) made with the same dbt version, --target, --vars and
# profile, and the profile's hash covers its connection values (the DuckDB file's
# path included). dagster-dbt gives every invocation a fresh target path and copies
# the default target's saved parse into it, which matches only the warehouse that
# parse was made for: with any other data directory (tests, benchmarks, a second
# warehouse) every dbt step parsed the whole project. So each warehouse keeps its
# own saved parse, from its latest invocation, and the next one starts from it.
SAVED_PARSE = "partial_parse.msgpack"


def saved_parse_path() -> Path:
    """This warehouse's saved dbt parse (per dbt target), under its data directory."""
    s = config.settings()
    return s.data_dir / "dbt_parse" / s.dbt_target / SAVED_PARSE


def _invocation_target_path(context: dg.AssetExecutionContext) -> Path:
    """A fresh target path, named as dagster-dbt names its own, seeded with the saved parse."""
    name = f"{context.op_execution_context.op.name}-{context.run.run_id[:7]}-{uuid.uuid4().hex[:7]}"
    target_path = Path(dbt_project.project_dir) / dbt_project.target_path / name
    target_path.mkdir(parents=True)
    if saved_parse_path().exists():
        shutil.copyfile(saved_parse_path(), target_path / SAVED_PARSE)
    return target_path


def _keep_parse(target_path: Path) -> None:
    """Save the invocation's parse for the next one (replaced atomically: steps may run
    side by side). dbt rewrote it if it parsed anything; a stale or foreign one costs
    the next invocation a full parse, as if there were none, and is then replaced."""
    parsed = target_path / SAVED_PARSE
    if not parsed.exists():
        return
    saved = saved_parse_path()
    saved.parent.mkdir(parents=True, exist_ok=True)
    partial = saved.with_name(f"{SAVED_PARSE}.{os.getpid()}.{uuid.uuid4().hex[:7]}")
    shutil.copyfile(parsed, partial)
    os.replace(partial, saved)


def _table_relations() -> dict[dg.AssetKey, str]:
    # schema.table without the catalog: the manifest's catalog is the stem of whichever
    # warehouse file it was parsed for, the connection's is the one being built.
    manifest = json.loads(dbt_project.manifest_path.read_text())
    return {
        translator.get_asset_key(node): f'"{node["schema"]}"."{node["alias"]}"'
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
    target_path = _invocation_target_path(context)
    # The saved parse is in the target path; a DBT_PARTIAL_PARSE_FILE_PATH left in
    # the environment would take precedence over it.
    variables = {name: (window or {}).get(name) for name in WINDOW_ENV}
    with config.environment({**variables, "DBT_PARTIAL_PARSE_FILE_PATH": None}):
        invocation = dbt.cli(
            PRODUCTION_BUILD, context=context, raise_on_error=False, target_path=target_path
        )
    events = list(invocation.stream())
    _keep_parse(target_path)
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
