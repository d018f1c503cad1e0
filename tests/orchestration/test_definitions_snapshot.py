"""Every asset, check, job, schedule and sensor the code location defines, against a snapshot.

A renamed key, a moved group, an asset that left its pool or its job shows here as a
diff. After an intended change, regenerate the snapshot and commit it with the change:

    OTTP_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/orchestration/test_definitions_snapshot.py
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "__snapshots__" / "definitions.txt"
UPDATE_VARIABLE = "OTTP_UPDATE_SNAPSHOTS"


def _names(values) -> str:
    return ",".join(sorted(values)) or "-"


_KEY_RUN = re.compile(r'key:"[^"]*"(?: or key:"[^"]*")+')


def _condition_tree(condition: dg.AutomationCondition) -> str:
    label = condition.get_label() or condition.name
    # a selection's keys come from a set: sorted, the text is the same in every process
    label = _KEY_RUN.sub(lambda m: " or ".join(sorted(m.group(0).split(" or "))), label)
    return f"{label}({','.join(_condition_tree(c) for c in condition.children)})"


def _automation(condition: dg.AutomationCondition | None) -> str:
    # A digest of the whole tree of labels: stable across processes, and it changes
    # with any operand (Dagster's node id of an AND does not follow every child).
    if condition is None:
        return "-"
    return hashlib.sha1(_condition_tree(condition).encode()).hexdigest()[:12]


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> str:
    if partitions_def is None:
        return "-"
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return f"{partitions_def.cron_schedule}@{partitions_def.start.date().isoformat()}"
    return type(partitions_def).__name__


def _pools(graph) -> dict:
    """The pool of the step that materializes each asset or runs each check."""
    pools = {}
    for assets_def in graph.assets_defs:
        pool = assets_def.op.pool if assets_def.is_executable and assets_def.node_def else None
        for key in [*assets_def.keys, *assets_def.check_keys]:
            pools[key] = pool or "-"
    return pools


def _asset_lines(d: dg.Definitions, graph, pools: dict) -> list[str]:
    jobs = {
        name: d.resolve_job_def(name).asset_layer.selected_asset_keys
        for name in sorted({job.name for job in d.jobs})
    }
    lines = []
    for spec in sorted(d.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        tags = {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")}
        fields = {
            "group": spec.group_name,
            "owners": _names(spec.owners),
            "kinds": _names(spec.kinds),
            "tags": _names(f"{k}={v}" for k, v in tags.items()),
            "pool": pools.get(spec.key, "-"),
            "partitions": _partitions(spec.partitions_def),
            "automation": _automation(spec.automation_condition),
            "jobs": _names(name for name, keys in jobs.items() if spec.key in keys),
        }
        lines.append(
            f"asset {spec.key.to_user_string()} " + " ".join(f"{k}={v}" for k, v in fields.items())
        )
    return lines


def _check_lines(graph, pools: dict) -> list[str]:
    lines = []
    for key in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string()):
        check = graph.get_check_spec(key)
        lines.append(
            f"check {key.to_user_string()} blocking={check.blocking} pool={pools.get(key, '-')}"
        )
    return lines


def definitions_snapshot() -> str:
    from orchestration.definitions import defs

    d = defs()
    graph = d.resolve_asset_graph()
    pools = _pools(graph)
    lines = _asset_lines(d, graph, pools) + _check_lines(graph, pools)
    for job in sorted({job.name for job in d.jobs}):
        job_def = d.resolve_job_def(job)
        lines.append(f"job {job} partitions={_partitions(job_def.partitions_def)}")
    for schedule in sorted(d.schedules, key=lambda s: s.name):
        lines.append(
            f"schedule {schedule.name} cron={schedule.cron_schedule} job={schedule.job_name} "
            f"default={schedule.default_status.value}"
        )
    for sensor in sorted(d.sensors, key=lambda s: s.name):
        lines.append(
            f"sensor {sensor.name} type={type(sensor).__name__} "
            f"interval={sensor.minimum_interval_seconds} default={sensor.default_status.value}"
        )
    return "\n".join(lines) + "\n"


def test_definitions_match_the_snapshot(data_dir, monkeypatch):
    # The snapshot is of the default deployment: DuckDB, the demo's first landing day.
    for variable in ("OTTP_DBT_TARGET", "OTTP_FIRST_LANDING_DAY", "OTTP_WAREHOUSE_WRITERS"):
        monkeypatch.delenv(variable, raising=False)
    current = definitions_snapshot()
    if os.environ.get(UPDATE_VARIABLE):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current)
    expected = SNAPSHOT.read_text()
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            current.splitlines(keepends=True),
            fromfile=str(SNAPSHOT),
            tofile="definitions now",
        )
    )
    assert not diff, (
        f"definitions differ from the snapshot ({UPDATE_VARIABLE}=1 to accept):\n{diff}"
    )
