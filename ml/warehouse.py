"""Reading the marts' reference time and writing the `ml` schema, in one transaction."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

import duckdb
import pyarrow as pa

SCHEMA = "ml"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None):
    """The first column of the first row (the result is read to its end)."""
    rows = con.sql(sql, params=params).fetchall()
    return rows[0][0] if rows else None


def as_of(con: duckdb.DuckDBPyConnection) -> datetime:
    """The marts' reference time (user_lifecycle.as_of_at), else the latest play."""
    value = scalar(con, "select max(as_of_at) from marts.user_lifecycle")
    if value is None:
        value = scalar(con, "select max(started_at) from marts.plays")
    if value is None:
        raise ValueError("The marts hold no play yet: nothing to learn from.")
    return value


def write_tables(
    con: duckdb.DuckDBPyConnection,
    tables: Mapping[str, pa.Table | tuple[str, dict]],
) -> dict[str, int]:
    """Replace `ml.<name>` for every entry, all in one transaction.

    A value is an Arrow table, or a (SQL select, parameters) pair for tables built
    inside DuckDB. Returns the row count of each table written.
    """
    for name in tables:
        if not _NAME.match(name):
            raise ValueError(f"invalid table name {name!r}")
    counts: dict[str, int] = {}
    con.execute("begin transaction")
    try:
        con.execute(f"create schema if not exists {SCHEMA}")
        for name, source in tables.items():
            if isinstance(source, tuple):
                sql, params = source
                con.execute(f"create or replace table {SCHEMA}.{name} as {sql}", params)
            else:
                view = f"_ml_write_{name}"
                con.register(view, source)
                try:
                    con.execute(f"create or replace table {SCHEMA}.{name} as select * from {view}")
                finally:
                    con.unregister(view)
            counts[name] = scalar(con, f"select count(*) from {SCHEMA}.{name}")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return counts


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(
        scalar(
            con,
            "select count(*) from information_schema.tables "
            "where table_schema = $schema and table_name = $name",
            {"schema": schema, "name": name},
        )
    )
