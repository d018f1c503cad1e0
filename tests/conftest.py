"""Shared test helpers (landing files, events, titles) and the suite's scheduling.

With xdist workers (`-n 2 --dist loadgroup --no-loadscope-reorder`, not the default:
on 2 cores they were slower) each test module is a unit of work on one worker, so its
module-scoped build happens once; the Spark tests form one unit (one worker, one Spark
JVM at a time); the longest units start first.
"""

from __future__ import annotations

import gzip
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest

from ottp.ingest import landing

DAY = date(2026, 8, 1)

# Units of work by expected duration, longest first (measured on a 2-core machine), so
# no long unit starts last; the modules not listed follow in collection order.
SPARK_UNIT = "spark"
LONGEST_FIRST = (
    SPARK_UNIT,
    "tests/orchestration/test_ui.py",
    "tests/orchestration/test_operations.py",
    "tests/orchestration/test_end_to_end.py",
    "tests/simulator/test_truth.py",
    "tests/warehouse/test_dbt_models.py",
    "tests/crm/test_exports.py",
    "tests/ingest/test_segment_landing.py",
    "tests/crm/test_reliability_privacy.py",
    "tests/ml/test_ml_assets.py",
    "tests/orchestration/test_reliability_faults.py",
    "tests/warehouse/test_bots.py",
    "tests/benchmarks/test_bench.py",
    "tests/warehouse/test_pseudonymisation_sessions.py",
    "tests/simulator/test_simulate.py",
    "tests/orchestration/test_reliability_concurrency.py",
)
# The Spark unit: whole modules (their module fixtures feed the Spark tests too) and
# single tests.
SPARK_MODULES = ("tests/spark/test_spark.py", "tests/warehouse/test_quarantine.py")
SPARK_TESTS = (
    "tests/contract/test_contract.py::test_the_spark_loader_gives_every_hostile_line_the_same_verdict",
)


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: the Spark unit or its module."""
    module = nodeid.split("::", 1)[0]
    if module in SPARK_MODULES or nodeid.split("[", 1)[0] in SPARK_TESTS:
        return SPARK_UNIT
    return module


def pytest_collection_modifyitems(config, items) -> None:
    if not getattr(config.option, "numprocesses", None):
        return  # one process: collection order
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(unit_of(item.nodeid), len(rank)))  # stable


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown without xdist
def pytest_xdist_make_scheduler(config, log):
    """With --dist loadgroup: whole units, in collection order, to the next free worker.

    xdist's own loadgroup reads xdist_group marks through a node attribute pytest 9 no
    longer has, so the units are named here from the test ids instead.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return UnitScheduling(config, log)


def pytest_configure(config) -> None:
    # A fresh clone has no dbt manifest: parse it here, once, before the workers
    # start, not in each worker at once (both would write the same target folder).
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        import orchestration.lib.dbt.project  # noqa: F401  (parses when stale)


def make_event(**overrides) -> dict:
    """A valid page_view; override fields to make any other event."""
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "schema_version": "1.0",
        "occurred_at": "2026-08-01T10:00:00.000Z",
        "received_at": "2026-08-01T10:00:01.000Z",
        "user_id": "u_000001",
        "device_id": "d_0000001",
        "platform": "web",
        "app_version": "5.2.0",
        "country": "FR",
        "properties": {"page": "home"},
    }
    event.update(overrides)
    return event


def make_title(**overrides) -> dict:
    title = {
        "title_id": "t_00001",
        "name": "A film",
        "category": "drama",
        "keywords": ["family", "city"],
        "kind": "movie",
        "series_id": None,
        "season": None,
        "episode": None,
        "duration_s": 5400,
        "release_year": 2021,
        "available_from": "2026-01-01",
        "is_available": True,
    }
    title.update(overrides)
    return title


def write_landing(
    landing_dir: Path,
    lines: list[str | bytes | dict],
    day: date = DAY,
    kind: str = "events",
    name: str = "part-00000.ndjson.gz",
) -> Path:
    """Write one gzip NDJSON landing file; dicts are JSON-encoded, str/bytes written as is."""
    folder = landing.partition_dir(landing_dir, kind, day)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = []
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        chunks.append(line if isinstance(line, bytes) else line.encode())
    path = folder / name
    path.write_bytes(gzip.compress(b"\n".join(chunks) + b"\n", mtime=0))
    return path


@dataclass
class SharedBuild:
    """A data folder built once per test session and handed out again, unchanged, at the
    same path.

    The build records absolute paths (the load manifest's landing files, dbt's saved
    parse, the Dagster instance's folders), so a copy elsewhere would not be the same
    warehouse. ``checkout()`` puts a fresh copy of the build back at ``path`` (a copy of
    a built folder takes a second; the build took minutes): modules that change it run
    one after the other in a process, and each starts from the build as it was made.
    ``details`` holds what the build returned (the simulator's summary, the runs).
    """

    path: Path
    pristine: Path
    details: dict = field(default_factory=dict)

    def checkout(self) -> Path:
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.copytree(self.pristine, self.path, symlinks=True)
        return self.path


def shared_build(tmp_path_factory, name: str, build: Callable[[Path], dict]) -> SharedBuild:
    """Run ``build(path)`` in an empty folder once, keep a pristine copy of what it made."""
    base = tmp_path_factory.mktemp(name)
    path = base / "data"
    path.mkdir()
    details = build(path)
    pristine = base / "pristine"
    shutil.copytree(path, pristine, symlinks=True)
    return SharedBuild(path, pristine, details or {})


# dbt reuses a saved parse (partial_parse.msgpack in the target path) only for the same
# profile, and the profile's hash covers the DuckDB file's path: a build of another
# folder parses the whole project again. A build run in its warehouse's folder (cwd)
# with this relative path matches the session's one saved parse (dbt_saved_parse).
# The incremental models whose runs the DuckDB, PostgreSQL and Spark tests compare
# with a full refresh.
INCREMENTAL_MODELS = (
    "int_sessions",
    "int_plays",
    "int_plays_in_sessions",
    "int_pauses",
    "int_title_engagement_daily",
)
# Those models with everything upstream of them, seeds included (the catalog's
# categories), without tests: the runs before the full-refresh build.
BUILD_INCREMENTAL = [
    "build",
    "--exclude-resource-type",
    "test",
    "--exclude-resource-type",
    "unit_test",
    "--select",
    *(f"+{m}" for m in INCREMENTAL_MODELS),
]
DBT_RELATIVE_WAREHOUSE = "warehouse.duckdb"


def dbt_folder_env(**extra: str) -> dict[str, str]:
    """The environment of a dbt run on DBT_RELATIVE_WAREHOUSE with cwd = its folder."""
    import os

    return dict(
        os.environ,
        OTTP_WAREHOUSE_PATH=DBT_RELATIVE_WAREHOUSE,
        OTTP_DBT_TARGET="duckdb",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        **extra,
    )


def run_dbt_in_folder(args: list[str], folder: Path, target_path: Path, **extra_env: str):
    """dbt ``args`` on folder/warehouse.duckdb, run in that folder; fails the test on error."""
    import subprocess

    from ottp.config import DBT_PROJECT_DIR, dbt_executable

    cmd = [dbt_executable(), *args,
           "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
           "--target-path", str(target_path), "--log-path", str(target_path / "logs")]  # fmt: skip
    result = subprocess.run(
        cmd, cwd=folder, env=dbt_folder_env(**extra_env), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(
            f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
        )
    return result


@pytest.fixture(scope="session")
def dbt_saved_parse(tmp_path_factory) -> Callable[[Path], Path]:
    """Parse the dbt project once per session (duckdb target, the relative warehouse
    path); the fixture's value copies that saved parse into a dbt target path."""
    import subprocess

    from ottp.config import DBT_PROJECT_DIR, dbt_executable

    folder = tmp_path_factory.mktemp("dbt_parse")
    cmd = [dbt_executable(), "parse", "--quiet",
           "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
           "--target-path", str(folder / "target"), "--log-path", str(folder / "logs")]  # fmt: skip
    out = subprocess.run(cmd, cwd=folder, env=dbt_folder_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    saved = folder / "target" / "partial_parse.msgpack"

    def seed(target_path: Path) -> Path:
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(saved, target_path / saved.name)
        return target_path

    return seed


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty OTTP_DATA_DIR for one test."""
    monkeypatch.setenv("OTTP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OTTP_LANDING_DIR", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def spark_steps(tmp_path_factory):
    """The session's one Spark process (tests/spark/jvm.py); each user resets it first."""
    from ottp.spark import java_available
    from tests.spark.jvm import SparkSteps

    if not java_available():
        pytest.skip("Spark needs a Java runtime (java on PATH or JAVA_HOME)")
    import os

    data_dir = tmp_path_factory.mktemp("spark_session") / "data"
    data_dir.mkdir()
    steps = SparkSteps(data_dir, dict(os.environ, OTTP_SPARK_SHUFFLE_PARTITIONS="2"))
    yield steps
    steps.close()
