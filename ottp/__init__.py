"""OTT personalization warehouse: simulator, raw loader and CLI (no Dagster imports)."""

__version__ = "0.1.0"
