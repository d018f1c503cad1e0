"""Copy the raw tables from the DuckDB warehouse into PostgreSQL.

The dbt project builds unchanged on PostgreSQL (profile target ``postgres``);
this gives it the same ``raw`` source tables. Each table is exported by DuckDB
to a CSV file in a temporary directory and streamed in with ``COPY ... FROM
STDIN``: no row goes through Python, and no value is formatted into SQL.
Identifiers are validated and quoted with :mod:`psycopg2.sql`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import duckdb
import psycopg2
from psycopg2 import sql

from ottp.config import RAW_SCHEMA

RAW_TABLES = ("events", "titles")

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# DuckDB type -> PostgreSQL type. Lists become arrays; JSON becomes jsonb.
_SCALAR_TYPES = {
    "UUID": "uuid",
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "HUGEINT": "numeric",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "JSON": "jsonb",
}


def _identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain lowercase SQL identifier: {name!r}")
    return name


def pg_type(duckdb_type: str) -> str:
    """The PostgreSQL column type for a DuckDB column type."""
    t = duckdb_type.upper()
    if t.endswith("[]"):
        return pg_type(t[:-2]) + "[]"
    if t.startswith("DECIMAL"):
        return t.lower().replace("decimal", "numeric")
    try:
        return _SCALAR_TYPES[t]
    except KeyError:
        raise ValueError(f"no PostgreSQL mapping for DuckDB type {duckdb_type}") from None


def _export_expression(column: str, duckdb_type: str) -> str:
    """How DuckDB writes a column so PostgreSQL's CSV COPY reads it back."""
    quoted = f'"{column}"'
    if duckdb_type.upper().endswith("[]"):
        # A PostgreSQL array literal: {"a","b"} with quotes and backslashes escaped.
        element = "'\"' || replace(replace(x, '\\', '\\\\'), '\"', '\\\"') || '\"'"
        return (
            f"case when {quoted} is null then null else "
            f"'{{' || array_to_string(list_transform({quoted}, lambda x: {element}), ',') || '}}' "
            f"end as {quoted}"
        )
    return quoted


def mirror_raw_to_postgres(
    warehouse_path: Path | str,
    pg_dsn: str,
    schema: str = RAW_SCHEMA,
    tables: Sequence[str] = RAW_TABLES,
) -> dict[str, int]:
    """Replace ``schema.<table>`` in PostgreSQL with the DuckDB warehouse's raw tables.

    Returns the rows copied per table. The PostgreSQL side runs in one
    transaction: on error nothing is replaced.
    """
    schema = _identifier(schema)
    tables = [_identifier(t) for t in tables]
    copied: dict[str, int] = {}
    source = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        with tempfile.TemporaryDirectory(prefix="ottp-pg-mirror-") as tmp:
            exports = []
            for table in tables:
                columns = source.execute(
                    "select column_name, data_type, is_nullable = 'YES' "
                    "from information_schema.columns "
                    "where table_schema = ? and table_name = ? order by ordinal_position",
                    [RAW_SCHEMA, table],
                ).fetchall()
                if not columns:
                    raise ValueError(f"{RAW_SCHEMA}.{table} is not in {warehouse_path}")
                names = [_identifier(name) for name, _, _ in columns]
                csv_path = Path(tmp) / f"{table}.csv"
                select_list = ", ".join(_export_expression(n, t) for n, t, _ in columns)
                # Names are validated above; the path is ours (COPY takes no
                # parameter for it), its quotes doubled.
                target_file = csv_path.as_posix().replace("'", "''")
                source.execute(
                    f'copy (select {select_list} from "{RAW_SCHEMA}"."{table}") '
                    f"to '{target_file}' (format csv, header false)"
                )
                exports.append((table, columns, names, csv_path))
            source.close()
            source = None
            copied = _load_into_postgres(pg_dsn, schema, exports)
    finally:
        if source is not None:
            source.close()
    return copied


def _load_into_postgres(pg_dsn: str, schema: str, exports: list) -> dict[str, int]:
    copied: dict[str, int] = {}
    conn = psycopg2.connect(pg_dsn)
    try:
        with conn:  # one transaction
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("create schema if not exists {}").format(sql.Identifier(schema))
                )
                for table, columns, names, csv_path in exports:
                    target = sql.Identifier(schema, table)
                    cur.execute(sql.SQL("drop table if exists {} cascade").format(target))
                    cur.execute(
                        sql.SQL("create table {} ({})").format(
                            target,
                            sql.SQL(", ").join(
                                sql.SQL("{} {}{}").format(
                                    sql.Identifier(n),
                                    sql.SQL(pg_type(t)),
                                    sql.SQL("" if nullable else " not null"),
                                )
                                for n, t, nullable in columns
                            ),
                        )
                    )
                    copy = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
                        target, sql.SQL(", ").join(sql.Identifier(n) for n in names)
                    )
                    with open(csv_path, encoding="utf-8") as handle:
                        cur.copy_expert(copy.as_string(cur), handle)
                    copied[table] = cur.rowcount
                    cur.execute(sql.SQL("analyze {}").format(target))
    finally:
        conn.close()
    return copied
