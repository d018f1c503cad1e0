"""Reading the marts' reference time and writing the `ml` schema, in one transaction.

The marts may live in DuckDB (the warehouse file) or on Spark (connect_spark).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import contextmanager
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
    spark = spark_session_of(con)
    if spark is not None:
        # Spark has no transaction over several tables: each is replaced whole.
        _write_spark(spark, con, list(tables))
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


# --------------------------------------------------------------------------- Spark
#
# When the marts live on Spark, the recommender runs against a Spark-backed
# connection: an in-process DuckDB holding, in columns (Arrow), the marts and
# ml tables the recommender reads, so its SQL and numpy code run unchanged.
# The interactions, the aggregate over every play, are computed by Spark
# itself (ml.interactions); write_tables replaces the tables on Spark too.

SPARK_INPUTS = (
    "marts.plays",
    "marts.sessions",
    "marts.titles",
    "marts.title_engagement",
    "marts.user_title_interests",
    "marts.users",
    "marts.user_lifecycle",
    "marts.user_segments",
    "marts.user_category_affinity",
    "marts.user_category_segments",
    "marts.continue_watching",
    "marts.next_episodes",
    "staging.stg_navigation_events",
)
# id(connection) -> the Spark session it mirrors
_SPARK_BACKED: dict[int, object] = {}


def spark_session_of(con: duckdb.DuckDBPyConnection):
    """The Spark session a Spark-backed connection reads from, or None (plain DuckDB)."""
    return _SPARK_BACKED.get(id(con))


def _naive_utc(table: pa.Table) -> pa.Table:
    """Spark hands timestamps over as UTC instants; the recommender keeps naive UTC."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            naive = (
                table.column(i)
                .cast(pa.timestamp(f.type.unit, tz="UTC"))
                .cast(pa.timestamp(f.type.unit))
            )
            table = table.set_column(i, f.name, naive)
    return table


def _utc_instants(table: pa.Table) -> pa.Table:
    """Naive UTC timestamps as instants, so Spark stores them as its TIMESTAMP type."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.tz is None:
            table = table.set_column(
                i, f.name, table.column(i).cast(pa.timestamp(f.type.unit, tz="UTC"))
            )
    return table


def connect_spark(spark, inputs: tuple[str, ...] = SPARK_INPUTS) -> duckdb.DuckDBPyConnection:
    """A Spark-backed connection: the given Spark tables and every `ml` table, copied in.

    Close it with close_spark (or use spark_warehouse).
    """
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    names = [n for n in inputs if spark.catalog.tableExists(n)]
    if spark.catalog.databaseExists(SCHEMA):
        names += [f"{SCHEMA}.{t.name}" for t in spark.catalog.listTables(SCHEMA)]
    for qualified in names:
        schema, name = qualified.split(".")
        if not (_NAME.match(schema) and _NAME.match(name)):
            raise ValueError(f"invalid table name {qualified!r}")
        table = _naive_utc(spark.table(qualified).toArrow())
        con.execute(f"create schema if not exists {schema}")
        view = f"_spark_{schema}_{name}"
        con.register(view, table)
        try:
            con.execute(f"create table {schema}.{name} as select * from {view}")
        finally:
            con.unregister(view)
    _SPARK_BACKED[id(con)] = spark
    return con


def close_spark(con: duckdb.DuckDBPyConnection) -> None:
    _SPARK_BACKED.pop(id(con), None)
    con.close()


def _write_spark(spark, con: duckdb.DuckDBPyConnection, names) -> None:
    """Replace `ml.<name>` on Spark with what write_tables just committed locally."""
    spark.sql(f"create database if not exists {SCHEMA}")
    for name in names:
        table = _utc_instants(con.table(f"{SCHEMA}.{name}").to_arrow_table())
        frame = spark.createDataFrame(table)
        frame.write.mode("overwrite").format("parquet").saveAsTable(f"{SCHEMA}.{name}")


@contextmanager
def spark_warehouse(spark, inputs: tuple[str, ...] = SPARK_INPUTS):
    """A Spark-backed connection for the duration of a block."""
    con = connect_spark(spark, inputs)
    try:
        yield con
    finally:
        close_spark(con)
