"""The Dagster instance folder: where runs, event logs and schedules are kept."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ottp import config

POSTGRES_URL_VAR = "OTTP_DAGSTER_POSTGRES_URL"


def instance_yaml() -> dict:
    """The repository's dagster.yaml, with PostgreSQL storage when its variable is set."""
    settings = yaml.safe_load((config.REPO_ROOT / "dagster.yaml").read_text())
    if os.environ.get(POSTGRES_URL_VAR):
        settings["storage"] = {"postgres": {"postgres_url": {"env": POSTGRES_URL_VAR}}}
    return settings


def prepare_dagster_home(s: config.Settings | None = None) -> Path:
    """Write DAGSTER_HOME/dagster.yaml and export the variables it reads."""
    s = s or config.settings()
    home = Path(os.environ.get("DAGSTER_HOME") or s.data_dir / "dagster_home").resolve()
    storage = home / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(instance_yaml(), sort_keys=False)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["OTTP_DAGSTER_STORAGE_DIR"] = str(storage)
    config.export_dbt_env(s)
    return home
