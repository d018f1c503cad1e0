"""The Dagster code location: turns the ottp library and the dbt project into assets."""
