"""The Dagster code location: every domain folder under defs/, with the automation policy
of defs/automation/ applied to the whole graph."""

from pathlib import Path

import dagster as dg

from orchestration.defs.automation import policies


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
    return policies.apply(loaded)
