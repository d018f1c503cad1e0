"""The dbt project as Dagster sees it, and which part of it each asset set builds."""

import subprocess
from pathlib import Path

from dagster_dbt import DbtProject

from ottp import config

dbt_project = DbtProject(
    project_dir=config.DBT_PROJECT_DIR,
    profiles_dir=config.DBT_PROJECT_DIR,
    target=config.settings().dbt_target,
)

# CRM export models read the recommender's tables, which read the marts: they are a
# separate dbt asset set (defs/crm/) so the op graph has no cycle.
EXPORTS_SELECTION = "path:models/exports"
# The per-day layer: seeds (the staging tests check codes against them), the staging
# views and the incremental models over events (tagged landing_day), partitioned by
# landing day like the raw loader they read. Incremental models over marts
# (int_title_engagement_daily) follow with the marts.
DAILY_SELECTION = "resource_type:seed path:models/staging tag:landing_day"


def _sources_newer_than(manifest: Path) -> bool:
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    roots = [config.DBT_PROJECT_DIR / d for d in ("models", "macros", "tests")]
    roots.append(config.SEEDS_DIR)
    files = [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]
    files.append(config.DBT_PROJECT_DIR / "dbt_project.yml")
    return any(p.stat().st_mtime > built for p in files)


def parse_if_stale() -> None:
    """A fresh clone has no manifest; parse once (seconds) rather than fail to load."""
    if not _sources_newer_than(dbt_project.manifest_path):
        return
    config.export_dbt_env()
    subprocess.run(
        [
            config.dbt_executable(),
            "parse",
            "--quiet",
            "--target",
            config.settings().dbt_target,
            "--project-dir",
            str(config.DBT_PROJECT_DIR),
            "--profiles-dir",
            str(config.DBT_PROJECT_DIR),
        ],
        check=True,
        env=config.dbt_env(),
    )


parse_if_stale()
