"""What the ML assets share: their keys, a warehouse connection, the metadata of a table
they write, and the model registry."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa

from ml import flows
from ml.registry import Registry
from orchestration.defs.resources import WarehouseResource
from ottp.warehouse import connect


def marts(*names: str) -> list[dg.AssetKey]:
    return [dg.AssetKey(["marts", n]) for n in names]


def ml_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["ml", name])


@contextmanager
def warehouse_connection(warehouse: WarehouseResource) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(warehouse.warehouse)
    try:
        yield con
    finally:
        con.close()


def column_schema(table: pa.Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in table.schema])


def table_metadata(name: str, table: pa.Table | None, rows: int) -> dict:
    out = {"dagster/row_count": rows, "dagster/table_name": f"warehouse.ml.{name}"}
    if table is not None:
        out["dagster/column_schema"] = column_schema(table)
    return out


def registry(warehouse: WarehouseResource) -> Registry:
    return flows.registry(Path(warehouse.data_dir))
