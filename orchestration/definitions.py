from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    # Every module under orchestration/defs/ contributes its own definitions.
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
