"""The demo path's warehouse, built once per test session (tests/conftest.py SharedBuild).

Simulated landing files (80 users, 60 titles, 5 days from 2026-08-01), then
``pipeline.run_all``: the ingest run of every day and the build of everything after it,
on a Dagster instance of its own. test_end_to_end.py reads it; test_operations.py
changes it (new days, a backfill, a second demo), so each checks out a fresh copy.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from ottp import instance
from tests.conftest import SharedBuild, shared_build

DEMO_FIRST_DAY = date(2026, 8, 1)
DEMO_DAYS = 5


def demo_environment(mp: pytest.MonkeyPatch, root: Path) -> None:
    """This data folder, its own Dagster instance (DAGSTER_HOME under it), SQLite storage."""
    mp.setenv("OTTP_DATA_DIR", str(root))
    # unset, and put back by mp.undo(): the pipeline exports the ones it derives
    for name in ("DAGSTER_HOME", "OTTP_DAGSTER_STORAGE_DIR", "OTTP_WAREHOUSE_PATH"):
        mp.setenv(name, "")
        mp.delenv(name)
    mp.delenv("OTTP_LANDING_DIR", raising=False)
    mp.delenv(instance.POSTGRES_URL_VAR, raising=False)


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory) -> SharedBuild:
    def build(root: Path) -> dict:
        from ottp import pipeline
        from ottp.simulator import simulate

        mp = pytest.MonkeyPatch()
        try:
            demo_environment(mp, root)
            sim = simulate(
                root / "landing", users=80, titles=60, days=DEMO_DAYS, seed=11, dirty_rate=0.01
            )
            runs = pipeline.run_all(log_level="ERROR")
        finally:
            mp.undo()
        return {"sim": sim, "runs": runs}

    return shared_build(tmp_path_factory, "demo", build)


@pytest.fixture(scope="module")
def demo_checkout(demo_build):
    """A fresh copy of the demo build, with OTTP_DATA_DIR and DAGSTER_HOME pointing at it."""
    root = demo_build.checkout()
    mp = pytest.MonkeyPatch()
    demo_environment(mp, root)
    instance.prepare_dagster_home()  # DAGSTER_HOME for DagsterInstance.get()
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def reliability_landing(tmp_path_factory) -> Path:
    """Landing files of 16 days with dirty data (duplicates, bad lines), simulated once
    per session for the fault and concurrency tests, which only read them."""
    from ottp.simulator import simulate

    root = tmp_path_factory.mktemp("reliability-landing")
    simulate(root / "landing", users=200, titles=60, days=16, seed=5, dirty_rate=0.01)
    return root / "landing"
