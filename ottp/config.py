"""The one place that maps environment variables to paths, targets and URLs."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SEEDS_DIR = REPO_ROOT / "seeds"
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
CONTRACT_DIR = Path(__file__).resolve().parent / "contract"

# The raw schema the loader owns inside the warehouse file; dbt reads it as a source.
RAW_SCHEMA = "raw"


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one run; build it with :func:`settings`."""

    data_dir: Path
    landing_dir: Path
    warehouse_path: Path
    dbt_target: str
    # What BI tools open: a read-only copy of the marts published after each build.
    # DuckDB names the catalog after the file, so the name is no schema's name
    # ("marts" would make `marts.users` ambiguous).
    bi_snapshot_path: Path
    # Generated HTML reports (the pipeline report, validation results).
    reports_dir: Path
    # Logs of long commands (`ottp demo`): dbt's, Dagster's and the libraries' output.
    logs_dir: Path
    # Steps that may write the warehouse at once: a DuckDB file takes one writer;
    # PostgreSQL and Spark take several (OTTP_WAREHOUSE_WRITERS).
    warehouse_writers: int
    # Steps of one Dagster run executed in parallel processes (OTTP_MAX_CONCURRENT_STEPS).
    max_concurrent_steps: int

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.landing_dir.mkdir(parents=True, exist_ok=True)


def settings() -> Settings:
    """Read the environment now (not at import), so tests can point it elsewhere."""
    data_dir = Path(os.environ.get("OTTP_DATA_DIR", REPO_ROOT / "data")).resolve()
    landing = os.environ.get("OTTP_LANDING_DIR")
    dbt_target = os.environ.get("OTTP_DBT_TARGET", "duckdb")
    return Settings(
        data_dir=data_dir,
        landing_dir=Path(landing).resolve() if landing else data_dir / "landing",
        # A fixed file name: dbt-duckdb names the database after it, and the
        # manifest's relation names must not depend on where the data lives.
        warehouse_path=data_dir / "warehouse.duckdb",
        dbt_target=dbt_target,
        bi_snapshot_path=data_dir / "bi" / "marts_snapshot.duckdb",
        reports_dir=data_dir / "reports",
        logs_dir=data_dir / "logs",
        warehouse_writers=_writers(dbt_target),
        max_concurrent_steps=_positive_int("OTTP_MAX_CONCURRENT_STEPS", str(os.cpu_count() or 2)),
    )


def _writers(dbt_target: str) -> int:
    return 1 if dbt_target == "duckdb" else _positive_int("OTTP_WAREHOUSE_WRITERS", "4")


def _positive_int(variable: str, default: str) -> int:
    raw = os.environ.get(variable, default).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{variable} must be a positive integer, got {raw!r}")
    return int(raw)


def spark_session_settings() -> dict[str, str]:
    """The local Spark session's sizing: master, shuffle partitions, driver memory."""
    return {
        "spark.master": os.environ.get("OTTP_SPARK_MASTER", "local[2]"),
        "spark.sql.shuffle.partitions": os.environ.get("OTTP_SPARK_SHUFFLE_PARTITIONS", "4"),
        "spark.driver.memory": os.environ.get("OTTP_SPARK_DRIVER_MEMORY", "2g"),
    }


def java_home() -> str | None:
    """JAVA_HOME, if set: pyspark starts the JVM it names."""
    return os.environ.get("JAVA_HOME") or None


def first_landing_day() -> str:
    """OTTP_FIRST_LANDING_DAY: the first daily partition, so a platform's history fits."""
    return os.environ.get("OTTP_FIRST_LANDING_DAY", "2026-08-01")


# The Dagster instance's PostgreSQL storage (unset: SQLite under DAGSTER_HOME).
DAGSTER_POSTGRES_URL_VAR = "OTTP_DAGSTER_POSTGRES_URL"


def dagster_postgres_url() -> str | None:
    """OTTP_DAGSTER_POSTGRES_URL: the instance in PostgreSQL; may hold a password."""
    return os.environ.get(DAGSTER_POSTGRES_URL_VAR) or None


def dagster_home() -> str | None:
    """DAGSTER_HOME, if set: the instance folder Dagster's processes use."""
    return os.environ.get("DAGSTER_HOME") or None


def export_environment(variables: Mapping[str, str]) -> None:
    """Set these variables for this process and every process it starts (Dagster, dbt)."""
    _set_environment(variables)


def bench_postgres_url() -> str | None:
    """OTTP_BENCH_PG_URL: a PostgreSQL server the benchmarks may create and drop databases on."""
    return os.environ.get("OTTP_BENCH_PG_URL") or None


def child_env(variables: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment for a subprocess, these variables set (None: removed)."""
    env = dict(os.environ)
    for name, value in (variables or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# The CRM target, the sync's retry policy and the export gates (docs/crm-exports.md).
CRM_DATABASE_URL_VAR = "CRM_DATABASE_URL"
CRM_DATABASE_SCHEMA_VAR = "CRM_DATABASE_SCHEMA"
CRM_SYNC_ATTEMPTS_VAR = "CRM_SYNC_ATTEMPTS"
CRM_SYNC_RETRY_DELAY_VAR = "CRM_SYNC_RETRY_DELAY_S"
CRM_SYNC_RETRY_MAX_DELAY_VAR = "CRM_SYNC_RETRY_MAX_DELAY_S"
EXPORT_MAX_AGE_VAR = "OTTP_EXPORT_MAX_AGE_HOURS"


def crm_database_url() -> str | None:
    """CRM_DATABASE_URL: the CRM target (unset: the embedded SQLite file); may hold a password."""
    return os.environ.get(CRM_DATABASE_URL_VAR) or None


def crm_database_schema(default: str) -> str:
    """CRM_DATABASE_SCHEMA: the PostgreSQL target's schema."""
    return os.environ.get(CRM_DATABASE_SCHEMA_VAR, default)


def crm_sync_retry(
    attempts: int, first_delay_s: float, max_delay_s: float
) -> tuple[int, float, float]:
    """The sync's attempts and backoff: these defaults or the environment's overrides."""
    return (
        max(1, int(os.environ.get(CRM_SYNC_ATTEMPTS_VAR, attempts))),
        float(os.environ.get(CRM_SYNC_RETRY_DELAY_VAR, first_delay_s)),
        float(os.environ.get(CRM_SYNC_RETRY_MAX_DELAY_VAR, max_delay_s)),
    )


def export_max_age_hours() -> float | None:
    """OTTP_EXPORT_MAX_AGE_HOURS: the gates fail on an older warehouse as_of (unset: no limit)."""
    raw = os.environ.get(EXPORT_MAX_AGE_VAR)
    return float(raw) if raw else None


def quiet_great_expectations() -> None:
    """No usage analytics from Great Expectations unless GX_ANALYTICS_ENABLED asks for them."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def dbt_env(s: Settings | None = None) -> dict[str, str]:
    """Environment for a dbt subprocess: profiles.yml reads these with env_var()."""
    s = s or settings()
    env = dict(os.environ)
    env["OTTP_WAREHOUSE_PATH"] = str(s.warehouse_path)
    env["OTTP_DATA_DIR"] = str(s.data_dir)
    return env


def export_dbt_env(s: Settings | None = None) -> None:
    """Make dbt subprocesses started by this process (dagster-dbt) see the same warehouse."""
    s = s or settings()
    os.environ["OTTP_WAREHOUSE_PATH"] = str(s.warehouse_path)
    os.environ["OTTP_DATA_DIR"] = str(s.data_dir)
    # Materializing a subset (one asset from the UI) runs only the tests whose
    # parents are all selected, not tests of unbuilt downstream models.
    os.environ.setdefault("DBT_INDIRECT_SELECTION", "cautious")


def dbt_executable() -> str:
    """The dbt beside this interpreter (the project's venv), even when it is not on PATH."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


@contextmanager
def environment(variables: Mapping[str, str | None]) -> Iterator[None]:
    """These environment variables set (None: unset) for the block; restored after."""
    saved = {name: os.environ.get(name) for name in variables}
    try:
        _set_environment(variables)
        yield
    finally:
        _set_environment(saved)


def _set_environment(variables: Mapping[str, str | None]) -> None:
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass(frozen=True)
class RealtimeSettings:
    """The real-time service's settings (``ottp serve``); see :func:`realtime_settings`."""

    host: str
    port: int
    # OTTP_API_KEY: the key clients send (X-API-Key or Bearer); unset, the service refuses to start
    # unless started with --insecure-no-key (tests and local demos).
    api_key: str | None
    # OTTP_REDIS_URL: live state in Redis, shared by several server processes; unset: in process.
    redis_url: str | None
    # A request body larger than this many bytes, or with more lines, is refused whole (413).
    max_body_bytes: int
    max_lines: int
    # Lines waiting for validation in this process beyond which a request is answered 503
    # with Retry-After (overload sheds load at the door instead of queueing without bound).
    max_pending_lines: int
    # A landing file is closed (renamed to its final name) at this size or age.
    landing_roll_bytes: int
    landing_roll_seconds: float
    # On start, the embedded state is rebuilt from the landing files of this many hours.
    state_rebuild_hours: int
    # Where the serving bundle is published (orchestration) and read (server).
    bundle_dir: Path
    # How often the server looks for a newer bundle.
    bundle_poll_seconds: float
    # Scenario triggers fired live are POSTed here (unset: no webhook), signed with the secret.
    webhook_url: str | None
    webhook_secret: str | None
    # OTTP_SEGMENT_WRITE_KEY: the write key Segment/RudderStack SDKs send (HTTP Basic user name)
    # to /v1/batch, /v1/track...; unset: the API key (OTTP_API_KEY) is the write key.
    segment_write_key: str | None = None
    # OTTP_SEGMENT_MAPPING: the tracker-event mapping file (docs/segment.md); unset: the default.
    segment_mapping: Path | None = None
    # OTTP_CORS_ORIGINS: comma-separated origins (``https://app.example.com``) whose pages may
    # call the service from a browser (a browser SDK); ``*``: any origin. Unset: no CORS headers.
    cors_origins: tuple[str, ...] = ()


def realtime_settings(s: Settings | None = None) -> RealtimeSettings:
    """The real-time settings from the environment, read now."""
    s = s or settings()
    return RealtimeSettings(
        host=os.environ.get("OTTP_SERVE_HOST", "127.0.0.1"),
        port=_positive_int("OTTP_SERVE_PORT", "8700"),
        api_key=os.environ.get("OTTP_API_KEY") or None,
        redis_url=os.environ.get("OTTP_REDIS_URL") or None,
        max_body_bytes=_positive_int("OTTP_MAX_BODY_BYTES", str(5 << 20)),
        max_lines=_positive_int("OTTP_MAX_LINES", "5000"),
        max_pending_lines=_positive_int("OTTP_MAX_PENDING_LINES", "200000"),
        landing_roll_bytes=_positive_int("OTTP_LANDING_ROLL_BYTES", str(64 << 20)),
        landing_roll_seconds=float(_positive_int("OTTP_LANDING_ROLL_SECONDS", "60")),
        state_rebuild_hours=_positive_int("OTTP_STATE_REBUILD_HOURS", "24"),
        bundle_dir=Path(os.environ.get("OTTP_BUNDLE_DIR", s.data_dir / "serving")).resolve(),
        bundle_poll_seconds=float(_positive_int("OTTP_BUNDLE_POLL_SECONDS", "2")),
        webhook_url=os.environ.get("OTTP_WEBHOOK_URL") or None,
        webhook_secret=os.environ.get("OTTP_WEBHOOK_SECRET") or None,
        segment_write_key=os.environ.get("OTTP_SEGMENT_WRITE_KEY") or None,
        segment_mapping=(
            Path(os.environ["OTTP_SEGMENT_MAPPING"]).resolve()
            if os.environ.get("OTTP_SEGMENT_MAPPING")
            else None
        ),
        cors_origins=_origins("OTTP_CORS_ORIGINS"),
    )


def _origins(variable: str) -> tuple[str, ...]:
    """A comma-separated list of web origins; each is ``scheme://host[:port]`` or ``*``."""
    origins = tuple(o.strip() for o in os.environ.get(variable, "").split(",") if o.strip())
    for origin in origins:
        scheme, sep, host = origin.partition("://")
        if origin != "*" and (scheme not in ("http", "https") or not sep or not host
                              or "/" in host):  # fmt: skip
            raise ValueError(f"{variable}: {origin!r} is not an origin (scheme://host[:port])")
    return origins
