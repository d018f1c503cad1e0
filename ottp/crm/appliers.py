"""Applying a sync plan to each target, and reading back what a target holds.

One applier per target kind opens its connection, creates the mirrored and
history tables, reads the last successful sync and the stored keys and hashes
(for the local snapshot), and applies every table's plan with the
``sync_history`` row in one transaction: a CRM reader sees the previous sync or
this one, never half of one. PostgreSQL receives rows through COPY and applies
updates and deletes from temporary tables; SQLite receives them through
``executemany``. Values are always parameters or COPY data.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ottp.crm.contract import DUCKDB, ROW_HASH, SQL_TYPES, TableSpec, identifier, quote
from ottp.crm.plan import TablePlan, keys_query, rows_query
from ottp.crm.targets import (
    HISTORY_COLUMNS,
    HISTORY_TABLE_COLUMNS,
    REJECTION_COLUMNS,
    LastSync,
    PostgresTarget,
    SqliteTarget,
    SyncError,
    Target,
    ddl,
    from_target_timestamp,
    table_columns,
    target_from_url,
)

if TYPE_CHECKING:
    from ottp.crm.sync import SyncResult

# Rows per executemany() call and per Arrow batch streamed to COPY.
_BATCH_ROWS = 100_000
# An empty table receiving at least this many rows gets its primary key built
# after the load, which is several times faster than maintaining it row by row.
_BULK_LOAD_ROWS = 50_000


def last_successful_sync(target: Target | None = None) -> LastSync | None:
    """The target's latest successful sync with the row counts it left, if any."""
    target = target or target_from_url()
    if isinstance(target, SqliteTarget) and not target.path.exists():
        return None
    with applier_for(target, create=False) as applier:
        if not applier.has_history():
            return None
        return applier.last_success()


def applier_for(target: Target, create: bool = True):
    """The applier of ``target``'s kind; ``create=False`` creates no file or table."""
    if isinstance(target, SqliteTarget):
        return _SqliteApplier(target, create)
    if isinstance(target, PostgresTarget):
        return _PostgresApplier(target)
    raise TypeError(f"unsupported target {target!r}")


class _Applier:
    """What both appliers share: DDL, history rows and the last successful sync."""

    kind: str

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _history_ddl(self) -> list[str]:
        return [
            ddl(self.kind, self.qualify("sync_history"), HISTORY_COLUMNS, ("run_id",)),
            ddl(
                self.kind,
                self.qualify("sync_history_tables"),
                HISTORY_TABLE_COLUMNS,
                ("run_id", "table_name"),
            ),
            ddl(self.kind, self.qualify("sync_rejections"), REJECTION_COLUMNS, ()),
        ]

    def _table_ddl(self, spec: TableSpec) -> str:
        return ddl(
            self.kind,
            self.qualify(spec.name),
            table_columns(spec),
            spec.key,
            [r.check_sql() for r in spec.rules],
        )

    def _last_success_from(self, rows, counts) -> LastSync | None:
        if not rows:
            return None
        run_id, finished_at, as_of = rows[0]
        return LastSync(
            run_id,
            from_target_timestamp(finished_at),
            from_target_timestamp(as_of),
            dict(counts),
        )


class _SqliteApplier(_Applier):
    """SQLite: one ``begin immediate`` transaction, rows through ``executemany``."""

    kind = "sqlite"

    def __init__(self, target: SqliteTarget, create: bool = True):
        # A dry run against a file that does not exist yet must not create it.
        if create or target.path.exists():
            self.con = target.connect()
        else:
            self.con = sqlite3.connect(":memory:", isolation_level=None)

    def close(self) -> None:
        self.con.close()

    def qualify(self, name: str) -> str:
        return quote(name)

    def has_history(self) -> bool:
        return bool(
            self.con.execute(
                "select count(*) from sqlite_master where type = 'table' and name = 'sync_history'"
            ).fetchone()[0]
        )

    def ensure_tables(self, tables: Sequence[TableSpec], create: bool) -> None:
        existing = {r[0] for r in self.con.execute("select name from sqlite_master")}
        wanted = ["sync_history", "sync_history_tables", "sync_rejections"]
        wanted += [t.name for t in tables]
        if not create or set(wanted) <= existing:
            return
        self.con.execute("begin immediate")
        for stmt in [*self._history_ddl(), *(self._table_ddl(t) for t in tables)]:
            self.con.execute(stmt)
        self.con.execute("commit")

    def last_success(self) -> LastSync | None:
        if not self.has_history():
            return None
        rows = self.con.execute(
            "select run_id, finished_at, source_as_of from sync_history "
            "where status = 'success' order by started_at desc, run_id desc limit 1"
        ).fetchall()
        counts = self.con.execute(
            "select table_name, row_count from sync_history_tables where run_id = ?",
            [rows[0][0]] if rows else [""],
        ).fetchall()
        return self._last_success_from(rows, counts)

    def read_state(self, duck, spec: TableSpec, into: str) -> None:
        exists = self.con.execute(
            "select count(*) from sqlite_master where type = 'table' and name = ?", [spec.name]
        ).fetchone()[0]
        if not exists:
            return
        import pyarrow as pa

        cols = [*spec.key, ROW_HASH]
        cur = self.con.execute(
            f"select {', '.join(quote(c) for c in cols)} from {quote(spec.name)}"
        )
        while rows := cur.fetchmany(_BATCH_ROWS):
            batch = pa.table(list(zip(*rows, strict=True)), names=cols)  # noqa: F841 (DuckDB reads it)
            duck.execute(f"insert into {into} select * from batch")

    def apply(self, duck, plans, result: SyncResult, last, on_table_applied) -> None:
        con = self.con
        con.execute("begin immediate")
        try:
            if self.last_success() != last:
                raise SyncError("another sync committed meanwhile; run again")
            for plan in plans:
                self._apply_table(duck, plan)
                if on_table_applied:
                    on_table_applied(plan.spec.name)
            history, tables, rejections = result.history_rows(self.kind)
            con.execute(
                f"insert into sync_history values ({', '.join('?' * len(history))})", history
            )
            con.executemany(
                "insert into sync_history_tables values (?, ?, ?, ?, ?, ?, ?, ?)", tables
            )
            con.execute("delete from sync_rejections")
            con.executemany("insert into sync_rejections values (?, ?, ?, ?)", rejections)
            con.execute("commit")
        except BaseException:
            if con.in_transaction:
                con.execute("rollback")
            raise
        # Fold the WAL into the file and empty it, so the pages of deleted rows
        # do not linger there; a reader holding an old snapshot only delays it.
        con.execute("pragma busy_timeout = 2000")
        con.execute("pragma wal_checkpoint(truncate)").fetchall()
        con.execute("pragma busy_timeout = 60000")

    def _apply_table(self, duck, plan: TablePlan) -> None:
        con, spec, t = self.con, plan.spec, plan.result
        name = quote(spec.name)
        where = " and ".join(f"{quote(k)} = ?" for k in spec.key)
        if t.deleted:
            for rows in _batches(duck, keys_query(plan, "delete")):
                con.executemany(f"delete from {name} where {where}", rows)
        if t.updated:
            sets = ", ".join(f"{quote(c)} = ?" for c in spec.value_columns)
            names = spec.column_names
            order = [names.index(c) for c in [*spec.value_columns, *spec.key]]
            for rows in _batches(duck, rows_query(plan, "update", for_sqlite=True)):
                con.executemany(
                    f"update {name} set {sets} where {where}",
                    [[r[i] for i in order] for r in rows],
                )
        if t.inserted:
            marks = ", ".join("?" for _ in spec.columns)
            for rows in _batches(duck, rows_query(plan, "insert", for_sqlite=True)):
                con.executemany(f"insert into {name} values ({marks})", rows)

    def stored_rejections(self) -> set[tuple[str, str, str]]:
        rows = self.con.execute("select table_name, row_key, reason from sync_rejections")
        return {tuple(r) for r in rows.fetchall()}

    def record_failure(self, result: SyncResult) -> None:
        if not self.has_history():
            return
        history, _, _ = result.history_rows(self.kind)
        self.con.execute(
            f"insert into sync_history values ({', '.join('?' * len(history))})", history
        )


def _batches(duck, query: str) -> Iterator[list[tuple]]:
    cur = duck.cursor()
    try:
        cur.execute(query)
        while rows := cur.fetchmany(_BATCH_ROWS):
            yield rows
    finally:
        cur.close()


class _PostgresApplier(_Applier):
    """PostgreSQL: an advisory lock per schema, COPY into tables and temporary tables."""

    kind = "postgresql"

    def __init__(self, target: PostgresTarget):
        self.target = target
        self.schema = target.schema
        self.con = target.connect()

    def close(self) -> None:
        self.con.close()

    def qualify(self, name: str) -> str:
        return f"{quote(self.schema)}.{quote(name)}"

    def _exists(self, name: str) -> bool:
        with self.con.cursor() as cur:
            cur.execute(
                "select count(*) from information_schema.tables "
                "where table_schema = %s and table_name = %s",
                [self.schema, name],
            )
            found = cur.fetchone()[0] > 0
        self.con.rollback()
        return found

    def has_history(self) -> bool:
        return self._exists("sync_history")

    def ensure_tables(self, tables: Sequence[TableSpec], create: bool) -> None:
        wanted = ["sync_history", "sync_history_tables", "sync_rejections"]
        wanted += [t.name for t in tables]
        if not create or all(self._exists(n) for n in wanted):
            return
        with self.con, self.con.cursor() as cur:
            cur.execute(f"create schema if not exists {quote(self.schema)}")
            for stmt in [*self._history_ddl(), *(self._table_ddl(t) for t in tables)]:
                cur.execute(stmt)

    def last_success(self) -> LastSync | None:
        if not self.has_history():
            return None
        with self.con.cursor() as cur:
            cur.execute(
                f"select run_id, finished_at, source_as_of from {self.qualify('sync_history')} "
                "where status = 'success' order by started_at desc, run_id desc limit 1"
            )
            rows = cur.fetchall()
            cur.execute(
                f"select table_name, row_count from {self.qualify('sync_history_tables')} "
                "where run_id = %s",
                [rows[0][0] if rows else ""],
            )
            counts = cur.fetchall()
        if not self.con.autocommit:
            self.con.rollback()
        return self._last_success_from(rows, counts)

    def read_state(self, duck, spec: TableSpec, into: str) -> None:
        if not self._exists(spec.name):
            return
        import tempfile

        cols = ", ".join(quote(c) for c in [*spec.key, ROW_HASH])
        types = {k: SQL_TYPES[spec.column(k).type][DUCKDB] for k in spec.key} | {ROW_HASH: "bigint"}
        with tempfile.NamedTemporaryFile(suffix=".csv") as tmp:
            with self.con.cursor() as cur:
                cur.copy_expert(
                    f"copy (select {cols} from {self.qualify(spec.name)}) to stdout "
                    "with (format csv)",
                    tmp,
                )
            self.con.rollback()
            tmp.flush()
            duck.execute(
                f"insert into {into} select * from read_csv(?, header = false, "
                f"columns = {_duck_struct(types)}, nullstr = '', quote = '\"')",
                [tmp.name],
            )

    def apply(self, duck, plans, result: SyncResult, last, on_table_applied) -> None:
        con = self.con
        lock = int(hashlib.sha256(self.target.describe().encode()).hexdigest()[:15], 16)
        try:
            with con.cursor() as cur:
                # One sync at a time per target schema; a concurrent one waits here.
                cur.execute("select pg_advisory_xact_lock(%s)", [lock])
                if self.last_success_in_tx(cur) != (last.run_id if last else None):
                    raise SyncError("another sync committed meanwhile; run again")
                cur.execute("set local maintenance_work_mem = '512MB'")
                for plan in plans:
                    self._apply_table(cur, duck, plan)
                    if on_table_applied:
                        on_table_applied(plan.spec.name)
                history, tables, rejections = result.history_rows(self.kind)
                cur.execute(
                    f"insert into {self.qualify('sync_history')} values "
                    f"({', '.join(['%s'] * len(history))})",
                    history,
                )
                cur.executemany(
                    f"insert into {self.qualify('sync_history_tables')} values "
                    f"({', '.join(['%s'] * 8)})",
                    tables,
                )
                cur.execute(f"delete from {self.qualify('sync_rejections')}")
                cur.executemany(
                    f"insert into {self.qualify('sync_rejections')} values (%s, %s, %s, %s)",
                    rejections,
                )
            con.commit()
        except BaseException:
            import psycopg2

            try:
                con.rollback()
            except psycopg2.Error:
                pass  # the connection is gone: the server rolled the transaction back
            raise

    def stored_rejections(self) -> set[tuple[str, str, str]]:
        with self.con.cursor() as cur:
            cur.execute(
                f"select table_name, row_key, reason from {self.qualify('sync_rejections')}"
            )
            rows = {tuple(r) for r in cur.fetchall()}
        self.con.rollback()
        return rows

    def last_success_in_tx(self, cur) -> str | None:
        cur.execute(
            f"select run_id from {self.qualify('sync_history')} where status = 'success' "
            "order by started_at desc, run_id desc limit 1"
        )
        row = cur.fetchone()
        return row[0] if row else None

    def _apply_table(self, cur, duck, plan: TablePlan) -> None:
        spec, t = plan.spec, plan.result
        table = self.qualify(spec.name)
        keys = [quote(k) for k in spec.key]
        match = " and ".join(f"t.{k} = c.{k}" for k in keys)
        if t.deleted:
            cur.execute(
                f"create temp table _crm_delete on commit drop as "
                f"select {', '.join(keys)} from {table} limit 0"
            )
            self._copy(cur, duck, keys_query(plan, "delete"), "_crm_delete", t.deleted)
            cur.execute(f"delete from {table} as t using _crm_delete as c where {match}")
            _expect(cur.rowcount, t.deleted, f"{spec.name} deletes")
            cur.execute("drop table _crm_delete")
        if t.updated:
            cur.execute(
                f"create temp table _crm_update on commit drop as select * from {table} limit 0"
            )
            self._copy(cur, duck, rows_query(plan, "update"), "_crm_update", t.updated)
            sets = ", ".join(f"{quote(c)} = c.{quote(c)}" for c in spec.value_columns)
            cur.execute(f"update {table} as t set {sets} from _crm_update as c where {match}")
            _expect(cur.rowcount, t.updated, f"{spec.name} updates")
            cur.execute("drop table _crm_update")
        if t.inserted:
            cur.execute(f"select not exists (select 1 from {table})")
            bulk = cur.fetchone()[0] and t.inserted >= _BULK_LOAD_ROWS
            pkey = quote(f"{spec.name}_pkey")
            if bulk:
                # An empty table: build the key index once, after the load. The
                # lock this takes only blocks readers of a table that is empty.
                cur.execute(f"alter table {table} drop constraint {pkey}")
            self._copy(cur, duck, rows_query(plan, "insert"), table, t.inserted)
            if bulk:
                cur.execute(
                    f"alter table {table} add constraint {pkey} primary key ({', '.join(keys)})"
                )

    def _copy(self, cur, duck, query: str, into: str, expected: int) -> None:
        """Stream a DuckDB query into ``into`` with COPY: CSV made by Arrow in a thread."""
        import pyarrow.csv as pacsv

        read_fd, write_fd = os.pipe()
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                with os.fdopen(write_fd, "wb") as sink:
                    reader = duck.cursor().sql(query).to_arrow_reader(_BATCH_ROWS)
                    writer = None
                    for batch in reader:
                        if writer is None:
                            writer = pacsv.CSVWriter(
                                sink,
                                batch.schema,
                                write_options=pacsv.WriteOptions(
                                    include_header=False, quoting_style="needed"
                                ),
                            )
                        writer.write_batch(batch)
                    if writer is not None:
                        writer.close()
            except BaseException as e:  # re-raised by the consumer below
                errors.append(e)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            with os.fdopen(read_fd, "rb") as source:
                cur.copy_expert(f"copy {into} from stdin with (format csv)", source, size=1 << 20)
        finally:
            producer.join()
        if errors:
            raise errors[0]
        # A producer that stopped early would leave a short COPY: never commit one.
        _expect(cur.rowcount, expected, f"rows copied into {into}")

    def record_failure(self, result: SyncResult) -> None:
        if not self.has_history():
            return
        history, _, _ = result.history_rows(self.kind)
        with self.con, self.con.cursor() as cur:
            cur.execute(
                f"insert into {self.qualify('sync_history')} values "
                f"({', '.join(['%s'] * len(history))})",
                history,
            )


def _expect(actual: int, expected: int, what: str) -> None:
    if actual != expected:
        raise SyncError(f"{what}: {actual} rows instead of {expected}")


def _duck_struct(types: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{identifier(k)}': '{v}'" for k, v in types.items()) + "}"
