"""A read-only copy of the marts for BI tools, published atomically after each build.

DuckDB lets one process hold a database file for writing, and while it does no
other process can open that file, not even read-only. BI tools therefore read a
separate file, ``$OTTP_DATA_DIR/bi/marts_snapshot.duckdb``: the publisher writes the copy
under a temporary name beside it and renames it into place (an atomic rename on
POSIX), so a reader sees either the previous complete snapshot or the new
complete one, never a mix, and never waits for a run.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ottp import config
from ottp.warehouse import connect

SNAPSHOT_SCHEMAS = ("marts",)
# Bookkeeping schema inside the snapshot: when it was published and what it holds.
META_SCHEMA = "_snapshot"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass
class SnapshotReport:
    path: Path
    published_at: datetime
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    bytes: int = 0

    def markdown(self) -> str:
        lines = ["| table | rows |", "|---|---:|"]
        lines += [f"| {name} | {n:,} |" for name, n in sorted(self.rows.items())]
        return "\n".join(lines)


def _ident(name: str) -> str:
    # Table names come from the warehouse's catalog, not from data; still only plain ones.
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain lowercase SQL identifier: {name!r}")
    return f'"{name}"'


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def publish(
    warehouse_path: Path | None = None,
    snapshot_path: Path | None = None,
    schemas: tuple[str, ...] = SNAPSHOT_SCHEMAS,
    run_id: str | None = None,
) -> SnapshotReport:
    """Copy every table and view of ``schemas`` into a new snapshot file (views as tables)
    and rename it into place."""
    s = config.settings()
    warehouse_path = Path(warehouse_path or s.warehouse_path)
    snapshot_path = Path(snapshot_path or s.bi_snapshot_path)
    snapshot_path.parent.mkdir(parents=True, exist_ok=True)
    staging = snapshot_path.with_name(f".{snapshot_path.name}.{uuid.uuid4().hex}.tmp")
    started = time.monotonic()
    published_at = datetime.now(UTC).replace(tzinfo=None)
    rows: dict[str, int] = {}
    con = connect(warehouse_path, read_only=False)
    try:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            # views too (marts.plays, marts.sessions): the snapshot stores their rows
            "where table_catalog = current_database() and table_type in ('BASE TABLE', 'VIEW') "
            "and list_contains($schemas, table_schema) order by 1, 2",
            {"schemas": list(schemas)},
        ).fetchall()
        if not tables:
            raise RuntimeError(
                f"nothing to publish: no table in schema(s) {', '.join(schemas)} of "
                f"{warehouse_path}; build the marts first"
            )
        con.execute(f"attach {_literal(staging)} as bi_snapshot")
        try:
            for schema in sorted({t[0] for t in tables}) + [META_SCHEMA]:
                con.execute(f"create schema bi_snapshot.{_ident(schema)}")
            for schema, name in tables:
                source = f"{_ident(schema)}.{_ident(name)}"
                con.execute(f"create table bi_snapshot.{source} as select * from {source}")
                rows[f"{schema}.{name}"] = con.execute(
                    f"select count(*) from bi_snapshot.{source}"
                ).fetchone()[0]
            meta = f"bi_snapshot.{_ident(META_SCHEMA)}"
            con.execute(
                f"create table {meta}.info as select "
                "cast($published_at as timestamp) as published_at, "
                "cast($run_id as varchar) as run_id, "
                "cast($source as varchar) as source_path",
                {"published_at": published_at, "run_id": run_id, "source": str(warehouse_path)},
            )
            con.execute(f"create table {meta}.tables (table_name varchar, row_count bigint)")
            con.executemany(f"insert into {meta}.tables values (?, ?)", sorted(rows.items()))
            con.execute("checkpoint bi_snapshot")
        finally:
            con.execute("detach bi_snapshot")
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    with open(staging, "rb") as f:
        os.fsync(f.fileno())
    os.replace(staging, snapshot_path)
    # the rename itself is durable once the folder is synced
    dir_fd = os.open(snapshot_path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return SnapshotReport(
        path=snapshot_path,
        published_at=published_at,
        rows=rows,
        seconds=round(time.monotonic() - started, 3),
        bytes=snapshot_path.stat().st_size,
    )


def open_snapshot(snapshot_path: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the latest published snapshot (what a BI tool does)."""
    path = Path(snapshot_path or config.settings().bi_snapshot_path)
    if not path.exists():
        raise FileNotFoundError(
            f"no BI snapshot at {path}: it is published after the first successful build"
        )
    return duckdb.connect(str(path), read_only=True)
