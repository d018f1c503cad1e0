"""Ingest: landing files into the warehouse's raw schema (DuckDB, Spark, a PostgreSQL mirror)."""
