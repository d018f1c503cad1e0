"""The CRM tests' warehouse, built once per test session (tests/conftest.py SharedBuild).

200 users, 60 titles, 16 days: simulated, loaded, built up to the exports with the
stand-in recommender (test_exports.rebuild). test_exports.py and
test_reliability_privacy.py each change it, so each checks out a fresh copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ottp import config
from tests.conftest import DBT_RELATIVE_WAREHOUSE, SharedBuild, dbt_folder_env, shared_build


def crm_environment(mp: pytest.MonkeyPatch, root: Path) -> None:
    """The variables the CRM tests run under: this data folder, no CRM URL."""
    mp.setenv("OTTP_DATA_DIR", str(root))
    # dbt subprocesses (ours and dagster-dbt's) read the warehouse path from here
    mp.setenv("OTTP_WAREHOUSE_PATH", str(root / "warehouse.duckdb"))
    mp.delenv("OTTP_LANDING_DIR", raising=False)
    mp.delenv(config.CRM_DATABASE_URL_VAR, raising=False)


def crm_dbt_run() -> dict:
    """subprocess.run's cwd and env for dbt on this data folder's warehouse: run in the
    folder with the relative path, so the session's saved parse (dbt_saved_parse,
    copied to data_dir/dbt_target by crm_build) holds for every copy."""
    s = config.settings()
    assert s.warehouse_path == s.data_dir / DBT_RELATIVE_WAREHOUSE
    return {"cwd": s.data_dir, "env": {**config.dbt_env(), **dbt_folder_env()}}


@pytest.fixture(scope="session")
def crm_build(tmp_path_factory, dbt_saved_parse) -> SharedBuild:
    def build(root: Path) -> dict:
        from ottp.ingest import load
        from ottp.simulator import simulate
        from tests.crm.test_exports import rebuild

        mp = pytest.MonkeyPatch()
        try:
            crm_environment(mp, root)
            simulate(root / "landing", users=200, titles=60, days=16, seed=11, dirty_rate=0.0)
            warehouse = root / "warehouse.duckdb"
            load.load_landing(warehouse, root / "landing")
            dbt_saved_parse(root / "dbt_target")  # the target path of rebuild's dbt runs
            rebuild(warehouse)
        finally:
            mp.undo()
        return {}

    return shared_build(tmp_path_factory, "crm", build)
