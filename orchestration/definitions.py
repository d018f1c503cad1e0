from pathlib import Path

import dagster as dg

from orchestration import policies


@dg.definitions
def defs() -> dg.Definitions:
    # Every module under orchestration/defs/ contributes its own definitions; the
    # automation policies are applied to the whole graph here, in one place.
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
    return policies.apply(loaded)
