"""Spec defaults every domain shares: the writer pool, owners, groups, kinds and tags.

Named once here so a misspelt pool is an import error, not a new pool without a limit.
"""

from __future__ import annotations

from ottp import instance

# Every step that opens the DuckDB file shares this pool: its limit of 1, recorded on
# the instance (ottp/instance.py), lets one such step run at a time across runs.
WAREHOUSE_WRITER_POOL = instance.WRITER_POOL


class Owner:
    """The teams that answer for an asset."""

    DATA_PLATFORM = "team:data-platform"
    ANALYTICS_ENGINEERING = "team:analytics-engineering"
    PERSONALISATION = "team:personalisation"


class Group:
    """Asset groups shown in the UI."""

    INGESTION = "ingestion"
    STAGING = "staging"
    MARTS = "marts"
    EXPORTS = "exports"
    SERVING = "serving"
    ML = "ml"
    QUALITY = "quality"


class Kind:
    """What an asset's step runs on (the UI shows them as icons)."""

    DUCKDB = "duckdb"
    PYTHON = "python"
    SQL = "sql"
    HTML = "html"
    IMPLICIT = "implicit"
    SCIKITLEARN = "scikitlearn"
    SQLITE = "sqlite"
    POSTGRES = "postgres"


# The tag the UI filters layers on; dbt models take the name of their folder.
LAYER_TAG = "layer"


def layer_tags(layer: str) -> dict[str, str]:
    """The tags of an asset of this layer (raw, bi, ml, crm, report ...)."""
    return {LAYER_TAG: layer}
