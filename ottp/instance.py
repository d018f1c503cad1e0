"""The Dagster instance folder: where runs, event logs and schedules are kept."""

from __future__ import annotations

from pathlib import Path

import yaml

from ottp import config

POSTGRES_URL_VAR = config.DAGSTER_POSTGRES_URL_VAR
# What dagster.yaml reads: the same URL with SQLAlchemy's psycopg2 driver named.
# SQLAlchemy 2.1 opens a bare postgresql:// with psycopg 3, whose server-side
# parameters break dagster-postgres's `NOTIFY channel, $1`.
SQLALCHEMY_URL_VAR = "OTTP_DAGSTER_POSTGRES_SQLALCHEMY_URL"
# Steps that open the DuckDB file (the loader, the ML assets, the snapshot, the sync
# ... and dbt on the duckdb target) share this pool: one writer per file.
WRITER_POOL = "warehouse_writer"
# dbt on PostgreSQL or Spark: several builds may run at once (OTTP_WAREHOUSE_WRITERS).
ENGINE_POOL = "engine_writer"


def instance_yaml() -> dict:
    """The repository's dagster.yaml, with PostgreSQL storage when its variable is set."""
    settings = yaml.safe_load((config.REPO_ROOT / "dagster.yaml").read_text())
    if config.dagster_postgres_url():
        settings["storage"] = {"postgres": {"postgres_url": {"env": SQLALCHEMY_URL_VAR}}}
    return settings


def sqlalchemy_url(url: str) -> str:
    """``url`` with the psycopg2 driver, for SQLAlchemy; other drivers are left as given."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{POSTGRES_URL_VAR} is not a URL (postgresql://user@host:5432/db)")
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgres", "postgresql") else url


def prepare_dagster_home(s: config.Settings | None = None) -> Path:
    """Write DAGSTER_HOME/dagster.yaml and export the variables it reads."""
    s = s or config.settings()
    home = Path(config.dagster_home() or s.data_dir / "dagster_home").resolve()
    storage = home / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(instance_yaml(), sort_keys=False)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    exported = {"DAGSTER_HOME": str(home), "OTTP_DAGSTER_STORAGE_DIR": str(storage)}
    postgres_url = config.dagster_postgres_url()
    if postgres_url:
        exported[SQLALCHEMY_URL_VAR] = sqlalchemy_url(postgres_url)
    config.export_environment(exported)
    config.export_dbt_env(s)
    set_pool_limits(s)
    return home


def dbt_pool(s: config.Settings | None = None) -> str:
    """The pool of the dbt steps: the DuckDB file's, or the engine's when dbt runs elsewhere."""
    s = s or config.settings()
    return WRITER_POOL if s.dbt_target == "duckdb" else ENGINE_POOL


def pool_limits(s: config.Settings | None = None) -> dict[str, int]:
    """One writer for the DuckDB file; OTTP_WAREHOUSE_WRITERS dbt builds on other engines."""
    s = s or config.settings()
    return {WRITER_POOL: 1, ENGINE_POOL: s.warehouse_writers}


def set_pool_limits(s: config.Settings | None = None) -> dict[str, int]:
    """Record the pool limits on the instance (its storage keeps them; the UI shows them)."""
    import dagster as dg

    limits = pool_limits(s)
    with dg.DagsterInstance.get() as inst:
        for pool, limit in limits.items():
            inst.event_log_storage.set_concurrency_slots(pool, limit)
    return limits
